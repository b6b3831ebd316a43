"""Run the notebooks headless through papermill, then gather their results (``python -m gclib run``)."""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .presets import PRESETS
from . import report
from .report import write_summary

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO / "notebooks"


class NotebookFailed(RuntimeError):
    """A notebook raised: the message names the notebook, the cell and the error."""


def list_notebooks(only: list[str] | None = None, folder: Path | None = None) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) of ``folder`` (default: the project's) in order; ``only=['01',
    '03']`` keeps those numbers."""
    books = sorted(p for p in (folder or NOTEBOOKS_DIR).glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = {o.strip().zfill(2) for o in only if o.strip()}
        known = {p.name[:2] for p in books}
        unknown = wanted - known
        if unknown:
            raise ValueError(f"no notebook numbered {sorted(unknown)}; there are {sorted(known)}")
        books = [p for p in books if p.name[:2] in wanted]
    return books


TASKS = ("facades", "stripes")  # the paired and the unpaired embedded task
# seconds one cell may run before the run fails: it catches a hung kernel, not a long training (notebook 03 trains
# ten stand-alone sub-networks in one cell, over an hour on one core for facades); a stopped training resumes
CELL_TIMEOUT = 6 * 3600


def takes_task(path: Path) -> bool:
    """Whether a notebook's parameters cell has a ``task`` (it then runs once per task)."""
    import papermill as pm
    return "task" in pm.inspect_notebook(str(path))


def _kernel_with_threads(threads: int):
    """A Jupyter kernel manager whose kernels start with OMP_NUM_THREADS=threads (PyTorch's default thread count)."""
    from jupyter_client.manager import AsyncKernelManager

    class ThreadedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            kw["env"] = {**kw.get("env", os.environ), "OMP_NUM_THREADS": str(threads)}
            return await super().start_kernel(**kw)
    return ThreadedKernelManager


def run_notebook(path: Path, out_dir: Path, parameters: dict, timeout: int, progress: bool = True,
                 threads: int | None = None) -> Path:
    """Execute one notebook into ``out_dir/notebooks/`` with a per-cell progress bar (named after its task, if any).
    ``threads``: the kernel's thread count (default: the environment's)."""
    import papermill as pm
    suffix = f"_{parameters['task']}" if "task" in parameters else ""
    out = out_dir / "notebooks" / f"{path.stem}{suffix}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    kernel = {"kernel_manager_class": _kernel_with_threads(threads)} if threads else {}
    try:
        pm.execute_notebook(str(path), str(out), parameters=parameters, cwd=str(path.parent),
                            kernel_name="python3", execution_timeout=timeout, progress_bar=progress, **kernel)
    except pm.PapermillExecutionError as e:
        raise NotebookFailed(f"{path.name} failed in cell {e.cell_index} (execution count {e.exec_count}): "
                             f"{e.ename}: {e.evalue}. The executed notebook with the traceback is {out}") from None
    except TimeoutError as e:
        raise NotebookFailed(f"{path.name}: a cell ran longer than {timeout} s ({e}). Partial output: {out}") from None
    return out


def expected_notebooks(tasks: tuple[str, ...] = TASKS) -> list[str]:
    """The runtime names of a complete run: every per-task notebook once per task, the others once."""
    return [f"{p.stem}_{t}" if takes_task(p) else p.stem for p in list_notebooks() for t in (tasks if takes_task(p)
                                                                                           else (None,))]


def publish(run_dir: str | Path | None = None, repo: str | Path = REPO, log=print) -> Path:
    """``python -m gclib publish``: a complete, un-overridden laptop run's table into RESULTS.md and its figures into
    figures/ (refused otherwise, saying why; see :func:`gclib.report.publishable`)."""
    run_dir = Path(run_dir) if run_dir else REPO / "runs" / "laptop"
    results, copied = report.publish(run_dir, expected_notebooks(), repo)
    log(f"[gclib publish] {results} refreshed from {run_dir / 'summary.md'}; {len(copied)} figures and executed "
        f"notebooks copied into figures/ and docs/notebooks/")
    return results


def _segments(books: list[Path]) -> list[tuple[bool, list[Path]]]:
    """Consecutive per-task notebooks grouped (True, [...]); the others alone (False, [book])."""
    out: list[tuple[bool, list[Path]]] = []
    for path in books:
        per_task = takes_task(path)
        if per_task and out and out[-1][0]:
            out[-1][1].append(path)
        else:
            out.append((per_task, [path]))
    return out


def _prepare_offline_extractor() -> None:
    """The offline feature network every task's notebooks share, trained (or found) once before the chains start,
    not by each chain at the same time; in a child process, so the runner does not hold its ~0.6 GB for the run."""
    import subprocess
    import sys
    subprocess.run([sys.executable, "-c", "from gclib.metrics.features import load_offline_extractor; "
                    "load_offline_extractor()"], check=True, cwd=REPO)


class MemoryPeak:
    """The largest resident memory of this process and all its children (the notebooks' kernels) together, sampled
    every ``every`` seconds on a background thread while the ``with`` block runs: what a machine must hold."""

    def __init__(self, every: float = 2.0):
        self.every, self.peak = every, 0
        self._stop = threading.Event()

    def sample(self) -> int:
        import psutil
        me = psutil.Process()
        total = 0
        for process in [me, *me.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):   # a kernel that ended between the two calls
                pass
        self.peak = max(self.peak, total)
        return total

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def __enter__(self) -> "MemoryPeak":
        self.sample()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def default_jobs(n_tasks: int) -> int:
    """One task chain per core, up to the number of tasks: two small-image trainings side by side on one thread each
    use two cores better than one training on two threads (its 8x8 to 32x32 convolutions do not split well)."""
    return max(1, min(n_tasks, os.cpu_count() or 1))


