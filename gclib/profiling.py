"""Latency profiling (notebook 05): do MAC cuts become latency cuts?

MACs count arithmetic; latency also pays for memory traffic, kernel launches and how well each op maps onto the
hardware. A depthwise 3x3 conv does 9 MACs per input value it reads, a dense 3x3 conv from 256 channels 2304: the
separable blocks of the mobile student save far more MACs than time. This module measures that gap honestly:

- :func:`measure_latency`: warm-up, then many timed runs under ``torch.inference_mode``; the **median** and the
  inter-quartile range (not the mean: one slow run, a page fault or a frequency change, would move it); CUDA events
  with synchronisation on a GPU; the CPU thread count is reported because latency depends on it.
- :func:`profile_models`: a tidy table (one row per model, resolution and batch size) of MACs, parameters,
  latency, throughput and, on a GPU, peak memory.
- :func:`op_breakdown`: where the time goes, per kind of layer (dense conv, depthwise, pointwise, transposed conv,
  norm, ...), with ``torch.profiler``.
- :func:`accelerate`: the speed-up techniques notebook 05 tries (channels_last, TorchScript, ``torch.compile``,
  autocast, ONNX Runtime); each returns a callable measured by the same function.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time
import warnings
from typing import Callable

import torch
from torch import nn

from .progress import progress_bar

Runnable = Callable[[torch.Tensor], torch.Tensor]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(model: Runnable, batch: int = 1, resolution: int = 256, device: str | torch.device = "cpu",
                    warmup: int = 3, repeats: int = 20, min_seconds: float = 0.0, autocast: torch.dtype | None = None,
                    channels_last: bool = False, in_channels: int = 3) -> dict:
    """Latency of ``model`` on a random (batch, 3, resolution, resolution) input.

    Runs ``warmup`` untimed forward passes, then at least ``repeats`` timed ones (and, with ``min_seconds``, as many
    more as fit in that time). Returns ``{'median_ms', 'q25_ms', 'q75_ms', 'runs', 'throughput', 'peak_MB',
    'threads', 'device', 'times_ms'}``; ``throughput`` is images per second at the median, ``peak_MB`` the peak GPU
    memory allocated during the timed runs (NaN on CPU, where PyTorch keeps no such counter), ``times_ms`` every
    timed pass."""
    device = torch.device(device)
    if isinstance(model, nn.Module):
        model = model.to(device).eval()
    x = torch.randn(batch, in_channels, resolution, resolution, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    amp = (torch.autocast(device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext())
    times_ms: list[float] = []
    with torch.inference_mode(), amp:
        for _ in range(warmup):
            model(x)
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        while len(times_ms) < repeats or time.perf_counter() - started < min_seconds:
            if device.type == "cuda":  # events are timed on the GPU itself, not by the (asynchronous) host
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
                model(x)
                end.record()
                end.synchronize()
                times_ms.append(begin.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                model(x)
                times_ms.append((time.perf_counter() - t0) * 1000)
    t = torch.tensor(times_ms)
    median = float(t.median())
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return {"median_ms": median, "q25_ms": float(t.quantile(0.25)), "q75_ms": float(t.quantile(0.75)),
            "runs": len(times_ms), "throughput": batch * 1000.0 / median, "peak_MB": peak,
            "threads": torch.get_num_threads(), "device": _device_name(device), "times_ms": times_ms}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def profile_models(models: dict[str, nn.Module], resolutions: list[int], batch_sizes: list[int],
                   device: str | torch.device = "cpu", progress: bool = True, **timing) -> list[dict]:
    """One row per (model, resolution, batch size): MACs (batch 1), parameters, latency and throughput."""
    from .metrics import count_macs, count_params
    rows = []
    grid = [(name, r, b) for name in models for r in resolutions for b in batch_sizes]
    macs = {(name, r): count_macs(models[name], r) for name in models for r in resolutions}
    for name, r, b in progress_bar(grid, "profiling", disable=not progress):
        lat = measure_latency(models[name], b, r, device, **timing)
        rows.append({"model": name, "resolution": r, "batch": b, "GMACs": macs[name, r] / 1e9,
                     "Mparams": count_params(models[name]) / 1e6, **lat})
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Where the time goes
# ----------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (the profiler's C++ start/stop messages, which notebooks would show)."""
    import sys
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def layer_kind(module: nn.Module) -> str | None:
    """The kind of a leaf layer, as notebook 05's op breakdown groups them; None for containers."""
    if isinstance(module, nn.ConvTranspose2d):
        return "transposed conv"
    if isinstance(module, nn.Conv2d):
        if module.groups > 1 and module.groups == module.in_channels:
            return "depthwise conv"
        if module.kernel_size == (1, 1):
            return "pointwise conv (1x1)"
        return f"dense conv ({module.kernel_size[0]}x{module.kernel_size[1]})"
    if isinstance(module, (nn.InstanceNorm2d, nn.BatchNorm2d)):
        return "norm"
    if isinstance(module, (nn.ReLU, nn.Tanh)):
        return "activation"
    if isinstance(module, nn.ReflectionPad2d):
        return "padding"
    return None


