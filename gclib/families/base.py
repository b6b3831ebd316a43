"""What every generator family provides, so that one recipe compresses them all.

A *family* (the pix2pix/CycleGAN ResNet generators now; SPADE and MUNIT next) is a teacher architecture, its mobile
student, and a once-for-all supernet whose sub-networks are named by a *config*: a few integers, one per group of
layers, joined by ``_`` (``32_24_48_...``). Distillation, once-for-all training, search, evaluation, profiling, the
budget explorer and export only talk to a :class:`Family` and its :class:`ConfigSpace`; nothing outside
``gclib/families/<name>/`` knows how a family's layers are laid out. ``tests/test_family_conformance.py`` checks every
registered family against the same contract.
"""
from __future__ import annotations

import itertools
import math
from typing import Iterator, Sequence

import torch
from torch import nn


class ConfigSpace:
    """The elastic widths of one family: named entries, each with its own set of allowed widths.

    ``choices`` is one tuple shared by every entry, or one tuple per entry. Configs are strings
    ``'c0_c1_..._cn'``; :meth:`parse` turns one into a list of ints with an error that names the allowed values."""

    def __init__(self, family: str, entries: Sequence[str], choices: Sequence[int] | Sequence[Sequence[int]]):
        self.family, self.entries = family, tuple(entries)
        if choices and isinstance(choices[0], int):
            choices = [choices] * len(self.entries)
        if len(choices) != len(self.entries):
            raise ValueError(f"{family}: {len(choices)} choice sets for {len(self.entries)} config entries")
        self.choices: tuple[tuple[int, ...], ...] = tuple(tuple(sorted(set(int(v) for v in c))) for c in choices)
        if any(not c or c[0] < 1 for c in self.choices):
            raise ValueError(f"{family}: every config entry needs at least one positive width, got {self.choices}")

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def size(self) -> int:
        """How many sub-networks the space holds."""
        return math.prod(len(c) for c in self.choices)

    def parse(self, config: str | Sequence[int]) -> list[int]:
        """'16_16_24_...' -> [16, 16, 24, ...], checked against this space's widths."""
        values = parse_widths(config, len(self.entries), self.family)
        bad = [(self.entries[i], v, c) for i, (v, c) in enumerate(zip(values, self.choices)) if v not in c]
        if bad:
            where = "; ".join(f"entry {name} = {v} is not one of {list(c)}" for name, v, c in bad)
            raise ValueError(f"config {encode(values)} is outside the {self.family} search space: {where}")
        return values

    def contains(self, config: str | Sequence[int]) -> bool:
        try:
            self.parse(config)
        except ValueError:
            return False
        return True

    def sample(self, g: torch.Generator) -> str:
        """Each entry drawn uniformly and independently from its choices (Fast GAN Compression's sampler)."""
        return encode([c[int(torch.randint(len(c), (), generator=g))] for c in self.choices])

    def smallest(self) -> str:
        return encode([c[0] for c in self.choices])

    def largest(self) -> str:
        return encode([c[-1] for c in self.choices])

    def one_narrowed(self) -> dict[str, str]:
        """``{entry: config}``: the largest sub-network with that one entry at its narrowest width. Scoring these
        with shared weights shows which layer a supernet cannot share (notebook 03)."""
        widest = [c[-1] for c in self.choices]
        return {name: encode(widest[:i] + [c[0]] + widest[i + 1:])
                for i, (name, c) in enumerate(zip(self.entries, self.choices))}

    def uniform(self, width: int) -> str:
        """Every entry at ``width`` (a "slim every layer alike" network); an error names the entries that lack it."""
        missing = [name for name, c in zip(self.entries, self.choices) if width not in c]
        if missing:
            raise ValueError(f"width {width} is not a choice of entries {missing} in this {self.family} space")
        return encode([width] * len(self.entries))

    def slimmed(self, width: int) -> str:
        """Every layer slimmed alike to ``width``, as far as this space allows: each entry at ``width`` when it is one
        of its choices, else at its widest choice below ``width`` (its narrowest when none is). In a space whose
        entries share their choices this is :meth:`uniform`; an entry given widths of its own (a supernet's
        ``entry_choices``) keeps one of those."""
        return encode([max([w for w in c if w <= width], default=c[0]) for c in self.choices])

    def widths(self) -> list[int]:
        """Every width some entry allows, narrowest first."""
        return sorted(set().union(*(set(c) for c in self.choices)))

    def uniform_widths(self) -> list[int]:
        """The widths every entry allows (the uniform sub-networks of the space)."""
        return sorted(set.intersection(*(set(c) for c in self.choices)))

    def __iter__(self) -> Iterator[str]:
        for values in itertools.product(*self.choices):
            yield encode(list(values))

    def __repr__(self) -> str:
        return f"ConfigSpace({self.family}, {dict(zip(self.entries, self.choices))}, {self.size:,} configs)"


def image_hw(image_size) -> tuple[int, int]:
    """``256`` -> (256, 256); ``(256, 512)`` or ``'256x512'`` -> (256, 512): height, width."""
    if isinstance(image_size, str):
        h, _, w = image_size.lower().partition("x")
        return int(h), int(w or h)
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def encode(values: Sequence[int]) -> str:
    return "_".join(str(int(v)) for v in values)