def run(preset: str = "laptop", only: list[str] | None = None, out: str | Path | None = None,
        timeout: int = CELL_TIMEOUT, tasks: list[str] | None = None, log=print, dataset_root: str = "", overrides: dict | None = None,
        jobs: int = 0, threads: int = 0) -> dict:
    """Execute the notebooks in order with ``preset`` and ``runs_dir`` injected, the per-task ones once for each of
    ``tasks`` (default: both embedded tasks); then write the summary.

    Executed copies go to ``out/notebooks``, each notebook's results to ``out/results``, figures to
    ``out/figures``; nothing outside ``out`` is written (``python -m gclib publish`` publishes a complete run).

    ``dataset_root``: a real dataset folder for the per-task notebooks (``tasks`` then defaults to its folder name);
    ``overrides``: preset fields for every notebook, ``{"teacher.steps": 2000}``. Both are checked before any
    notebook starts. ``jobs``: how many tasks run side by side (0: one per core, up to the number of tasks); each
    task's notebooks stay in order. The notebooks without a task (05) run alone, after the per-task ones before them.

    ``threads``: the thread count of every per-task kernel (0: ``cores // jobs``, or OMP_NUM_THREADS when set);
    task-free kernels get ``threads`` too when it is set, else every core. It is fixed for the whole run, never
    raised when a task finishes early: a training's numbers depend on its thread count (oneDNN splits its sums
    differently), so the same seed gives the same numbers only on the same thread count (``tests/test_train.py``)."""
    from .presets import notebook_preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if jobs < 0:
        raise ValueError(f"jobs must be 0 (one per core) or a positive number of tasks side by side, not {jobs}")
    if threads < 0:
        raise ValueError(f"threads must be 0 (the cores shared by the tasks side by side) or a positive number of "
                         f"threads per kernel, not {threads}")
    overrides = dict(overrides or {})
    if dataset_root:
        from .data import scan_dataset
        scan_dataset(dataset_root)
        tasks = tasks or [Path(dataset_root).resolve().name]
    tasks = list(tasks or TASKS)
    for task in tasks:      # a bad field, value or missing dataset stops the run here, not in notebook 01
        notebook_preset(preset, task, dataset_root, overrides)
    out_dir = Path(out) if out else REPO / "runs" / preset
    out_dir = out_dir.resolve()
    jobs = min(jobs or default_jobs(len(tasks)), len(tasks))
    runtimes: dict[str, float] = {}
    lock = threading.Lock()   # runtimes and the summary: one chain at a time
    how = {"overrides": overrides, "dataset_root": str(dataset_root)}
    cores = os.cpu_count() or 1
    env_threads = int(os.environ.get("OMP_NUM_THREADS") or 0)
    per_task_threads = threads or env_threads or max(1, cores // jobs)
    task_free_threads = threads or env_threads or cores

    def execute(path: Path, task: str | None) -> None:
        parameters = {"preset": preset, "runs_dir": str(out_dir), "overrides": overrides,
                      **({"task": task, "dataset_root": str(dataset_root)} if task else {})}
        name = f"{path.stem}_{task}" if task else path.stem
        log(f"[gclib run] {name} (preset {preset}) ...")
        t0 = time.perf_counter()
        run_notebook(path, out_dir, parameters, timeout, progress=jobs == 1,
                     threads=per_task_threads if task else task_free_threads)
        with lock:
            runtimes[name] = time.perf_counter() - t0
            log(f"[gclib run] {name} done in {runtimes[name] / 60:.1f} min")
            # after every notebook, so a run stopped part-way still leaves its table up to date (in out_dir only)
            write_summary(out_dir, preset, runtimes, how=how)

    def chain(task: str, books: list[Path]) -> None:
        try:
            for path in books:
                execute(path, task)
        except Exception as e:
            log(f"[gclib run] {task} stopped: {e}")   # now, not when the other tasks are done
            raise

    notebooks = list_notebooks(only)
    t_start = time.perf_counter()
    with MemoryPeak() as memory:
        _run_segments(notebooks, tasks, jobs, execute, chain)
    total = time.perf_counter() - t_start
    side_by_side = jobs if any(per_task for per_task, _ in _segments(notebooks)) else 1   # task-free: one at a time
    wall = {"minutes": round(total / 60, 1), "jobs": side_by_side, "cores": cores, "threads": per_task_threads,
            "notebooks": sorted({p.name[:2] for p in notebooks}), "peak_memory_gb": round(memory.peak / 1e9, 2)}
    summary_json, summary_md = write_summary(out_dir, preset, runtimes, wall, how)
    log(f"[gclib run] summary: {summary_md}; {total / 60:.1f} min in all"
        + (f" ({side_by_side} tasks side by side)" if side_by_side > 1 else "")
        + f", peak memory {memory.peak / 1e9:.2f} GB")
    return {"out": out_dir, "runtimes": runtimes, "summary": summary_json, "minutes": total / 60,
            "peak_memory_gb": memory.peak / 1e9}


def _run_segments(notebooks: list[Path], tasks: list[str], jobs: int, execute, chain) -> None:
    """The per-task notebooks one chain per task (``jobs`` side by side), each task-free notebook alone after them."""
    for per_task, books in _segments(notebooks):
        if not per_task:
            execute(books[0], None)
        elif jobs == 1:
            for task in tasks:
                for path in books:
                    execute(path, task)
        else:
            _prepare_offline_extractor()
            with ThreadPoolExecutor(jobs) as pool:
                futures = [pool.submit(chain, task, books) for task in tasks]
                errors = [f.exception() for f in futures]
            failed = [e for e in errors if e is not None]
            if failed:
                raise failed[0]
