"""Run the notebooks headless through papermill, then gather their results (``python -m gclib run``)."""
from __future__ import annotations

import time
from pathlib import Path

from .presets import PRESETS
from .report import publish_figures, update_readme, write_summary

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO / "notebooks"


class NotebookFailed(RuntimeError):
    """A notebook raised: the message names the notebook, the cell and the error."""


def list_notebooks(only: list[str] | None = None, folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) in order; ``only=['01', '03']`` keeps those numbers."""
    books = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = {o.strip().zfill(2) for o in only if o.strip()}
        known = {p.name[:2] for p in books}
        unknown = wanted - known
        if unknown:
            raise ValueError(f"no notebook numbered {sorted(unknown)}; there are {sorted(known)}")
        books = [p for p in books if p.name[:2] in wanted]
    return books


TASKS = ("facades", "stripes")  # the paired and the unpaired embedded task


def takes_task(path: Path) -> bool:
    """Whether a notebook's parameters cell has a ``task`` (it then runs once per task)."""
    import papermill as pm
    return "task" in pm.inspect_notebook(str(path))


def run_notebook(path: Path, out_dir: Path, parameters: dict, timeout: int, progress: bool = True) -> Path:
    """Execute one notebook into ``out_dir/notebooks/`` with a per-cell progress bar (named after its task, if any)."""
    import papermill as pm
    suffix = f"_{parameters['task']}" if "task" in parameters else ""
    out = out_dir / "notebooks" / f"{path.stem}{suffix}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(str(path), str(out), parameters=parameters, cwd=str(path.parent),
                            kernel_name="python3", execution_timeout=timeout, progress_bar=progress)
    except pm.PapermillExecutionError as e:
        raise NotebookFailed(f"{path.name} failed in cell {e.cell_index} (execution count {e.exec_count}): "
                             f"{e.ename}: {e.evalue}. The executed notebook with the traceback is {out}") from None
    except TimeoutError as e:
        raise NotebookFailed(f"{path.name}: a cell ran longer than {timeout} s ({e}). Partial output: {out}") from None
    return out


def _publish(out_dir: Path, preset: str, runtimes: dict, figures_dir, readme, log):
    """The summary of ``out_dir``; for ``laptop``, also figures/ and the README's results table."""
    summary_json, summary_md = write_summary(out_dir, preset, runtimes)
    copied = []
    if preset == "laptop":  # the README shows the laptop run: only it refreshes figures/ and the results table
        copied = publish_figures(out_dir, figures_dir or REPO / "figures")
        readme = Path(readme) if readme else REPO / "README.md"
        if readme.exists() and update_readme(readme, summary_md.read_text()):
            log(f"[gclib run] README results table refreshed from {summary_md}")
    return summary_json, summary_md, copied


def run(preset: str = "laptop", only: list[str] | None = None, out: str | Path | None = None,
        timeout: int = 3600, figures_dir: str | Path | None = None, readme: str | Path | None = None,
        tasks: list[str] | None = None, log=print, dataset_root: str = "", overrides: dict | None = None) -> dict:
    """Execute the notebooks in order with ``preset`` and ``runs_dir`` injected, the per-task ones once for each of
    ``tasks`` (default: both embedded tasks); then write the summary.

    Executed copies go to ``out/notebooks``, each notebook's results to ``out/results``, figures to
    ``out/figures``. A ``laptop`` run also copies the figures to ``figures/`` and refreshes the README's table.

    ``dataset_root``: a real dataset folder for the per-task notebooks (``tasks`` then defaults to its folder name);
    ``overrides``: preset fields for every notebook, ``{"teacher.steps": 2000}``. Both are checked before any
    notebook starts."""
    from .presets import notebook_preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    overrides = dict(overrides or {})
    if dataset_root:
        from .data import scan_dataset
        scan_dataset(dataset_root)
        tasks = tasks or [Path(dataset_root).resolve().name]
    for task in tasks or TASKS:      # a bad field, value or missing dataset stops the run here, not in notebook 01
        notebook_preset(preset, task, dataset_root, overrides)
    out_dir = Path(out) if out else REPO / "runs" / preset
    out_dir = out_dir.resolve()
    runtimes: dict[str, float] = {}
    for path in list_notebooks(only):
        for task in (tasks or TASKS) if takes_task(path) else [None]:
            parameters = {"preset": preset, "runs_dir": str(out_dir), "overrides": overrides,
                          **({"task": task, "dataset_root": str(dataset_root)} if task else {})}
            name = f"{path.stem}_{task}" if task else path.stem
            log(f"[gclib run] {name} (preset {preset}) ...")
            t0 = time.perf_counter()
            run_notebook(path, out_dir, parameters, timeout)
            runtimes[name] = time.perf_counter() - t0
            log(f"[gclib run] {name} done in {runtimes[name] / 60:.1f} min")
            # after every notebook, so a run stopped part-way still leaves its table (and README) up to date
            _publish(out_dir, preset, runtimes, figures_dir, readme, log)
    summary_json, summary_md, copied = _publish(out_dir, preset, runtimes, figures_dir, readme, log)
    log(f"[gclib run] summary: {summary_md}; {len(copied)} figures copied")
    return {"out": out_dir, "runtimes": runtimes, "summary": summary_json}
