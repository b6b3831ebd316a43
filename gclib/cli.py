"""``python -m gclib``: run the notebooks, count MACs, benchmark latency, make or fetch data."""
from __future__ import annotations

import argparse
import os
import sys

from .presets import PRESETS


def _cmd_run(args) -> int:
    from .artifacts import ArtifactBusy
    from .runner import NotebookFailed, run
    try:
        run(args.preset, args.only.split(",") if args.only else None, args.out, args.timeout,
            tasks=args.tasks.split(",") if args.tasks else None, dataset_root=args.dataset_root,
            overrides=parse_settings(args.set), jobs=args.jobs, threads=args.threads)
    except (NotebookFailed, ArtifactBusy) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


TRAIN_STAGES = ("teacher", "student", "supernet", "finetune")
MAX_SIDE = 4096   # pixels: larger images would not fit a batch of one in memory on a course machine


def _at_least(flag: str, value, low: int, what: str = "") -> None:
    if value is not None and value < low:
        raise ValueError(f"{flag} must be at least {low}{what}, not {value}")


def _device(name: str):
    """``--device`` as a torch device (see :func:`gclib.session.torch_device`)."""
    from .session import torch_device
    return torch_device(name, "--device")


def _cmd_train(args) -> int:
    """One stage of the pipeline, trained (or loaded, if it is already in --out) from the command line: what a
    script or a cluster job runs. Each stage loads (or trains) the ones it starts from."""
    from pathlib import Path

    import torch

    from . import metrics, stages
    from .artifacts import ArtifactBusy
    from .data import EMBEDDED_TASKS, load_task
    from .families import get_family
    from .presets import notebook_preset
    from .recipes.distill import TeacherCache, VARIANTS
    _at_least("--seed", args.seed, 0)
    _at_least("--data-seed", args.data_seed, 0)
    cfg = notebook_preset(args.preset, args.task, args.dataset_root, parse_settings(args.set))
    # every flag is checked here, before any training (a bad one must not cost a teacher's training first)
    if args.stage == "student" and args.variant not in VARIANTS:
        raise ValueError(f"--variant must be one of {VARIANTS}, not {args.variant!r}")
    if args.stage == "finetune":
        if not args.config:
            raise ValueError("finetune needs --config, the sub-network to fine-tune (e.g. from notebook 04's "
                             "runs/<preset>/search_<task>.json)")
        paired = EMBEDDED_TASKS.get(args.task, "paired") == "paired" if not args.dataset_root else None
        family = get_family(cfg.family)
        spaces = [cfg.supernet.space(family, p) for p in ((paired,) if paired is not None else (True, False))]
        if not any(space.contains(args.config) for space in spaces):
            spaces[0].parse(args.config)     # raises, naming the entry and the widths it may take
    device = _device(args.device)
    rank, world_size = _start_distributed(device)
    if world_size > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
            torch.cuda.set_device(device)
        if rank == 0:
            print(f"{world_size} processes (torchrun): each step's batch of {cfg.data.batch_size} images is split "
                  f"{cfg.data.batch_size // max(1, world_size)} per process; the effective batch stays "
                  f"{cfg.data.batch_size}")
    out = Path(args.out or f"runs/{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    data_seed = args.seed if args.data_seed is None else args.data_seed
    data = get_family(cfg.family).task_data(load_task(args.task, cfg, data_seed), cfg)   # SPADE: label maps as A
    scorer = None
    if not args.no_eval:   # held-out scores every eval_every steps, as in the notebooks
        segmenter = metrics.load_segmenter(args.task) if args.task in EMBEDDED_TASKS and not cfg.data.dataset_root \
            else None
        scorer = metrics.split_scorer(data, "heldout", metrics.get_extractor("offline"), segmenter, resamples=0,
                                      style_dim=get_family(cfg.family).style_dim)
    try:
        teacher = stages.teacher(cfg, data, out, args.seed, device, scorer)
        done = teacher
        if args.stage != "teacher":
            cache = TeacherCache.for_split(get_family(cfg.family), teacher.net, data.train)
        if args.stage == "student":
            done = stages.student(cfg, data, teacher, args.variant, out, args.seed, device, scorer, cache)
        elif args.stage in ("supernet", "finetune"):
            done = stages.supernet(cfg, data, teacher, out, args.seed, device, scorer, cache)
            if args.stage == "finetune":
                done = stages.subnet(cfg, data, teacher, args.config, out, cfg.search.finetune_steps,
                                     start="supernet", supernet=done, seed=args.seed, device=device, cache=cache)
    except ArtifactBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if world_size > 1:
            import torch.distributed as dist
            dist.destroy_process_group()
    art = done.artifact
    if rank == 0:
        print(f"{args.stage} {'trained' if art.trained_now else 'loaded'}: {art.path} "
              f"({art.steps} steps, {art.training_minutes:.1f} min of training steps)")
    return 0


def _start_distributed(device) -> tuple[int, int]:
    """Under ``torchrun`` (WORLD_SIZE > 1 in the environment): join the process group, NCCL on GPUs, gloo on CPUs."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1
    import torch.distributed as dist
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def parse_settings(items: list[str] | None) -> dict:
    """``["teacher.steps=2000", "supernet.choices=[16,32]"]`` -> ``{"teacher.steps": 2000, ...}``: each value read
    as JSON when it is JSON (numbers, lists, true/false), Python's True/False/None as those, else kept as a string."""
    import json
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--set {item!r}: write FIELD=VALUE, e.g. --set teacher.steps=2000")
        if value.strip() in ("True", "False", "None"):     # the spelling of a notebook's parameters cell
            out[name.strip()] = {"True": True, "False": False, "None": None}[value.strip()]
            continue
        try:
            out[name.strip()] = json.loads(value)
        except ValueError:
            out[name.strip()] = value
    return out


def _cmd_macs(args) -> int:
    import inspect

    from .families import get_family
    from .metrics import count_macs, count_params
    family = get_family(args.family)
    size = _image_size(args.size)
    for flag, value, low in (("--ngf", args.ngf, 1), ("--blocks", args.blocks, 1), ("--classes", args.classes, 1),
                             ("--upsamplings", args.upsamplings, 0)):
        _at_least(flag, value, low)
    given = {"n_blocks": args.blocks, "label_nc": args.classes, "n_up": args.upsamplings}   # structure options
    accepted = inspect.signature(family.teacher).parameters
    arch = {k: v for k, v in given.items() if k in accepted and v is not None}
    where = ", ".join(f"{k} {v}" for k, v in arch.items())
    if args.model == "teacher":
        net, name = family.teacher(args.ngf, **arch), f"{family.name} teacher, ngf {args.ngf}"
    else:
        family.parse(args.model)  # a clear error before building anything
        net, name = family.student(args.model, **arch), f"{family.name} sub-network {args.model}"
    macs = count_macs(net, inputs=family.example_inputs(1, size, **net.arch))
    print(f"{name}{', ' + where if where else ''} at {size[0]}x{size[1]}: {macs / 1e9:.2f} G MACs, "
          f"{count_params(net) / 1e6:.3f} M params")
    return 0


def _image_size(text: str) -> tuple[int, int]:
    """'256' -> (256, 256); '256x512' -> (256, 512) (height x width)."""
    h, _, w = text.lower().partition("x")
    try:
        size = (int(h), int(w or h))
    except ValueError:
        raise ValueError(f"--size {text!r}: give pixels as HEIGHT or HEIGHTxWIDTH, e.g. 256 or 256x512") from None
    if min(size) < 8 or max(size) > MAX_SIDE or any(side % 4 for side in size):
        raise ValueError(f"--size {text!r}: each side must be a multiple of 4 from 8 to {MAX_SIDE} pixels (the "
                         f"generators halve an image twice and double it back: other sides come out a different size)")
    return size


def _cmd_data(args) -> int:
    from .data import download_dataset, load_embedded
    if args.action == "generate":
        for task in args.tasks.split(","):
            for split, n in (("train", args.n_train), ("heldout", args.n_heldout), ("test", args.n_test)):
                arrays = load_embedded(task, split, n, args.size, args.seed)
                print(f"{task} {split}: A {tuple(arrays['A'].shape)}, B {tuple(arrays['B'].shape)}")
    else:
        path = download_dataset(args.name, args.root, args.url, args.sha256)
        print(f"{args.name} ready in {path}")
    return 0


def _cmd_bench(args) -> int:
    import torch

    from .profiling import TECHNIQUES, bench, train_throughput
    _at_least("--batch", args.batch, 1)
    _at_least("--repeats", args.repeats, 1)
    _at_least("--threads", args.threads, 0)
    _image_size(str(args.size))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device).type
    if args.train:
        from .profiling import TRAIN_BENCH_TECHNIQUES
        techniques = args.techniques.split(",") if args.techniques else list(TRAIN_BENCH_TECHNIQUES)
        train_throughput(args.preset, techniques, repeats=args.repeats or 5, device=device, task=args.task or None)
        return 0
    compressed = args.compressed
    if compressed.endswith(".json"):  # notebook 04's search_<task>.json: its searched, exported sub-network
        import json
        from pathlib import Path
        if not Path(compressed).exists():
            raise ValueError(f"{compressed} not found; notebook 04 writes runs/<preset>/search_<task>.json")
        compressed = json.loads(Path(compressed).read_text())["config"]
        print(f"searched sub-network from {args.compressed}: {compressed}")
    techniques = args.techniques.split(",") if args.techniques else list(TECHNIQUES)
    bench(compressed, args.size, args.batch, device, techniques, args.repeats or 20)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .runner import CELL_TIMEOUT
    p = argparse.ArgumentParser(prog="python -m gclib", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="execute the notebooks through papermill")
    r.add_argument("--preset", default="laptop", choices=sorted(PRESETS))
    r.add_argument("--only", default="", help="comma-separated notebook numbers, e.g. 01,03")
    r.add_argument("--tasks", "--task", default="", help="comma-separated tasks for the per-task notebooks "
                                                         "(default: facades,stripes; with --dataset-root: its name)")
    r.add_argument("--dataset-root", default="", help="a real dataset folder (pix2pix or CycleGAN layout) for the "
                                                      "per-task notebooks; default: the embedded tasks")
    r.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="change a preset field for every notebook, e.g. --set teacher.steps=2000 (repeatable)")
    r.add_argument("--out", default=None, help="run folder (default runs/PRESET)")
    r.add_argument("--jobs", type=int, default=0, help="tasks run side by side, each task's notebooks in order "
                                                      "(default 0: one per CPU core, up to the number of tasks)")
    r.add_argument("--threads", type=int, default=0,
                   help="threads of each per-task notebook's kernel (default 0: the cores shared by the tasks side "
                        "by side). The same seed gives the same numbers on the same thread count: `make run` on 2 "
                        "cores trains each task on 1 thread, and `--only 01 --tasks facades --threads 1` repeats it")
    r.add_argument("--timeout", type=int, default=CELL_TIMEOUT,
                   help=f"seconds any one cell may run before the run fails (default {CELL_TIMEOUT // 3600} hours)")
    r.set_defaults(func=_cmd_run)

    t = sub.add_parser("train", help="train (or load) one stage: teacher, student, supernet or finetune")
    t.add_argument("stage", choices=TRAIN_STAGES)
    t.add_argument("--preset", default="laptop", choices=sorted(PRESETS))
    t.add_argument("--task", default="facades", help="an embedded task, or the name of the --dataset-root dataset")
    t.add_argument("--dataset-root", default="", help="a real dataset folder (pix2pix or CycleGAN layout)")
    t.add_argument("--out", default=None, help="runs folder (default runs/PRESET)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--data-seed", type=int, default=None,
                   help="which generated images (embedded tasks) to train on (default: --seed, as a notebook with "
                        "that seed); the zoo's second teacher is --seed 1 --data-seed 0")
    t.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="change a preset field")
    t.add_argument("--variant", default="features", help="student: alone, init, output or features (default)")
    t.add_argument("--config", default="", help="finetune: the sub-network, e.g. 16_16_24_16_32_64_16_24")
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.add_argument("--no-eval", action="store_true", help="skip the periodic held-out evaluation")
    t.set_defaults(func=_cmd_train)

    m = sub.add_parser("macs", help="MACs and parameters of the teacher or a sub-network config")
    m.add_argument("model", help="'teacher' or an 8-entry config such as 16_16_24_16_32_64_16_24")
    m.add_argument("--family", default="resnet", help="generator family: resnet (default) or spade")
    m.add_argument("--size", default="256", help="image size, HEIGHT or HEIGHTxWIDTH (e.g. 256x512)")
    m.add_argument("--ngf", type=int, default=64, help="the teacher's base width")
    m.add_argument("--blocks", type=int, default=None, help="resnet: residual blocks (default 9)")
    m.add_argument("--upsamplings", type=int, default=None,
                   help="spade: x2 upsamplings (default 6, the official cityscapes 'more'; 5 is 'normal')")
    m.add_argument("--classes", type=int, default=None,
                   help="spade: label-map channels (default 36: cityscapes' 35 classes + instance edges)")
    m.set_defaults(func=_cmd_macs)

    b = sub.add_parser("bench", help="teacher vs compressed generator: MAC reduction, latency speed-up, their ratio")
    b.add_argument("--compressed", default="32_32_32_32_32_32_32_32",
                   help="the compressed generator's 8-entry config (default: the mobile student of notebook 02), "
                        "or notebook 04's runs/<preset>/search_<task>.json for its searched sub-network")
    b.add_argument("--size", type=int, default=256)
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--device", default="auto", help="auto, cpu or cuda")
    b.add_argument("--techniques", default="",
                   help="comma-separated; inference (default): eager, channels_last, torchscript, compile, "
                        "onnxruntime; with --train (default): eager, channels_last, fused_adam, compile, bf16_native, "
                        "preset (the preset's speed_ups together, and teacher.speed_ups for teacher steps); also "
                        "bf16, cudnn_benchmark")
    b.add_argument("--repeats", type=int, default=None,
                   help="timed runs per measurement after warm-up (default 20; with --train 5 steps)")
    b.add_argument("--train", action="store_true",
                   help="training throughput instead: images/s of the teacher (pix2pix, CycleGAN), student "
                        "distillation and supernet steps at --preset's size and batch, eager and with each speed-up")
    b.add_argument("--preset", default="laptop", choices=sorted(PRESETS),
                   help="with --train: the preset whose image size, batch and widths are measured")
    b.add_argument("--task", default="", help="with --train: the preset's changes for this task (e.g. stripes)")
    b.add_argument("--threads", type=int, default=0, help="CPU threads (default: PyTorch's choice)")
    b.set_defaults(func=_cmd_bench)

    d = sub.add_parser("data", help="generate the embedded datasets or download a real one")
    dsub = d.add_subparsers(dest="action", required=True)
    g = dsub.add_parser("generate")
    g.add_argument("--tasks", default="facades,stripes")
    g.add_argument("--size", type=int, default=64)
    g.add_argument("--n-train", type=int, default=800)
    g.add_argument("--n-heldout", type=int, default=200)
    g.add_argument("--n-test", type=int, default=200)
    g.add_argument("--seed", type=int, default=0)
    dl = dsub.add_parser("download")
    dl.add_argument("name", help="edges2shoes, facades, cityscapes, maps or horse2zebra")
    dl.add_argument("--root", default=None, help="parent folder (default data/)")
    dl.add_argument("--url", default=None, help="a mirror of the official archive")
    dl.add_argument("--sha256", default=None, help="expected SHA-256 of the archive")
    d.set_defaults(func=_cmd_data)

    pb = sub.add_parser("publish", help="copy a complete laptop run's table into RESULTS.md and its figures into "
                                        "figures/ (refuses a partial or overridden run)")
    pb.add_argument("run_dir", nargs="?", default=None, help="the run's folder (default runs/laptop)")
    pb.set_defaults(func=_cmd_publish)

    z = sub.add_parser("zoo", help="build, export or verify the shipped trainings (data/zoo)")
    zsub = z.add_subparsers(dest="action", required=True)
    zb = zsub.add_parser("build", help="train every shipped stage from nothing in runs/zoo (resumable), then export")
    zb.add_argument("--sections", default="facades,stripes,gaugan",
                    help="which notebooks' trainings: facades, stripes (01-03), gaugan (06), munit (07)")
    zb.add_argument("--stages", default="teacher,supernet,standalone,student,comparison",
                    help="which shipped stages to build (teacher, supernet, standalone, frontier, student: notebook "
                         "02's students of the later seeds, comparison: notebook 03's other supernets, finetune: "
                         "notebook 04's fine-tunings of the later seeds, from the frontier's runs)")
    zsub.add_parser("export", help="export what runs/zoo holds finished (a build's last step, on its own)")
    zsub.add_parser("verify", help="check every shipped file: checksum, current key, loads, re-scores as recorded")
    z.set_defaults(func=_cmd_zoo)
    return p