def macs_by_kind(model: nn.Module, resolution: int = 256) -> dict[str, int]:
    """MACs of one batch-1 forward pass per kind of layer, with torchprofile's convention (notebook 01):
    every conv, transposed or not, costs ``out.numel() * C_in / groups * k_h * k_w``; other layers cost 0."""
    totals: dict[str, int] = {}

    def count(mod, inputs, output):
        kind = layer_kind(mod)
        k_h, k_w = mod.kernel_size
        totals[kind] = totals.get(kind, 0) + output.numel() * (mod.in_channels // mod.groups) * k_h * k_w
    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.inference_mode():
            model.eval()(torch.randn(1, 3, resolution, resolution, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return totals


def op_breakdown(model: nn.Module, batch: int = 1, resolution: int = 256, device: str | torch.device = "cpu",
                 repeats: int = 5) -> list[dict]:
    """Time per kind of layer (see :func:`layer_kind`) measured with ``torch.profiler``, over ``repeats`` passes.

    Each leaf layer's forward runs inside a ``record_function`` named after its kind, so the profiler's totals
    can be read per kind. Returns rows ``{'kind', 'ms', 'share', 'layers'}``, slowest first; ``ms`` per forward pass
    (self time on CPU, or the kernels' time on a GPU)."""
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile
    device = torch.device(device)
    model = model.to(device).eval()
    handles, counts, open_ranges = [], {}, []
    for m in model.modules():
        kind = layer_kind(m)
        if kind is None:
            continue
        counts[kind] = counts.get(kind, 0) + 1

        def enter(mod, inputs, kind=kind):
            rf = record_function(f"layer::{kind}")
            rf.__enter__()
            open_ranges.append(rf)

        def leave(mod, inputs, output):
            open_ranges.pop().__exit__(None, None, None)
        handles += [m.register_forward_pre_hook(enter), m.register_forward_hook(leave)]
    x = torch.randn(batch, 3, resolution, resolution, device=device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    try:
        with torch.inference_mode():
            model(x)                                            # warm-up
            _sync(device)
            with _quiet_stderr(), profile(activities=activities) as prof:
                for _ in range(repeats):
                    model(x)
                _sync(device)
    finally:
        for h in handles:
            h.remove()
    totals = {}
    for event in prof.key_averages():
        if event.key.startswith("layer::"):
            us = event.device_time_total if device.type == "cuda" else event.cpu_time_total
            totals[event.key[len("layer::"):]] = us / 1000 / repeats
    whole = sum(totals.values()) or 1.0
    rows = [{"kind": k, "ms": v, "share": v / whole, "layers": counts[k]} for k, v in totals.items()]
    return sorted(rows, key=lambda r: -r["ms"])


# ----------------------------------------------------------------------------------------------------------------
# Speed-ups
# ----------------------------------------------------------------------------------------------------------------
TECHNIQUES = ("eager", "channels_last", "torchscript", "compile", "onnxruntime")


def accelerate(model: nn.Module, technique: str, resolution: int = 256, batch: int = 1,
               device: str | torch.device = "cpu") -> Runnable:
    """``model`` prepared with one speed-up technique, as a callable on (batch, 3, resolution, resolution) inputs.

    - ``eager``: the module as is.
    - ``channels_last``: weights (and, in :func:`measure_latency`, inputs) in NHWC layout, which oneDNN and cuDNN
      prefer for convolutions.
    - ``torchscript``: ``torch.jit.trace`` then ``freeze`` (constant-folds weights, fuses some ops).
    - ``compile``: ``torch.compile`` (Inductor); the first calls compile, which the warm-up absorbs.
    - ``onnxruntime``: exported to ONNX and run by ONNX Runtime's CPU or CUDA provider (needs ``onnxruntime``).
    Raises ``ValueError`` naming the techniques for an unknown one, ``RuntimeError`` when one is unavailable."""
    device = torch.device(device)
    model = model.to(device).eval()
    with warnings.catch_warnings():  # TorchScript and the ONNX exporter warn that they are deprecated or lossy
        warnings.simplefilter("ignore")
        return _accelerate(model, technique, resolution, batch, device)


def _accelerate(model: nn.Module, technique: str, resolution: int, batch: int, device: torch.device) -> Runnable:
    if technique == "eager":
        return model
    if technique == "channels_last":
        return model.to(memory_format=torch.channels_last)
    example = torch.randn(batch, 3, resolution, resolution, device=device)
    if technique == "torchscript":
        with torch.inference_mode():
            return torch.jit.freeze(torch.jit.trace(model, example))
    if technique == "compile":
        return torch.compile(model)
    if technique == "onnxruntime":
        return _onnxruntime_runner(model, example, device)
    raise ValueError(f"unknown technique {technique!r}; choose one of {TECHNIQUES}")


def _onnxruntime_runner(model: nn.Module, example: torch.Tensor, device: torch.device) -> Runnable:
    import io
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise RuntimeError("onnxruntime is not installed: pip install onnxruntime") from e
    buffer = io.BytesIO()
    torch.onnx.export(model, (example,), buffer, input_names=["A"], output_names=["B"], dynamo=False)
    providers = ["CUDAExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(buffer.getvalue(), options, providers=providers)

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(["B"], {"A": x.detach().cpu().numpy()})[0])
    return run


# ----------------------------------------------------------------------------------------------------------------
# The benchmark: python -m gclib bench
# ----------------------------------------------------------------------------------------------------------------
def bench(compressed: str = "32_32_32_32_32_32_32_32", resolution: int = 256, batch: int = 1,
          device: str | torch.device = "cpu",
          techniques: tuple[str, ...] = ("eager", "channels_last", "torchscript", "compile", "onnxruntime"),
          repeats: int = 20, family: str = "resnet", log=print) -> list[dict]:
    """The paper's teacher vs a compressed generator of ``family``: MAC reduction, latency speed-up and their ratio.

    Latency does not depend on the weights' values, so both networks keep their initial weights. Every technique is
    timed on both; the speed-up is reported per technique and for the best technique of each network. Returns the
    rows printed."""
    from .families import get_family
    from .metrics import count_macs
    fam = get_family(family)
    unknown = [t for t in techniques if t not in TECHNIQUES]
    if unknown:
        raise ValueError(f"unknown techniques {unknown}; choose from {TECHNIQUES}")
    nets = {"teacher": fam.teacher(), f"compressed {compressed}": fam.student(compressed)}
    macs = {name: count_macs(net, resolution) for name, net in nets.items()}
    rows = []
    log(f"device: {_device_name(torch.device(device))}; input {batch}x3x{resolution}x{resolution}; "
        f"median of {repeats} runs after warm-up")
    for technique in techniques:
        for name, net in nets.items():
            try:
                runner = accelerate(net, technique, resolution, batch, device)
            except RuntimeError as e:  # e.g. onnxruntime missing: say so and go on
                log(f"  {technique:14s} {name}: skipped ({e})")
                continue
            lat = measure_latency(runner, batch, resolution, device, repeats=repeats,
                                  channels_last=technique == "channels_last")
            rows.append({"model": name, "technique": technique, "GMACs": macs[name] / 1e9, **lat})
            log(f"  {technique:14s} {name:36s} {macs[name] / 1e9:6.2f} GMACs  median {lat['median_ms']:8.2f} ms "
                f"(IQR {lat['q25_ms']:.2f}-{lat['q75_ms']:.2f})")
    teacher_name, student_name = list(nets)
    mac_reduction = macs[teacher_name] / macs[student_name]
    log(f"MAC reduction: {mac_reduction:.1f}x")
    by = {(r["model"], r["technique"]): r["median_ms"] for r in rows}
    for technique in techniques:
        if (teacher_name, technique) in by and (student_name, technique) in by:
            speedup = by[teacher_name, technique] / by[student_name, technique]
            log(f"  {technique:14s} speed-up {speedup:5.1f}x  = {speedup / mac_reduction:.2f} of the MAC reduction")
    best = {m: min((v, t) for (mm, t), v in by.items() if mm == m) for m in nets if any(k[0] == m for k in by)}
    if len(best) == 2:
        speedup = best[teacher_name][0] / best[student_name][0]
        log(f"best of each: teacher {best[teacher_name][0]:.2f} ms ({best[teacher_name][1]}), compressed "
            f"{best[student_name][0]:.2f} ms ({best[student_name][1]}): speed-up {speedup:.1f}x = "
            f"{speedup / mac_reduction:.2f} of the MAC reduction (goal on CPU: at least 0.5)")
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Training throughput: python -m gclib bench --train
# ----------------------------------------------------------------------------------------------------------------
TRAINED_STEPS = ("teacher pix2pix", "teacher cyclegan", "student distill", "supernet")
# what `python -m gclib bench --train` measures by default: eager PyTorch, each speed-up alone, the preset's together
TRAIN_BENCH_TECHNIQUES = ("eager", "channels_last", "fused_adam", "compile", "bf16_native", "preset")


def _training_step_trainers(preset, family, device: torch.device, folder: str) -> dict:
    """One freshly built trainer per kind of training step, as the notebooks build them, on random images."""
    from .recipes.distill import DistillTrainer, TeacherCache, build_mappings, distill_config
    from .recipes.once_for_all import SupernetTrainer, elastic_mappings
    from .recipes.teacher import discriminator, teacher_config, teacher_nets, trainer_for
    from .recipes.trainer import from_preset
    from .stages import student_discriminator
    arch = family.arch(preset)
    teacher = family.teacher(preset.teacher.ngf, **arch).to(device).eval()
    cache_images = torch.rand(2 * preset.data.batch_size, 3, preset.data.image_size, preset.data.image_size) * 2 - 1
    cache = TeacherCache(teacher, family.distill_points(teacher), cache_images, progress=False)
    student_cfg = distill_config(from_preset(preset, 100, 0), True, "features")
    space = preset.supernet.space(family, True)

    def distill(kind: str):
        if kind == "student":
            G, trainer, extra = family.student(family.uniform(preset.student.ngf), **arch), DistillTrainer, {}
            maps = build_mappings(family, G, teacher)
        else:
            G = family.supernet(max(max(c) for c in space.choices), **arch)
            trainer, extra, maps = SupernetTrainer, {"space": space}, elastic_mappings(family, G, teacher)
        D = student_discriminator(preset, True, discriminator(preset, True).state_dict())   # student.ndf wide
        return trainer({"G": G, "D": D, "maps": maps}, teacher, student_cfg,
                       f"{folder}/{kind}.pt", device, family=family, cache=cache, **extra)

    make = {
        "teacher pix2pix": lambda: trainer_for(True)(teacher_nets(family, preset, True),
                                                     teacher_config(preset, True, 0, 100), f"{folder}/a.pt", device),
        "teacher cyclegan": lambda: trainer_for(False)(teacher_nets(family, preset, False),
                                                       teacher_config(preset, False, 0, 100), f"{folder}/b.pt", device),
        "student distill": lambda: distill("student"),
        "supernet": lambda: distill("supernet"),
    }
    return make


def train_throughput(preset: str = "laptop", techniques: tuple[str, ...] = TRAIN_BENCH_TECHNIQUES,
                     steps: tuple[str, ...] = TRAINED_STEPS, repeats: int = 5, warmup: int = 2,
                     device: str | torch.device = "cpu", family: str = "resnet", log=print,
                     task: str | None = None) -> list[dict]:
    """Images per second of each kind of training step at ``preset``'s size and batch, eager and with each speed-up
    of :meth:`gclib.recipes.trainer.Trainer.speed_up`, and with the preset's own ``speed_ups`` together ("preset",
    with ``teacher.speed_ups`` added for the teacher steps; ``task``: the preset's changes for that task). A step is
    the whole update (forward, backward, both optimisers) on one batch; the distillation and supernet steps read
    the teacher from its cache as the notebooks do. Returns the rows printed (median seconds per step, images/s,
    time relative to eager)."""
    import tempfile

    from .families import get_family
    from .presets import get_preset
    from .recipes.trainer import TRAIN_TECHNIQUES, step_generator
    p, fam, device = get_preset(preset, task=task), get_family(family), torch.device(device)
    bad = [t for t in techniques if t not in TRAIN_TECHNIQUES + ("preset",)] + [s for s in steps
                                                                                 if s not in TRAINED_STEPS]
    if bad:
        raise ValueError(f"unknown {bad}; techniques: {TRAIN_TECHNIQUES} or 'preset' (the preset's speed_ups "
                         f"together); steps: {TRAINED_STEPS}")
    size, bs = p.data.image_size, p.data.batch_size
    log(f"device: {_device_name(device)}; preset {preset}: batch {bs} of "
        f"{size}x{size}; median of {repeats} steps after {warmup} warm-up steps")
    g = torch.Generator().manual_seed(0)
    batch = {"A": torch.rand(bs, 3, size, size, generator=g) * 2 - 1,
             "B": torch.rand(bs, 3, size, size, generator=g) * 2 - 1,
             "index": torch.arange(bs) % (2 * bs), "flip_a": torch.zeros(bs, dtype=torch.bool)}
    rows, eager = [], {}
    with tempfile.TemporaryDirectory() as folder:
        make = _training_step_trainers(p, fam, device, folder)
        for name in steps:
            for technique in techniques:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    own = p.teacher.speed_ups if name.startswith("teacher") else ()   # the teacher's own on top
                    chosen = {"eager": [], "preset": list(p.speed_ups + own)}.get(technique, [technique])
                    trainer = make[name]().speed_up(chosen)
                times = []
                for i in range(warmup + repeats):
                    t0 = time.perf_counter()
                    trainer.step_once(batch, step_generator(0, i))
                    _sync(device)
                    times.append(time.perf_counter() - t0)
                seconds = statistics.median(times[warmup:])
                eager.setdefault(name, seconds)
                row = {"step": name, "technique": technique, "seconds": seconds, "images_per_s": bs / seconds,
                       "vs_eager": seconds / eager[name], "first_s": times[0]}
                rows.append(row)
                log(f"  {name:17s} {technique:14s} {seconds * 1000:8.0f} ms/step  {bs / seconds:6.1f} images/s  "
                    f"{row['vs_eager']:.2f}x eager's time (first step {times[0]:.1f} s)")
    return rows
