"""The model zoo: the suite's long trainings, done once by this project's own code and shipped in ``data/zoo/``.

A stage whose key matches a shipped artifact is loaded from the zoo instead of trained (see
:func:`gclib.stages.load_or_train`); a changed setting changes the key and trains a new artifact as before.

Each shipped artifact is two files named after its stage (``teacher_facades_s0_<key>``):

- ``.safetensors``: the networks' tensors (``G.<name>``, ``D.<name>``), no pickle on the load path; 16-bit where
  the generator's outputs stay within :data:`FP16_TOLERANCE` of the 32-bit weights' (measured at export, recorded);
- ``.json``: its record: the stage (settings and key), training history, held-out evaluations, which weights were
  kept, the held-out scores with intervals beside the floor and the input-as-output reference, the plateau check,
  the command that rebuilds it and the gclib commit it was trained at.

What each file holds is :func:`shipped_networks`: the compressed teacher's G and D, a supernet's G, D and mapping
convs, the generator alone of notebook 02's students of the later seeds and of notebook 03's comparison supernets (so
a lab trains one seed of students live and none of the rank check's supernets), nothing but the record (scores with
intervals) for the other teachers' seeds, the stand-alone references and notebook 04's fine-tunings of the later seeds
(so a lab fine-tunes the first seed live and reads the others' test scores).

A **frontier** (``frontier_<task>_s0_<key>.json``, a record without networks) holds notebook 04's search and
fine-tuning repeated at every budget of the preset with every fine-tuning seed, scored on the test split: the
compression frontier the notebooks draw but would take an hour to train (:func:`build_frontier`).

``data/zoo/SHA256SUMS`` holds the full SHA-256 of every file; a file that does not match is refused, never loaded.

``python -m gclib zoo build`` trains every shipped stage from nothing into ``runs/zoo`` (the zoo itself is not
consulted) and exports it; ``python -m gclib zoo verify`` checks what is shipped against the current code.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import numbers
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import torch

from .data.download import sha256_of
from .recipes.distill import VARIANTS

REPO = Path(__file__).resolve().parent.parent
ZOO_DIR = REPO / "data" / "zoo"
BUILD_DIR = REPO / "runs" / "zoo"
ZOO_PRESET = "laptop"


@dataclass(frozen=True)
class Section:
    """One notebook's shipped trainings: a family trained on an embedded task (GauGAN paints facades' label maps)."""
    task: str
    paired: bool
    family: str = "resnet"
    kinds: tuple[str, ...] = ("teacher", "supernet", "standalone")


# section name -> what it ships; `zoo build --sections` takes these names
LAB_KINDS = ("teacher", "supernet", "standalone", "frontier", "student", "comparison", "finetune")
ZOO_SECTIONS = {"facades": Section("facades", True, kinds=LAB_KINDS),
                "stripes": Section("stripes", False, kinds=LAB_KINDS),
                "gaugan": Section("facades", True, "spade", ("teacher", "frontier")),
                "munit": Section("coats", False, "munit", ("teacher", "frontier"))}
# 16-bit storage is used where the generator's outputs move by at most this many of 255 grey levels
FP16_TOLERANCE = 2.0
# A teacher's discriminator is only ever a starting point (students, supernets and their fine-tuning train it on):
# its weight matrices ship in 8 bits, one scale per output channel, where no tensor moves by more than this fraction
# of its norm (|W - Q(W)| / |W|); 16 bits otherwise. This keeps the four teachers within the zoo's 64 MB.
INT8_NETWORKS = ("D",)
INT8_TOLERANCE = 0.02
SCALE_SUFFIX = ":scale"     # "D:scale.<param>": the per-channel scales of the 8-bit tensor "D.<param>"
CHECK_IMAGES = 64    # held-out images re-scored by `zoo verify` (and CI) against the record
CHECK_RTOL = 0.02    # how far a re-score may land from the recorded one (threads and CPU kinds round differently)


class ZooError(RuntimeError):
    """A shipped file is missing, damaged or out of date: the message names it and the fix."""


_off = False


def enabled() -> bool:
    """Whether stages consult the zoo: yes, unless the environment sets GCLIB_ZOO=0 or :func:`disabled` is active."""
    return not _off and os.environ.get("GCLIB_ZOO", "1").lower() not in ("0", "off", "no", "false")


@contextlib.contextmanager
def disabled(off: bool = True) -> Iterator[None]:
    """Train everything in this block, as if nothing were shipped (``zoo build`` rebuilds from nothing); with
    ``off=False``, consult the zoo again inside an outer ``disabled()`` block."""
    global _off
    before, _off = _off, off
    try:
        yield
    finally:
        _off = before


def read_sums(zoo_dir: Path | None = None) -> dict[str, str]:
    """``SHA256SUMS`` as {file name: digest} (the ``sha256sum`` format: digest, two spaces, name)."""
    zoo_dir = Path(zoo_dir) if zoo_dir is not None else ZOO_DIR
    sums = zoo_dir / "SHA256SUMS"
    if not sums.exists():
        return {}
    out = {}
    for line in sums.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name.strip().lstrip("*")] = digest
    return out


def write_sums(zoo_dir: Path | None = None) -> None:
    zoo_dir = Path(zoo_dir) if zoo_dir is not None else ZOO_DIR
    from .artifacts import atomic_write_bytes
    lines = [f"{sha256_of(p)}  {p.name}" for p in sorted(zoo_dir.iterdir())
             if p.suffix in (".safetensors", ".json")]
    atomic_write_bytes(zoo_dir / "SHA256SUMS", ("\n".join(lines) + "\n").encode())


def verified(path: Path, sums: dict[str, str]) -> Path:
    """``path`` if its full SHA-256 is the one listed in SHA256SUMS; else a :class:`ZooError` naming it."""
    if path.name not in sums:
        raise ZooError(f"{path} is not listed in {path.parent / 'SHA256SUMS'}: it was not shipped by `python -m "
                       f"gclib zoo build`. Remove it, or set GCLIB_ZOO=0 to train everything yourself.")
    if sha256_of(path) != sums[path.name]:
        raise ZooError(f"{path} does not match its SHA-256 in SHA256SUMS: the file is damaged or was changed. "
                       f"Restore it (`git checkout -- {path.relative_to(REPO) if path.is_relative_to(REPO) else path}`)"
                       f", or set GCLIB_ZOO=0 to train the stage yourself.")
    return path


def stem(stage) -> str:
    return stage.filename[:-len(".pt")]


def read_record(name: str, zoo_dir: Path | None = None, sums: dict | None = None) -> dict:
    zoo_dir = Path(zoo_dir) if zoo_dir is not None else ZOO_DIR
    sums = read_sums(zoo_dir) if sums is None else sums
    return json.loads(verified(zoo_dir / f"{name}.json", sums).read_text())


def read_weights(name: str, zoo_dir: Path | None = None, sums: dict | None = None) -> dict[str, dict]:
    """The shipped networks as {net: state_dict} in float32 (safetensors: no code runs on load; 8-bit tensors are
    multiplied back by their per-channel scales)."""
    zoo_dir = Path(zoo_dir) if zoo_dir is not None else ZOO_DIR
    from safetensors.torch import load_file
    sums = read_sums(zoo_dir) if sums is None else sums
    flat = load_file(str(verified(zoo_dir / f"{name}.safetensors", sums)))
    weights: dict[str, dict] = {}
    scales: dict[str, dict] = {}
    for key, tensor in flat.items():
        net, _, param = key.partition(".")
        if net.endswith(SCALE_SUFFIX):
            scales.setdefault(net[:-len(SCALE_SUFFIX)], {})[param] = tensor
        else:
            weights.setdefault(net, {})[param] = tensor.float() if tensor.is_floating_point() else tensor
    for net, by_param in scales.items():            # 8-bit tensors back to float32
        for param, scale in by_param.items():
            weights[net][param] = _from_int8(weights[net][param], scale)
    return weights


def lookup(stage, zoo_dir: Path | None = None):
    """The shipped artifact of ``stage`` (an :class:`gclib.stages.Artifact` with ``shipped`` set), or None when the
    zoo is off or has none with this key. A damaged file raises :class:`ZooError`, it is never loaded."""
    zoo_dir = Path(zoo_dir) if zoo_dir is not None else ZOO_DIR
    from .stages import Artifact
    name = stem(stage)
    if not enabled() or not (zoo_dir / f"{name}.json").exists():
        return None
    sums = read_sums(zoo_dir)
    record = read_record(name, zoo_dir, sums)
    if record["stage"]["key"] != stage.key:
        raise ZooError(f"{zoo_dir / name}.json records key {record['stage']['key']}, not the {stage.key} its name "
                       f"says: the file was changed. Restore it, or set GCLIB_ZOO=0.")
    weights = read_weights(name, zoo_dir, sums) if record.get("networks") else {}
    return Artifact(record["stage"], zoo_dir / f"{name}.{'safetensors' if weights else 'json'}", weights,
                    record["history"], record["evals"], False, shipped=True, selected=record.get("selected", {}),
                    test_scores=record.get("test_scores", {}), heldout_scores=record.get("heldout_scores", {}))


# ------------------------------------------------------------------------------------------------------------------
# What the zoo ships, and how it is built
# ------------------------------------------------------------------------------------------------------------------
def expected_stages(preset: str = ZOO_PRESET) -> dict[str, object]:
    """{file stem: Stage} of every stage the zoo ships, as the current code and preset key them: each section's
    teachers (every seed of ``teacher.seeds``) and, where it ships one, the supernet of its first teacher."""
    from . import stages
    out = {}
    for name, section in ZOO_SECTIONS.items():
        cfg = section_preset(name, preset)
        data = SimpleNamespace(task=section.task, paired=section.paired)
        for s in cfg.teacher.seeds:
            stage = stages.teacher_stage(cfg, data, s)
            out[stem(stage)] = stage
        first = stages.teacher_stage(cfg, data, cfg.teacher.seeds[0])
        if "supernet" in section.kinds:
            supernet = stages.supernet_stage(cfg, data, first.key, cfg.teacher.seeds[0])
            out[stem(supernet)] = supernet
        if "standalone" in section.kinds:
            for config in standalone_configs(cfg, section):
                for s in cfg.supernet.standalone_seeds:
                    stage = stages.subnet_stage(cfg, data, config, cfg.supernet.standalone_steps, "teacher",
                                                first.key, s)
                    out[stem(stage)] = stage
        if "frontier" in section.kinds:
            stage = frontier_stage(cfg, data)
            out[stem(stage)] = stage
        if "student" in section.kinds:      # notebook 02's students of every seed but the first (trained live)
            for variant in VARIANTS:
                for s in cfg.student.seeds[1:]:
                    stage = stages.student_stage(cfg, data, variant, first.key, cfg.teacher.seeds[0] + s)
                    out[stem(stage)] = stage
        if "comparison" in section.kinds:   # notebook 03's other supernets (the rank check's comparisons)
            for other in stages.supernet_comparisons(cfg).values():
                stage = stages.supernet_stage(other, data, first.key, cfg.teacher.seeds[0])
                out[stem(stage)] = stage
        if "finetune" in section.kinds:     # notebook 04's fine-tunings of every seed but the first (trained live)
            out.update({stem(stage): stage for stage in finetune_stages(name, preset)})
    return out


def notebook_finetune_configs(section: str, preset: str = ZOO_PRESET, zoo_dir: Path | None = None) -> dict[str, str]:
    """``{"searched": config, "uniform": config}``: what notebook 04 fine-tunes at its main budget, as the shipped
    frontier record found it (the search is deterministic: the notebook's run finds the same networks); {} where no
    current frontier is shipped or it fine-tuned for another number of steps than the notebook does."""
    cfg, record = section_preset(section, preset), frontier_record(section, preset, zoo_dir)
    notebook = (record or {}).get("notebook fine-tuning")
    if not notebook or notebook["steps"] != cfg.search.finetune_steps:
        return {}
    return {row["role"].split(" = ")[-1]: row["config"] for row in notebook["rows"] if row["budget"] == notebook["budget"]}


def finetune_stages(section: str, preset: str = ZOO_PRESET, seed: int = 0, zoo_dir: Path | None = None) -> list:
    """The stages of notebook 04's fine-tunings at its main budget (:func:`notebook_finetune_configs`) of every seed of
    ``student.seeds`` but the first, from the section's supernet."""
    from . import stages
    cfg, s = section_preset(section, preset), ZOO_SECTIONS[section]
    data = SimpleNamespace(task=s.task, paired=s.paired)
    first = stages.teacher_stage(cfg, data, seed + cfg.teacher.seeds[0])
    supernet = stages.supernet_stage(cfg, data, first.key, seed + cfg.teacher.seeds[0])
    return [stages.subnet_stage(cfg, data, config, cfg.search.finetune_steps, "supernet", supernet.key, seed + k)
            for config in notebook_finetune_configs(section, preset, zoo_dir).values() for k in cfg.student.seeds[1:]]


def shipped_networks(stage, preset: str = ZOO_PRESET) -> tuple[str, ...]:
    """The networks a shipped stage's file holds: the compressed teacher (the first seed) G and D (students start
    their D from it), the supernet G, D and mapping convs (fine-tuning starts from all three); the generator alone
    where a notebook only scores and draws it (notebook 02's students, notebook 03's comparison supernets); nothing
    (the record alone) for the other teachers' seeds and the stand-alone references, whose scores are all that is
    read."""
    record = stage.record() if hasattr(stage, "record") else stage
    section = section_of(record)
    cfg, kind = section_preset(section, preset), record["kind"]
    data = SimpleNamespace(task=record["task"], paired=ZOO_SECTIONS[section].paired)
    if kind == "teacher":
        return ("G", "D") if record["seed"] == cfg.teacher.seeds[0] else networks_of_other_seeds(section)
    if kind == "supernet":
        from . import stages
        main = stages.supernet_stage(cfg, data, record["parent"], cfg.teacher.seeds[0])
        return ("G", "D", "maps") if record["key"] == main.key else ("G",)
    if kind == "student":
        return ("G",)
    return ()   # stand-alone references and notebook 04's fine-tunings: their scores are what is read


def frontier_preset(cfg):
    """``cfg`` with the frontier's fine-tuning length (``search.frontier_finetune_steps``, where set) as the one
    every fine-tuning runs."""
    steps = cfg.search.frontier_finetune_steps
    return cfg.override({"search.finetune_steps": steps}) if steps else cfg


def frontier_stage(cfg, data):
    """The frontier's stage: what its numbers depend on (the supernet, every teacher seed, the search's settings,
    the fine-tuning's recipe and seeds, the test scorer), so a change to any of them makes the shipped one stale."""
    from . import stages
    from .families import get_family
    family = get_family(cfg.family)
    notebook_steps, cfg = cfg.search.finetune_steps, frontier_preset(cfg)
    first = stages.teacher_stage(cfg, data, cfg.teacher.seeds[0])
    supernet = stages.supernet_stage(cfg, data, first.key, cfg.teacher.seeds[0])
    space = cfg.supernet.space(family, data.paired)
    tuning = stages.subnet_stage(cfg, data, space.largest(), cfg.search.finetune_steps, "supernet", supernet.key)
    # the fine-tuning's length is in "fine-tuning"; the notebook's shorter one where the frontier's differs
    search = {k: v for k, v in asdict(cfg.search).items() if k != "frontier_finetune_steps"}
    if notebook_steps != cfg.search.finetune_steps:
        search["notebook finetune_steps"] = notebook_steps
    settings = {"family": cfg.family, "search": search,
                "fine-tuning": {k: v for k, v in tuning.settings.items() if k != "config"},
                "fine-tuning seeds": list(cfg.student.seeds),
                "teachers": [stages.teacher_stage(cfg, data, s).key for s in cfg.teacher.seeds],
                "test": {"images": cfg.data.n_test, "resamples": FRONTIER_RESAMPLES, "features": "offline",
                         **({"copies replaced": copies} if (copies := copies_in_test(cfg, data.task)) else {})},
                **({"calibration images": CALIBRATION_IMAGES} if cfg.family == "spade" else {})}
    return stages.Stage("frontier", data.task, cfg.teacher.seeds[0], settings, parent=supernet.key,
                        label=stages._label(cfg))


def copies_in_test(cfg, task: str) -> int:
    """How many copies of training or held-out examples the embedded test split of ``task`` replaced at ``cfg``'s
    scale (facades: 6 of 500): the frontier's key holds it, so records scored before the copies went are stale."""
    from . import data as gdata
    d = cfg.data
    scale = (task, d.image_size, d.n_train, d.n_heldout, d.n_test)
    if scale not in _copies_in_test:
        _copies_in_test[scale] = gdata.load_task(task, cfg).test.replaced
    return _copies_in_test[scale]


_copies_in_test: dict[tuple, int] = {}


FRONTIER_RESAMPLES = 100   # bootstrap resamples of the frontier's test scores (notebook 04's test scorer's)
CALIBRATION_IMAGES = 256   # training label maps that re-calibrate a GauGAN network's BatchNorm (notebook 06's)


def standalone_configs(cfg, section: Section) -> list[str]:
    """Notebook 03's stand-alone references: the sub-networks its rank check trains on their own."""
    from . import stages
    from .families import get_family
    family = get_family(cfg.family)
    space = cfg.supernet.space(family, section.paired)
    return stages.standalone_configs(
        cfg, space, lambda c: family.config_macs(c, cfg.data.image_size, cfg.teacher.n_blocks), cfg.teacher.seeds[0])


def section_preset(section: str, preset: str = ZOO_PRESET):
    """The preset a section's notebook trains with (notebook 06: ``family`` spade on the facades task)."""
    from .presets import notebook_preset
    s = ZOO_SECTIONS[section]
    return notebook_preset(preset, s.task, "", {"family": s.family} if s.family != "resnet" else {})


def is_finetuning(stage) -> bool:
    """Whether a stage (a Stage or its record) is one of notebook 04's fine-tunings from the supernet: the frontier's
    build trains them and the zoo ships their scores alone."""
    kind, settings = (stage["kind"], stage["settings"]) if isinstance(stage, dict) else (stage.kind, stage.settings)
    return kind == "subnet" and settings.get("start") == "supernet"


def section_of(stage_record: dict) -> str:
    """The section a stage record belongs to (by its task and family)."""
    family = stage_record["settings"].get("family", "resnet")
    for name, s in ZOO_SECTIONS.items():
        if (s.task, s.family) == (stage_record["task"], family):
            return name
    raise ZooError(f"the zoo has no section for the {family} family on {stage_record['task']!r}")


def data_digest(section: str, preset: str = ZOO_PRESET) -> dict:
    """What a shipped artifact was trained on: the embedded data's version and a SHA-256 of the training split's
    images. Keys hold the data's settings, not its content: a change to the generator of the embedded tasks would
    otherwise leave the zoo's keys current while its weights were trained on other images."""
    from .data.embedded import data_version
    _, splits, _ = _splits_and_scorer(section, preset)
    h = hashlib.sha256()
    for tensor in (splits.train.A, splits.train.B):
        h.update(tensor.contiguous().numpy().tobytes())
    return {"embedded_version": data_version(ZOO_SECTIONS[section].task), "train_sha256": h.hexdigest()}


def rebuild_command(section: str) -> str:
    return f"python -m gclib zoo build --sections {section}"


@functools.lru_cache(maxsize=8)
def _splits_and_scorer(section: str, preset: str, seed: int = 0, resamples: int = 0):
    """The section's preset, its data as its notebook splits it, and the notebook's held-out scorer."""
    from . import data as gdata, metrics
    from .families import get_family
    task = ZOO_SECTIONS[section].task
    cfg = section_preset(section, preset)
    family = get_family(cfg.family)
    splits = family.task_data(gdata.load_task(task, cfg, seed), cfg)
    segmenter = metrics.load_segmenter(task) if task in gdata.EMBEDDED_TASKS else None
    scorer = metrics.split_scorer(splits, "heldout", metrics.get_extractor("offline"), segmenter,
                                  resamples=resamples, style_dim=family.style_dim)
    return cfg, splits, scorer


def build_teachers(section: str, preset: str = ZOO_PRESET, runs_dir: str | Path = BUILD_DIR, seed: int = 0,
                   progress: bool = True) -> dict:
    """A section's teachers (every seed of ``teacher.seeds``), as its notebook trains them (the same data, seeds and
    held-out scorer, so the same keys), trained from nothing or resumed in ``runs_dir``."""
    from . import stages
    cfg, splits, scorer = _splits_and_scorer(section, preset, seed)
    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    with disabled():
        return stages.teachers(cfg, splits, runs_dir, seed, torch.device("cpu"), scorer, progress)


def candidate_score(evaluation: dict, metric: str) -> float | None:
    """The best ``metric`` one evaluation offers to the selection: of the weight average and the raw weights (a
    supernet's: each the mean over its reference sub-networks), lower is better."""
    from .recipes.trainer import selection_score
    raw = {k[len("raw_"):]: v for k, v in evaluation.items() if k.startswith("raw_")}
    own = {k: v for k, v in evaluation.items() if not k.startswith("raw_")}
    scores = [v for v in (selection_score(own, metric), selection_score(raw, metric)) if v is not None]
    return min(scores) if scores else None


def plateau(evals: list[dict], metric: str, half_width: float) -> dict:
    """The plateau rule: training has stopped improving when the best held-out ``metric`` of the last quarter of
    the evaluations is no more than ``half_width`` (half the bootstrap interval of the kept weights' score) better
    than the best before it (lower is better). Still falling by more than the instrument resolves: not converged."""
    values = [(e["step"], candidate_score(e, metric)) for e in evals]
    values = [(step, v) for step, v in values if v is not None]
    if not values:
        return {"metric": metric, "holds": None, "why": "no held-out evaluations during training"}
    cut = len(values) - max(1, len(values) // 4)
    before, last = values[:cut], values[cut:]
    best_before = min(v for _, v in before) if before else float("inf")
    best_last = min(v for _, v in last)
    return {"metric": metric, "best": min(best_before, best_last), "best step": min(values, key=lambda sv: sv[1])[0],
            "best before last quarter": best_before, "best of last quarter": best_last,
            "last quarter from step": last[0][0], "half interval": half_width,
            "holds": bool(best_before - best_last <= half_width)}


def _git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "gclib"], cwd=REPO, capture_output=True,
                               text=True).stdout.strip()
        return head.stdout.strip() + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _generator(stage_record: dict, preset: str):
    """The network a stage's ``G`` weights load into (a supernet set to its largest sub-network)."""
    from .families import get_family
    cfg = section_preset(section_of(stage_record), preset)
    family = get_family(cfg.family)
    if stage_record["kind"] == "teacher":
        return family.teacher(cfg.teacher.ngf, **family.arch(cfg))
    if stage_record["kind"] == "supernet":
        space = family.space([tuple(c) for c in stage_record["settings"]["choices"]])
        return family.supernet(max(max(c) for c in space.choices), **family.arch(cfg)).set_config(space.largest())
    if stage_record["kind"] in ("subnet", "student"):
        return family.student(stage_record["settings"]["config"], **family.arch(cfg))
    raise ValueError(f"the zoo ships teachers, supernets, students and sub-networks, not a {stage_record['kind']!r}")