def _cmd_publish(args) -> int:
    from .runner import publish
    publish(args.run_dir)
    return 0


def _shipped(record: dict) -> str:
    s = record["stage"]
    stored = record.get("storage", "scores")          # a frontier holds scores alone
    return (f"shipped {s['kind']} {s['task']} ({s['settings'].get('family', 'resnet')}) seed {s['seed']} "
            f"({stored}, {'networks ' + ', '.join(record['networks']) if record['networks'] else 'record only'})")


def _cmd_zoo(args) -> int:
    import torch

    from . import zoo
    if args.action == "build":
        sections, kinds = args.sections.split(","), tuple(args.stages.split(","))
        unknown = sorted(set(sections) - set(zoo.ZOO_SECTIONS)) + sorted(set(kinds) - set(zoo.ZOO_STAGES))
        if unknown:
            print(f"error: zoo build: unknown {', '.join(map(repr, unknown))}; --sections takes "
                  f"{','.join(zoo.ZOO_SECTIONS)}, --stages {','.join(zoo.ZOO_STAGES)}", file=sys.stderr)
            return 2
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        for record in zoo.build(sections, kinds=kinds):
            print(_shipped(record))
        return 0
    if args.action == "export":
        for record in zoo.export_built():
            print(_shipped(record))
        return 0
    try:
        checked = zoo.verify()
    except zoo.ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{len(checked)} shipped artifacts verified: {', '.join(checked)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as e:   # bad input, a missing or damaged dataset, a failed download: no traceback
        # a DatasetError is raised by gclib.data, so it is loaded by then; importing it up front would load PyTorch
        # into `gclib run`, which runs the notebooks in kernels of their own
        data = sys.modules.get(f"{__package__}.data.folders")
        if not (isinstance(e, ValueError) or (data is not None and isinstance(e, data.DatasetError))):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