def parse_widths(config: str | Sequence[int], n: int, family: str = "") -> list[int]:
    """A config of ``n`` positive widths, from its string or a sequence; the error shows the expected form."""
    example = "_".join(["32"] * n)
    if isinstance(config, str):
        try:
            values = [int(p) for p in config.strip().split("_")]
        except ValueError:
            raise ValueError(f"config {config!r} must be {n} integers joined by '_', e.g. '{example}'") from None
    else:
        values = [int(v) for v in config]
    if len(values) != n:
        raise ValueError(f"config {config!r} has {len(values)} entries; a {family} config needs {n} "
                         f"(e.g. '{example}')")
    if any(v < 1 for v in values):
        raise ValueError(f"config {config!r}: every width must be a positive integer")
    return values


def parse_within(config: str | Sequence[int], n: int, family: str, max_width: int) -> list[int]:
    """A supernet's config: :func:`parse_widths`, and no entry wider than the supernet (``max_width``)."""
    values = parse_widths(config, n, family)
    too_wide = [v for v in values if v > max_width]
    if too_wide:
        raise ValueError(f"config {encode(values)} asks for widths {too_wide} but this supernet is "
                         f"{max_width} wide; every entry must be at most {max_width}")
    return values


class Family:
    """The contract of a generator family. Subclasses set the class attributes and implement the methods.

    - ``entries``: the names of the config's entries, in order.
    - ``default_choices``: the widths each entry may take unless a preset says otherwise.
    - ``style_dim``: 0 for a generator of one input (``G(a)``); the length of the style code of a multimodal one
      (MUNIT: ``G(a, s)``, s of shape (B, style_dim, 1, 1)), which evaluations draw at random.
    """

    name: str = ""
    entries: tuple[str, ...] = ()
    default_choices: tuple = ()
    style_dim: int = 0

    # -- the config space ----------------------------------------------------------------------------------------
    def space(self, choices=None) -> ConfigSpace:
        return ConfigSpace(self.name, self.entries, choices if choices is not None else self.default_choices)

    def parse(self, config: str | Sequence[int]) -> list[int]:
        """Any positive widths (not only a space's choices): ``'32_32_...'`` -> ``[32, 32, ...]``."""
        return parse_widths(config, len(self.entries), self.name)

    def uniform(self, width: int) -> str:
        return encode([width] * len(self.entries))

    def arch(self, preset) -> dict:
        """The structural settings a preset fixes besides the widths (the ResNet family: ``n_blocks``), passed as
        keywords to :meth:`teacher`, :meth:`student`, :meth:`supernet`, :meth:`config_macs` and
        :meth:`example_inputs`. Every generator of the family also has them as ``net.arch``."""
        raise NotImplementedError

    def config_macs(self, config: str | Sequence[int], image_size, **arch) -> int:
        """Closed-form MACs of the sub-network ``config`` at batch 1 (equal to torchprofile's count)."""
        raise NotImplementedError

    # -- networks ------------------------------------------------------------------------------------------------
    def teacher(self, ngf: int, **arch) -> nn.Module:
        raise NotImplementedError

    def student(self, config: str | Sequence[int], **arch) -> nn.Module:
        """The compressed (mobile) generator of ``config``: a plain ``nn.Module``, no elastic layers."""
        raise NotImplementedError

    def supernet(self, max_width: int, **arch) -> nn.Module:
        """The once-for-all supernet: every entry at most ``max_width``; ``net.set_config(config)`` picks a
        sub-network and returns the net; ``net.config`` is the active one."""
        raise NotImplementedError

    def extract(self, supernet: nn.Module, config: str | Sequence[int]) -> nn.Module:
        """The sub-network ``config`` of ``supernet`` as a standalone :meth:`student` holding the shared weights."""
        raise NotImplementedError

    def example_inputs(self, batch: int, image_size, **arch) -> tuple[torch.Tensor, ...]:
        """Inputs of the generator's forward that its MACs are counted on (an image, or a label map)."""
        raise NotImplementedError

    export_names: tuple[str, ...] = ("A",)   # the inputs of an exported generator (ONNX input names), in order

    def export_inputs(self, batch: int, image_size, **arch) -> tuple[torch.Tensor, ...]:
        """Example inputs of an exported generator, one per ``export_names`` (default: :meth:`example_inputs`)."""
        return self.example_inputs(batch, image_size, **arch)

    def task_data(self, data, preset):
        """A task's splits as this family's generators take them (:class:`gclib.data.TaskData`): images for the
        image-to-image families; SPADE replaces A by one-hot label maps."""
        return data

    def calibrate(self, net: nn.Module, inputs: torch.Tensor, batch_size: int = 32) -> nn.Module:
        """Make ``net`` (a student, or a supernet at its active config) ready to be scored: families whose norms keep
        running statistics re-compute them on training ``inputs`` (SPADE's BatchNorm); InstanceNorm families, which
        normalise each image by itself, need nothing. Returns ``net`` in eval mode."""
        return net.eval()

    # -- distillation --------------------------------------------------------------------------------------------
    def distill_points(self, net: nn.Module) -> list[str]:
        """Names of the modules (``net.get_submodule(name)``) whose outputs are distilled, teacher and student alike."""
        raise NotImplementedError

    def distill_widths(self, net: nn.Module) -> list[int]:
        """Channels of the feature at each distillation point (a supernet: its widest)."""
        raise NotImplementedError

    def init_from_teacher(self, student: nn.Module, teacher: nn.Module,
                          by_importance: bool = False) -> list[torch.Tensor]:
        """Copy the teacher's strongest channels into ``student`` (L1-norm channel selection); return, per
        distillation point, the teacher channels the student's channels came from (to start the mappings)."""
        raise NotImplementedError