def _rounded(state: dict) -> dict:
    return {k: v.half().float() if v.is_floating_point() else v for k, v in state.items()}


def _int8(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric 8-bit weights, one scale per output channel: (int8 tensor, float32 scales (C_out,))."""
    scale = tensor.detach().flatten(1).abs().amax(1).clamp_min(1e-12) / 127
    q = (tensor / scale.view(-1, *[1] * (tensor.dim() - 1))).round().clamp(-127, 127).to(torch.int8)
    return q, scale.float()


def _from_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.view(-1, *[1] * (q.dim() - 1))


def _stored(name: str, state: dict, fp16: bool, int8: bool) -> tuple[dict, float]:
    """The flat safetensors entries of network ``name`` and the largest relative change of a weight tensor: 8-bit
    weight matrices (``int8``, with their scales), 16-bit (``fp16``) or 32-bit floats elsewhere."""
    flat, worst = {}, 0.0
    for k, v in state.items():
        if int8 and v.is_floating_point() and v.dim() >= 2:
            q, scale = _int8(v.float())
            flat[f"{name}.{k}"], flat[f"{name}{SCALE_SUFFIX}.{k}"] = q.contiguous(), scale.contiguous()
            worst = max(worst, float((_from_int8(q, scale) - v).norm() / v.norm().clamp_min(1e-12)))
        else:
            flat[f"{name}.{k}"] = (v.half() if (fp16 or int8) and v.is_floating_point() else v).contiguous()
    return flat, worst


def export(artifact_path: Path, networks: tuple[str, ...] = ("G", "D"), preset: str = ZOO_PRESET,
           zoo_dir: Path | None = None) -> dict:
    """Ship the finished artifact at ``artifact_path``: its ``networks`` as safetensors (16-bit where the outputs
    stay within FP16_TOLERANCE), its record as JSON, both listed in SHA256SUMS. ``networks=()`` ships the record
    alone (scores, history; the stage then trains where it is needed). Returns the record."""
    zoo_dir = Path(zoo_dir) if zoo_dir is not None else ZOO_DIR
    from safetensors.torch import save_file

    from . import metrics
    from .artifacts import atomic_write_bytes, atomic_write_json, load_artifact
    content = load_artifact(artifact_path)
    stage = content["stage"]
    name = Path(artifact_path).name[:-len(".pt")]
    section = section_of(stage)
    _, splits, scorer = _splits_and_scorer(section, preset, resamples=200)
    G = _generator(stage, preset).eval()
    G.load_state_dict(content["weights"]["G"])
    A = splits.heldout.A[:CHECK_IMAGES]
    with torch.no_grad():
        full = metrics.generate(G, A).float()
        G.load_state_dict(_rounded(content["weights"]["G"]))
        half = metrics.generate(G, A).float()
    levels = (full - half).abs()                     # generate() gives uint8 images: grey levels 0-255
    fp16 = bool(levels.max() <= FP16_TOLERANCE)
    stored = {n: (_rounded(content["weights"][n]) if fp16 else content["weights"][n]) for n in networks}
    # a teacher's D in 8 bits where its weights stay within INT8_TOLERANCE (measured per tensor, recorded)
    change = {n: _stored(n, content["weights"][n], fp16, True)[1] for n in networks
              if n in INT8_NETWORKS and stage["kind"] == "teacher"}
    int8 = {n for n, worst in change.items() if worst <= INT8_TOLERANCE}
    G.load_state_dict(stored["G"] if "G" in stored else content["weights"]["G"])
    scores = scorer(G)                               # the shipped weights, held-out, with intervals
    reference = stage["kind"] in ("subnet", "student")   # its held-out scores beside the others' are what is read
    identity = {} if reference else identity_scores(section, scorer, preset)
    check = _check_scorer(section, preset)(G)
    # a teacher's or a fine-tuning's weights not shipped: the test scores notebooks 01 and 04 read
    tested = not networks and (not reference or is_finetuning(stage))
    if tested:
        from . import metrics as m
        test_scorer = m.split_scorer(splits, "test", m.get_extractor("offline"), m.load_segmenter(stage["task"]),
                                     resamples=100)
        test = {"offline": test_scorer(G)}
    record = {
        "stage": stage, "preset": preset, "networks": list(networks),
        "storage": "float16" if fp16 else "float32",
        "fp16_output_difference_levels": {"max": float(levels.max()), "mean": float(levels.mean()),
                                          "tolerance": FP16_TOLERANCE, "images": len(A)},
        "int8": {"networks": sorted(int8), "largest relative weight change": change,
                 "tolerance": INT8_TOLERANCE},
        "selected": content.get("selected", {}), "computed": content.get("computed", {}),
        "heldout_scores": scores, "identity_scores": identity,
        "test_scores": test if tested else {},
        "check": {"images": CHECK_IMAGES, "scores": check},
        "plateau": plateau(content["evals"], "fid", (scores["fid high"] - scores["fid low"]) / 2),
        "command": rebuild_command(section), "data": data_digest(section, preset),
        "trained_at": content.get("computed", {}).get("commit", "unknown"), "exported_at": _git_commit(),
        "history": thin_history(content["history"], 100 if reference else HISTORY_ROWS), "evals": content["evals"],
    }
    zoo_dir.mkdir(parents=True, exist_ok=True)
    if networks:
        flat = {}
        for n in networks:
            entries, _ = _stored(n, content["weights"][n], fp16, n in int8)
            flat.update(entries)
        target = zoo_dir / f"{name}.safetensors"
        if not _holds(target, flat):   # the same tensors again: keep the file (no new 10-50 MB blob in git)
            tmp = zoo_dir / f".{name}.safetensors.tmp"
            save_file(flat, str(tmp))
            atomic_write_bytes(target, tmp.read_bytes())
            tmp.unlink()
    elif (zoo_dir / f"{name}.safetensors").exists():   # shipped with weights before, as its record alone now
        (zoo_dir / f"{name}.safetensors").unlink()        # (the zoo's own build output; git keeps the old file)
    atomic_write_json(zoo_dir / f"{name}.json", record)
    write_sums(zoo_dir)
    return record


HISTORY_ROWS = 500   # a shipped record's training history: at most this many rows (a 20000-step one was 4 MB)


def thin_history(history: list[dict], rows: int = HISTORY_ROWS) -> list[dict]:
    """The per-step training history in at most ``rows`` rows: each the mean of its block of consecutive steps (the
    curves notebooks draw are rolling means anyway), ``seconds`` summed, ``step`` the block's last step; values to 5
    significant digits (a record is text in git)."""
    size = -(-len(history) // rows) if history else 1
    out = []
    for start in range(0, len(history), size):
        block = history[start:start + size]
        row = {k: sum(h[k] for h in block) / len(block) for k in block[0] if k not in ("step", "seconds")}
        row["seconds"] = sum(h["seconds"] for h in block)
        out.append({**{k: float(f"{v:.5g}") for k, v in row.items()}, "step": block[-1]["step"]})
    return out


def identity_scores(section: str, scorer, preset: str = ZOO_PRESET) -> dict:
    """The scores of doing nothing: the held-out inputs as they are (GauGAN's: the colour-coded label maps), scored
    as a generator's outputs. A teacher worth compressing is far better than this."""
    from . import data as gdata
    cfg = section_preset(section, preset)
    pictures = gdata.load_task(ZOO_SECTIONS[section].task, cfg, 0).heldout.A[:len(scorer.inputs)]
    return scorer.score_images(gdata.to_uint8(pictures))


def _holds(path: Path, tensors: dict) -> bool:
    """Whether the safetensors file at ``path`` holds exactly ``tensors`` (names, dtypes, values)."""
    from safetensors.torch import load_file
    if not path.exists():
        return False
    try:
        found = load_file(str(path))
    except Exception:
        return False
    return found.keys() == tensors.keys() and all(
        found[k].dtype == v.dtype and torch.equal(found[k], v) for k, v in tensors.items())


@functools.lru_cache(maxsize=8)
def _check_scorer(section: str, preset: str):
    """The small held-out scorer whose scores a shipped generator must reproduce: the first CHECK_IMAGES held-out
    images, no intervals (a fixed number, not a sample)."""
    from . import metrics
    from .families import get_family
    task = ZOO_SECTIONS[section].task
    cfg, splits, _ = _splits_and_scorer(section, preset)
    h, n = splits.heldout, CHECK_IMAGES
    return metrics.GeneratorScorer(
        h.A[:n], h.B[:n], metrics.get_extractor("offline"),
        targets=h.target[:n] if splits.paired and h.target is not None else None, floor_images=splits.test.B[:n],
        resamples=0, segmenter=metrics.load_segmenter(task),
        label_target=h.label_target[:n] if h.label_target is not None else None,
        style_dim=get_family(cfg.family).style_dim)


def verify(zoo_dir: Path | None = None, preset: str = ZOO_PRESET, rescore: bool = True) -> list[str]:
    """Every shipped artifact: listed and intact (full SHA-256), current (its key is the one the code and preset
    compute now), loadable (safetensors into its network, strictly), and with ``rescore`` reproducing its recorded
    check scores within CHECK_RTOL. Returns what was checked; raises :class:`ZooError` naming the first problem."""
    zoo_dir = Path(zoo_dir) if zoo_dir is not None else ZOO_DIR
    sums = read_sums(zoo_dir)
    expected = expected_stages(preset)
    checked = []
    for record_path in sorted(zoo_dir.glob("*.json")):
        name = record_path.stem
        record = read_record(name, zoo_dir, sums)
        stage = record["stage"]
        section = section_of(stage)
        if name not in expected:
            now = {k: v for k, v in expected.items() if k.rsplit("_", 1)[0] == name.rsplit("_", 1)[0]}
            raise ZooError(f"{record_path.name}: the current code and the {preset!r} preset key this "
                           f"{stage['kind']} ({stage['task']}, seed {stage['seed']}) as "
                           f"{', '.join(now) or 'nothing shipped'}: a change stranded the zoo. Rebuild it with "
                           f"`{rebuild_command(section)}`, or undo the change.")
        if record.get("data") != data_digest(section, preset):
            raise ZooError(f"{record_path.name} was trained on other {stage['task']} training images than the current "
                           f"code generates (embedded data version or content changed): rebuild it with "
                           f"`{rebuild_command(section)}`, or undo the change")
        if record.get("networks"):
            weights = read_weights(name, zoo_dir, sums)
            G = _generator(stage, preset).eval()
            G.load_state_dict(weights["G"])
            if rescore:
                got = _check_scorer(section, preset)(G)
                for metric, want in record["check"]["scores"].items():
                    if abs(got[metric] - want) > CHECK_RTOL * max(abs(want), 1e-6):
                        raise ZooError(f"{name}.safetensors: held-out {metric} on {CHECK_IMAGES} images re-scores "
                                       f"{got[metric]:.4g}, its record says {want:.4g} (tolerance "
                                       f"{CHECK_RTOL:.0%}): the weights or the scorer changed. Rebuild with "
                                       f"`{rebuild_command(section)}`.")
        checked.append(name)
    for name in sums:
        if not (zoo_dir / name).exists():
            raise ZooError(f"SHA256SUMS lists {name}, which is not in {zoo_dir}: restore it or rebuild the zoo")
    return checked


def _first_teacher(section: str, preset: str, runs_dir: str | Path, seed: int, progress: bool):
    """What a section's distillation stages start from, as its notebooks have it: (the preset, the data, the held-out
    scorer, the first teacher, and its cache of outputs and features). The teacher: the one in ``runs_dir``, else the
    shipped one (a section rebuilt in parts: its teachers shipped first), else trained there first."""
    from . import stages
    from .families import get_family
    from .recipes.distill import TeacherCache
    cfg, splits, scorer = _splits_and_scorer(section, preset, seed)
    # the teacher in runs_dir (a build from nothing trains it there first), else the shipped one, else trained
    with disabled(False):
        teacher = stages.teacher(cfg, splits, runs_dir, seed + cfg.teacher.seeds[0], torch.device("cpu"), scorer,
                                 progress)
    return cfg, splits, scorer, teacher, TeacherCache.for_split(get_family(cfg.family), teacher.net, splits.train)


def build_supernet(section: str, preset: str = ZOO_PRESET, runs_dir: str | Path = BUILD_DIR, seed: int = 0,
                   progress: bool = True):
    """A section's supernet (notebook 03's), distilled from the first teacher (trained first if missing) as the
    notebook does it: the same held-out scorer evaluates its largest and smallest sub-networks."""
    from . import stages
    with disabled():
        cfg, splits, scorer, teacher, cache = _first_teacher(section, preset, runs_dir, seed, progress)
        return stages.supernet(cfg, splits, teacher, runs_dir, seed, torch.device("cpu"), scorer, cache, progress)


ZOO_STAGES = LAB_KINDS


def build_students(section: str, preset: str = ZOO_PRESET, runs_dir: str | Path = BUILD_DIR, seed: int = 0,
                   progress: bool = True) -> list:
    """Notebook 02's students (every variant) of every seed of ``student.seeds`` but the first, from the first
    teacher (trained first if missing), as the notebook trains them: the notebook trains the first seed live and
    loads these, so a lab sees the experiment run and still gets the seed-to-seed spread."""
    from . import stages
    with disabled():
        cfg, splits, scorer, teacher, cache = _first_teacher(section, preset, runs_dir, seed, progress)
        return [stages.student(cfg, splits, teacher, variant, runs_dir, seed + cfg.teacher.seeds[0] + s,
                               torch.device("cpu"), scorer, cache, progress=progress)
                for variant in VARIANTS for s in cfg.student.seeds[1:]]


def build_comparisons(section: str, preset: str = ZOO_PRESET, runs_dir: str | Path = BUILD_DIR, seed: int = 0,
                      progress: bool = True) -> list:
    """Notebook 03's comparison supernets (:func:`gclib.stages.supernet_comparisons`: the other sampler's, and the
    one with every entry shared), trained as the notebook trains them."""
    from . import stages
    with disabled():
        cfg, splits, scorer, teacher, cache = _first_teacher(section, preset, runs_dir, seed, progress)
        return [stages.supernet(other, splits, teacher, runs_dir, seed, torch.device("cpu"), scorer, cache, progress)
                for other in stages.supernet_comparisons(cfg).values()]


def build_finetunes(section: str, preset: str = ZOO_PRESET, runs_dir: str | Path = BUILD_DIR, seed: int = 0,
                    progress: bool = True) -> list:
    """Notebook 04's fine-tunings at its main budget of every seed but the first (:func:`finetune_stages`), from the
    shipped teacher and supernet as the notebook fine-tunes them, in ``runs_dir/frontier`` (where the frontier build
    trains the same runs, so a built frontier holds them already)."""
    from . import stages
    from .recipes.distill import TeacherCache
    from .families import get_family
    configs = notebook_finetune_configs(section, preset)
    if not configs:
        raise ZooError(f"notebook 04's fine-tunings of {section} are the frontier's: build it first (python -m gclib "
                       f"zoo build --sections {section} --stages frontier)")
    cfg, splits, scorer = _splits_and_scorer(section, preset, seed)
    device, where = torch.device("cpu"), Path(runs_dir) / "frontier"
    teacher = stages.teacher(cfg, splits, where, seed + cfg.teacher.seeds[0], device, scorer, progress)
    cache = TeacherCache.for_split(get_family(cfg.family), teacher.net, splits.train)
    supernet = stages.supernet(cfg, splits, teacher, where, seed, device, scorer, cache, progress)
    with disabled():
        return [stages.subnet(cfg, splits, teacher, config, where, cfg.search.finetune_steps, "supernet", supernet,
                              seed + k, device, cache=cache, progress=progress)
                for config in configs.values() for k in cfg.student.seeds[1:]]


def build_standalone(section: str, preset: str = ZOO_PRESET, runs_dir: str | Path = BUILD_DIR, seed: int = 0,
                     progress: bool = True) -> list:
    """A section's stand-alone references (notebook 03's rank check): each sub-network trained on its own from the
    first teacher (trained first if missing), once per seed of ``supernet.standalone_seeds``."""
    from . import stages
    with disabled():
        cfg, splits, scorer, teacher, cache = _first_teacher(section, preset, runs_dir, seed, progress)
        return [stages.subnet(cfg, splits, teacher, config, runs_dir, cfg.supernet.standalone_steps, "teacher",
                              seed=seed + s, device=torch.device("cpu"), cache=cache,
                              progress=progress)
                for config in standalone_configs(cfg, ZOO_SECTIONS[section])
                for s in cfg.supernet.standalone_seeds]


def teacher_macs(cfg, family, net=None) -> float:
    """The teacher's MACs at the preset's resolution (GauGAN's and MUNIT's by their closed forms, with MUNIT's style
    encoder; the ResNet teacher's as profiled)."""
    if hasattr(family, "teacher_macs"):
        return family.teacher_macs(cfg.teacher.ngf, cfg.data.image_size, **family.arch(cfg))
    from . import metrics
    return metrics.count_macs(net if net is not None else family.teacher(cfg.teacher.ngf, **family.arch(cfg)),
                              cfg.data.image_size)


def _plain(value):
    """Scores as JSON: a :class:`~gclib.metrics.Score` as {value, low, high}, dict keys as text."""
    if hasattr(value, "low") and hasattr(value, "value"):
        return {"value": float(value.value), "low": float(value.low), "high": float(value.high)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value) if isinstance(value, numbers.Real) else value


def build_frontier(section: str, preset: str = ZOO_PRESET, runs_dir: str | Path = BUILD_DIR / "frontier",
                   seed: int = 0, progress: bool = True, zoo_dir: Path | None = None) -> dict:
    """Notebook 04's search and fine-tuning at every budget of ``search.frontier_widths``, with every fine-tuning seed,
    against the teachers and supernet a notebook gets (the shipped ones; trained here where the zoo ships none, as
    GauGAN's and MUNIT's supernets), scored on the test split before and after fine-tuning; written as the
    section's frontier record. Resumable: the fine-tunings are artifacts in ``runs_dir``."""
    from . import data as gdata, metrics, pipeline, stages
    from .artifacts import atomic_write_json
    from .families import get_family
    from .recipes.distill import TeacherCache
    from .search import SupernetEvaluator
    started = time.time()
    cfg, splits, heldout = _splits_and_scorer(section, preset, seed)
    family, device, task = get_family(cfg.family), torch.device("cpu"), ZOO_SECTIONS[section].task
    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    teachers = stages.teachers(cfg, splits, runs_dir, seed, device, heldout, progress)
    teacher = teachers[seed + cfg.teacher.seeds[0]]
    cache = TeacherCache.for_split(family, teacher.net, splits.train)
    supernet = stages.supernet(cfg, splits, teacher, runs_dir, seed, device, heldout, cache, progress)
    space = cfg.supernet.space(family, splits.paired)
    macs = lambda config: family.config_macs(config, cfg.data.image_size, **family.arch(cfg))
    # every network is made ready to score (GauGAN's BatchNorm re-calibrated, notebook 06; the others: nothing to do);
    # GauGAN's search ranks by mIoU
    calibration = splits.train.A[:CALIBRATION_IMAGES]

    def score(net):
        scores = heldout(family.calibrate(net, calibration))
        return {**scores, "mIoU error": 1 - scores["mIoU"]} if "mIoU" in scores else scores
    metric = "mIoU error" if cfg.family == "spade" else cfg.search.metric
    # the search's scores kept as they come, so a build stopped during the search resumes there
    about = {"supernet": supernet.artifact.key, "metric": metric, "held-out images": len(splits.heldout),
             "features": "offline", **({"calibration images": CALIBRATION_IMAGES} if cfg.family == "spade" else {})}
    evaluator = SupernetEvaluator(supernet.net, score, macs, metric,
                                  Path(runs_dir) / f"search_{section}_s{seed}_{supernet.artifact.key[:10]}.json", about)
    widths = cfg.search.frontier_widths or cfg.search.budget_widths     # the notebook's search, at every budget
    found = pipeline.search(evaluator, space, macs, cfg.override({"search.budget_widths": widths}), seed)
    segmenter = metrics.load_segmenter(task)
    test = metrics.split_scorer(splits, "test", metrics.get_extractor("offline"), segmenter,
                                resamples=FRONTIER_RESAMPLES, style_dim=family.style_dim)
    seeds = [seed + s for s in cfg.student.seeds]
    tuning = frontier_preset(cfg)
    with disabled():    # every fine-tuning trained here (the zoo ships some of them as their scores alone)
        rows = pipeline.frontier(tuning, splits, teacher, supernet, found, runs_dir, seeds, device, test,
                                 heldout, macs, cache, progress, calibration)
        # the notebook's own fine-tuning (shorter) at its main budget, so a notebook can show its live run agrees
        main = pipeline.main_budget(found.plan, cfg)
        same = tuning.search.finetune_steps == cfg.search.finetune_steps
        notebook = {"steps": cfg.search.finetune_steps, "budget": main, "rows": rows if same else
                    pipeline.frontier(cfg, splits, teacher, supernet, pipeline.Search({main: found.plan[main]},
                                      {main: found.results[main]}, evaluator), runs_dir, seeds, device, test,
                                      heldout, macs, cache, progress, calibration)}
    pictures = gdata.load_task(task, cfg, seed).test.A[:len(test.inputs)]      # doing nothing: inputs as outputs
    stage = frontier_stage(cfg, SimpleNamespace(task=task, paired=splits.paired))
    record = {
        "stage": stage.record(), "preset": preset, "networks": [], "section": section,
        "teacher_macs": teacher_macs(cfg, family, teacher.net),
        "teacher_test": {str(s): stages.test_scores(t, test, "offline") for s, t in teachers.items()},
        "floor": {m: float(v.value) for m, v in test.floor.items()},
        "identity_test": test.score_images(gdata.to_uint8(pictures)),
        "search": {"metric": evaluator.metric, "evaluated": len(evaluator.results),
                   "budgets": {label: p["budget"] for label, p in found.plan.items()}},
        "rows": rows, "fine-tuning steps": tuning.search.finetune_steps, "seeds": seeds,
        "notebook fine-tuning": notebook,
        "command": f"python -m gclib zoo build --sections {section} --stages frontier",
        "data": data_digest(section, preset), "trained_at": _git_commit(),
        "minutes": (time.time() - started) / 60,
    }
    zoo_dir = Path(zoo_dir) if zoo_dir is not None else ZOO_DIR
    zoo_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(zoo_dir / f"{stem(stage)}.json", _plain(record))
    write_sums(zoo_dir)
    return _plain(record)


def frontier_record(section: str, preset: str = ZOO_PRESET, zoo_dir: Path | None = None) -> dict | None:
    """The shipped frontier of ``section`` if it is current (its key is the one the code and ``preset`` compute
    now), checked against SHA256SUMS; None where none is shipped for these settings."""
    zoo_dir = Path(zoo_dir) if zoo_dir is not None else ZOO_DIR
    cfg = section_preset(section, preset)
    s = ZOO_SECTIONS[section]
    name = stem(frontier_stage(cfg, SimpleNamespace(task=s.task, paired=s.paired)))
    return read_record(name, zoo_dir) if (zoo_dir / f"{name}.json").exists() else None


def build(sections: list[str] | None = None, runs_dir: Path = BUILD_DIR, progress: bool = True,
          kinds: tuple[str, ...] = ZOO_STAGES) -> list[dict]:
    """Train every shipped stage of ``sections`` from nothing (resuming in ``runs_dir``) and export it: the compressed
    teacher (the first seed) with its weights, the other seeds' where the zoo has room (else their records alone:
    their scores measure the teacher's spread), and the supernet where the section ships one."""
    unknown = sorted(set(kinds) - set(ZOO_STAGES))
    if unknown:
        raise ValueError(f"the zoo ships the stages {list(ZOO_STAGES)}, not {unknown}")
    records = []
    for section in sections or list(ZOO_SECTIONS):
        if section not in ZOO_SECTIONS:
            raise ValueError(f"the zoo has the sections {list(ZOO_SECTIONS)}, not {section!r}")
        shipped = ZOO_SECTIONS[section].kinds
        if "teacher" in kinds and "teacher" in shipped:
            teachers = build_teachers(section, runs_dir=runs_dir, progress=progress)
            for i, trained in enumerate(teachers.values()):
                records.append(export(trained.artifact.path,
                                      ("G", "D") if i == 0 else networks_of_other_seeds(section)))
        if "supernet" in kinds and "supernet" in shipped:
            records.append(export(build_supernet(section, runs_dir=runs_dir, progress=progress).artifact.path,
                                  ("G", "D", "maps")))
        if "standalone" in kinds and "standalone" in shipped:
            records += [export(trained.artifact.path, ())
                        for trained in build_standalone(section, runs_dir=runs_dir, progress=progress)]
        if "frontier" in kinds and "frontier" in shipped:
            records.append(build_frontier(section, runs_dir=Path(runs_dir) / "frontier", progress=progress))
        if "student" in kinds and "student" in shipped:
            records += [export(trained.artifact.path, ("G",))
                        for trained in build_students(section, runs_dir=runs_dir, progress=progress)]
        if "comparison" in kinds and "comparison" in shipped:
            records += [export(trained.artifact.path, ("G",))
                        for trained in build_comparisons(section, runs_dir=runs_dir, progress=progress)]
        if "finetune" in kinds and "finetune" in shipped:
            records += [export(trained.artifact.path, ())
                        for trained in build_finetunes(section, runs_dir=runs_dir, progress=progress)]
    write_summary()
    return records


def summary(zoo_dir: Path | None = None) -> str:
    """``data/zoo/ZOO.md``: what the zoo ships, generated from its records (never edited by hand)."""
    zoo_dir = Path(zoo_dir) if zoo_dir is not None else ZOO_DIR
    sums = read_sums(zoo_dir)
    lines = ["# The model zoo", "",
             "Generated by `python -m gclib zoo export` from the records beside it. Held-out scores are of the kept "
             "weights (a supernet's: its largest sub-network), with their 95% bootstrap interval; the plateau rule: "
             "the best held-out FID of the last quarter of the evaluations is within half that interval of the best "
             "before it.", "",
             "FID floor: two real held-out samples; doing nothing: the inputs themselves scored as outputs (GauGAN's: "
             "the colour-coded label maps).", "",
             "| artifact | steps | training min | kept weights | held-out FID [95%] | floor | doing nothing | plateau "
             "| stored | MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    total, references, students, frontiers, tunings = 0, {}, {}, [], {}
    for record_path in sorted(zoo_dir.glob("*.json")):
        r = read_record(record_path.stem, zoo_dir, sums)
        files = [zoo_dir / f"{record_path.stem}.{ext}" for ext in ("safetensors", "json")]
        size = sum(f.stat().st_size for f in files if f.exists()) / 2 ** 20
        total += size
        if is_finetuning(r["stage"]):   # one row per task
            tunings.setdefault(r["stage"]["task"], []).append((r, size))
            continue
        if r["stage"]["kind"] == "subnet":       # one row per task below
            references.setdefault(r["stage"]["task"], []).append((r, size))
            continue
        if r["stage"]["kind"] == "student":      # one row per task below
            students.setdefault(r["stage"]["task"], []).append((r, size))
            continue
        if r["stage"]["kind"] == "frontier":     # one table below
            frontiers.append((record_path.stem, r, size))
            continue
        kept, h, rule = r.get("selected", {}), r["heldout_scores"], r["plateau"]
        kept_text = (f"{kept.get('of', 'average')}, step {kept['step']}" if kept.get("weights") == "best"
                     else kept.get("weights", "last"))
        plateau_text = {True: "stopped improving", False: "still improving", None: "no evaluations"}[rule["holds"]]
        eight = r.get("int8", {}).get("networks", [])
        stored = (f"{r['storage']}: {', '.join(n for n in r['networks'] if n not in eight)}"
                  + (f"; 8-bit: {', '.join(eight)}" if eight else "")) if r["networks"] else "record only"
        which = " (largest)" if r["stage"]["kind"] == "supernet" else ""
        nothing = f"{r['identity_scores']['fid']:.1f}" if "identity_scores" in r else "not measured"
        lines.append(f"| `{record_path.stem}`{which} | {r['history'][-1]['step'] + 1 if r['history'] else 0} | "
                     f"{sum(x['seconds'] for x in r['history']) / 60:.1f} | {kept_text} | {h['fid']:.2f} "
                     f"[{h['fid low']:.2f}, {h['fid high']:.2f}] | {h['fid floor']:.2f} | {nothing} | {plateau_text} "
                     f"| {stored} | {size:.1f} |")
    def spread(rows):
        fids = sorted(r["heldout_scores"]["fid"] for r, _ in rows)
        return [f"{fids[0]:.1f} to {fids[-1]:.1f}"]
    groups = [   # (records by task, what they are, the columns between the training minutes and MB, those cells)
        (references, "Stand-alone references (notebook 03's rank check), shipped as records (held-out scores, history) "
                     "without weights:", "sub-networks x seeds", ["held-out FID, best to worst"], spread),
        (students, "Notebook 02's students of the later seeds (the first seed trains live in the notebook), the "
                   "generator alone:", "variants x seeds", ["held-out FID per variant", "stored"],
         lambda rows: [", ".join(f"{r['stage']['settings']['variant']} {r['heldout_scores']['fid']:.1f}"
                                 for r, _ in rows), ", ".join(sorted({r["storage"] for r, _ in rows}))]),
        (tunings, "Notebook 04's fine-tunings of the later seeds at its main budget (the first seed trains live), "
                  "shipped as records (test and held-out scores, history) without weights:", "networks x seeds",
         ["test FID per network"],
         lambda rows: [", ".join(f"{r['stage']['settings']['config']} (seed {r['stage']['seed']}) "
                                 f"{r['test_scores']['offline']['fid']:.1f}" for r, _ in rows)]),
    ]
    for by_task, intro, count, columns, cells in groups:
        if not by_task:
            continue
        header = ["task", count, "steps each", "training min", *columns, "MB"]
        lines += ["", intro, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += [_group_line(task, rows, *cells(rows), digits=2 if by_task is tunings else 1)
                  for task, rows in sorted(by_task.items())]
    if frontiers:
        from .report import family_name, frontier_verdict
        lines += ["", "Frontiers (notebook 04's search and fine-tuning at every budget, every fine-tuning seed, scored "
                      "on the test split), records without weights. At teacher quality: the mean over fine-tuning "
                      "seeds no worse than the worse end of the teacher's band (its seeds' spread; one seed: its "
                      "interval) on every metric.", "",
                  "| family | task | budgets (x fewer MACs) | the paper's ratio | largest MAC reduction at teacher "
                  "quality | verdict | fine-tunings x steps | training min | MB |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, r, size in frontiers:
            family = family_name(r["stage"]["settings"]["family"], ZOO_SECTIONS[r["section"]].paired)
            verdict = frontier_verdict(r, family)
            ratios = sorted(r["teacher_macs"] / b for b in r["search"]["budgets"].values())
            reached = f"{verdict['reduction']:.1f}x" if verdict["reduction"] else "none"
            tuned = {row["config"]: row for row in r["rows"]}      # a network two budgets share is trained once
            lines.append(f"| {family} | {r['stage']['task']} | {', '.join(f'{x:.1f}' for x in ratios)} | "
                         f"{verdict['paper']}x | {reached} | {verdict['verdict']} | "
                         f"{sum(len(row['after']) for row in tuned.values())} x {r['fine-tuning steps']:g} | "
                         f"{sum(row['minutes'] for row in tuned.values()):.1f} | {size:.2f} |")
    lines += ["", f"{total:.1f} MB in all. Rebuild: `python -m gclib zoo build` (trains into `runs/zoo/`, then exports).",
              "", _rebuild_text(rebuild_hours(zoo_dir, sums)), ""]
    return "\n".join(lines)


def rebuild_hours(zoo_dir: Path | None = None, sums: dict | None = None) -> dict:
    """How long rebuilding what is shipped took, from the records: each trained network's training steps, and each
    frontier's build from its first step to its record (search and fine-tunings; notebook 04's shipped fine-tunings
    are its runs, counted there): ``{"sections": {section: hours}, "one core": hours, "two cores": hours}``, the
    last with one section per core, the best split of the sections."""
    import itertools
    zoo_dir = Path(zoo_dir) if zoo_dir is not None else ZOO_DIR
    sums = sums if sums is not None else read_sums(zoo_dir)
    minutes = dict.fromkeys(ZOO_SECTIONS, 0.0)
    for record_path in zoo_dir.glob("*.json"):
        r = read_record(record_path.stem, zoo_dir, sums)
        stage = r["stage"]
        if stage["kind"] == "frontier":
            minutes[r["section"]] += r["minutes"]
        elif not is_finetuning(stage):
            minutes[section_of(stage)] += sum(x["seconds"] for x in r["history"]) / 60
    hours = {n: m / 60 for n, m in minutes.items()}
    two_cores = min(max(sum(h for n, h in hours.items() if n in side), sum(h for n, h in hours.items() if n not in side))
                    for k in range(len(hours) + 1) for side in itertools.combinations(hours, k))
    return {"sections": hours, "one core": sum(hours.values()), "two cores": two_cores}


def _rebuild_text(hours: dict) -> str:
    per_section = ", ".join(f"{n} {h:.1f}" for n, h in hours["sections"].items())
    return (f"Training time of what is shipped, as its records give it: {hours['one core']:.1f} hours on one core "
            f"({per_section}); on 2 cores, one section per core, about {hours['two cores']:.1f} hours (held-out "
            f"evaluations during training and the exports add to it).")


def _group_line(task: str, rows: list, *cells: str, digits: int = 1) -> str:
    """One ZOO.md row for a group of records ``rows`` ([(record, MB)]): task, count, steps each, training minutes,
    ``cells``, MB."""
    steps = rows[0][0]["history"][-1]["step"] + 1
    minutes = sum(x["seconds"] for r, _ in rows for x in r["history"]) / 60
    return "| " + " | ".join([task, str(len(rows)), str(steps), f"{minutes:.1f}", *cells,
                              f"{sum(size for _, size in rows):.{digits}f}"]) + " |"


def write_summary(zoo_dir: Path | None = None) -> Path:
    from .artifacts import atomic_write_bytes
    zoo_dir = Path(zoo_dir) if zoo_dir is not None else ZOO_DIR
    atomic_write_bytes(zoo_dir / "ZOO.md", summary(zoo_dir).encode())
    return zoo_dir / "ZOO.md"


def export_built(runs_dir: Path = BUILD_DIR) -> list[dict]:
    """Export every finished artifact of ``runs_dir`` that the zoo ships (as :func:`build` would after training)."""
    records = []
    for name, stage in expected_stages().items():
        # notebook 04's fine-tunings are the frontier build's runs
        path = Path(runs_dir) / ("frontier" if is_finetuning(stage) else "") / f"{name}.pt"
        if stage.kind != "frontier" and path.exists():
            records.append(export(path, shipped_networks(stage)))
    write_summary()
    return records


def networks_of_other_seeds(section: str) -> tuple[str, ...]:
    """What the teachers of the other seeds ship: their records alone (held-out and test scores, history), which is
    all notebooks 01 and 04 read of them (the seed-to-seed spread); 64 MB do not hold a second copy of each teacher
    beside the four families' first ones."""
    return ()
