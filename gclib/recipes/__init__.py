"""Training recipes, family-agnostic: the shared loop, teacher objectives, distillation, once-for-all training.

A generator family trains with one :class:`Recipe`: the ResNet family with pix2pix / CycleGAN and GAN Compression's
distiller, the SPADE family with GauGAN's losses (:mod:`.gaugan`), the MUNIT family with MUNIT's (:mod:`.munit`).
The stages (:mod:`gclib.stages`) ask :func:`recipe_for` and never name a recipe themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class Recipe:
    """What the stages need to train a family's networks.

    - ``teacher_config(preset, paired, seed, steps=None)``: the teacher's training config;
    - ``teacher_nets(family, preset, paired)``: its networks (``G``, ``D``; CycleGAN: both directions);
    - ``teacher_trainer(paired)``: the trainer class that trains them;
    - ``discriminator(family, preset, paired)``: the D a student, supernet or sub-network starts from (then loaded
      with the teacher's or the supernet's weights);
    - ``student_config(preset, steps, seed, paired, variant)``: the distillation config of a student variant;
    - ``distill_trainer``, ``supernet_trainer``: the distillation and once-for-all trainer classes;
    - ``unpaired``: whether the recipe trains unpaired tasks;
    - ``variants``: the student variants it trains (notebook 02's, see :data:`.distill.VARIANTS`)."""

    name: str
    teacher_config: Callable
    teacher_nets: Callable
    teacher_trainer: Callable
    discriminator: Callable[..., nn.Module]
    student_config: Callable
    distill_trainer: type
    supernet_trainer: type
    unpaired: bool
    variants: tuple[str, ...]


def _pix2pix() -> Recipe:
    from .distill import VARIANTS, DistillTrainer, distill_config
    from .once_for_all import SupernetTrainer
    from .teacher import discriminator, teacher_config, teacher_nets, trainer_for
    from .trainer import from_preset
    return Recipe("pix2pix/CycleGAN", teacher_config, teacher_nets, trainer_for,
                  lambda family, preset, paired: discriminator(preset, paired),
                  lambda preset, steps, seed, paired, variant: distill_config(from_preset(preset, steps, seed), paired,
                                                                              variant),
                  DistillTrainer, SupernetTrainer, unpaired=True, variants=VARIANTS)


def _gaugan() -> Recipe:
    from .gaugan import (GauGANDistillTrainer, GauGANSupernetTrainer, GauGANTrainer, discriminator, gaugan_config,
                         teacher_nets)
    return Recipe("GauGAN", lambda preset, paired, seed, steps=None: gaugan_config(
                      preset, preset.teacher.steps if steps is None else steps, seed),
                  teacher_nets, lambda paired: GauGANTrainer,
                  lambda family, preset, paired: discriminator(preset, family.arch(preset)["label_nc"]),
                  lambda preset, steps, seed, paired, variant: gaugan_config(preset, steps, seed, variant),
                  GauGANDistillTrainer, GauGANSupernetTrainer, unpaired=False,
                  variants=("alone", "init", "features"))


def _munit() -> Recipe:
    from .munit import (MUNITDistillTrainer, MUNITSupernetTrainer, MUNITTrainer, discriminator, munit_config,
                        teacher_nets)
    return Recipe("MUNIT", lambda preset, paired, seed, steps=None: munit_config(
                      preset, preset.teacher.steps if steps is None else steps, seed),
                  teacher_nets, lambda paired: MUNITTrainer, discriminator,
                  lambda preset, steps, seed, paired, variant: munit_config(preset, steps, seed, variant),
                  MUNITDistillTrainer, MUNITSupernetTrainer, unpaired=True, variants=("features",))


RECIPES = {"resnet": _pix2pix, "spade": _gaugan, "munit": _munit}


def recipe_for(family: str, paired: bool = True) -> Recipe:
    """The recipe that trains ``family``'s networks; an unpaired task with a paired-only family is refused."""
    if family not in RECIPES:
        raise ValueError(f"no training recipe for family {family!r}; families with one: {sorted(RECIPES)}")
    recipe = RECIPES[family]()
    if not paired and not recipe.unpaired:
        raise ValueError(f"the {family} family trains with {recipe.name}, which needs a paired task (a label map "
                         f"and its image); use the embedded 'facades' task")
    return recipe
