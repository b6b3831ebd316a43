"""Results: each notebook records its headline numbers; the runner gathers them into one table.

A notebook calls ``record(runs_dir, "01_teacher_training", {...})`` and ``save_figure(fig, runs_dir, name)``.
The runner (``python -m gclib run``) then writes ``summary.json`` and ``summary.md`` in the run's folder, and
nothing else. ``python -m gclib publish`` (:func:`publish`) is the deliberate step that copies a complete,
un-overridden ``laptop`` run's figures into the repository's ``figures/``, its table into ``RESULTS.md`` and its
executed notebooks into ``docs/notebooks/``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .artifacts import atomic_write_bytes, atomic_write_json
from .presets import EMBEDDED_TASKS

FIGURE_DPI = 110
RESULTS_START, RESULTS_END = "<!-- results:start -->", "<!-- results:end -->"


def record(runs_dir: str | Path, notebook: str, numbers: dict) -> Path:
    """Write ``runs_dir/results/{notebook}.json``: plain numbers and strings, one level deep."""
    path = Path(runs_dir) / "results" / f"{notebook}.json"
    atomic_write_json(path, {"notebook": notebook, **numbers}, sort_keys=False)  # the notebook's order
    return path


def save_figure(fig, runs_dir: str | Path, name: str) -> Path:
    """Save a matplotlib figure as ``runs_dir/figures/{name}.png`` at a fixed dpi."""
    path = Path(runs_dir) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=FIGURE_DPI, bbox_inches="tight")
    return path


def collect(runs_dir: str | Path) -> list[dict]:
    folder = Path(runs_dir) / "results"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def split_task(name: str, tasks=EMBEDDED_TASKS) -> tuple[str, str]:
    """``"01_teacher_training_facades"`` -> ``("01_teacher_training", "facades")``; a task-free name -> ``(name, "")``."""
    for task in tasks:
        if name.endswith(f"_{task}"):
            return name[: -len(task) - 1], task
    return name, ""


def markdown_table(results: list[dict], runtimes: dict[str, float] | None = None, tasks=EMBEDDED_TASKS) -> str:
    """The per-task notebooks side by side (one column per task, one row per figure), then the task-free notebooks
    (one row per figure). Each notebook's last runtime closes its rows."""
    cells: dict[tuple[str, str], dict[str, str]] = {}        # (notebook, figure) -> {task: value}; insertion order
    for res in results:
        base, task = split_task(res["notebook"], tasks)
        for key, value in res.items():
            if key != "notebook":
                cells.setdefault((base, key), {})[task] = _fmt(value)
    for name, seconds in (runtimes or {}).items():
        base, task = split_task(name, tasks)
        cells.setdefault((base, "runtime (min)"), {})[task] = f"{seconds / 60:.1f}"
    return render_cells(cells, tasks)


HEADLINE = ("frontier family", "frontier task", "paper's ratio (x)", "largest MAC reduction at teacher quality",
            "frontier verdict")


def headline_table(cells: dict[tuple[str, str], dict[str, str]]) -> str:
    """The paper's result per family, one row each, from the numbers of the notebooks that draw a frontier (04 per
    task, 06, 07) as :func:`parse_cells` reads them: the paper's ratio beside the largest MAC reduction at teacher
    quality. Empty when no notebook recorded one."""
    rows = []
    for notebook in dict.fromkeys(nb for nb, _ in cells):
        columns = {figure: cells.get((notebook, figure), {}) for figure in HEADLINE}
        for task in columns[HEADLINE[0]]:
            if all(task in c for c in columns.values()):
                rows.append([columns[f][task] for f in HEADLINE])
    if not rows:
        return ""
    lines = ["| family | task | the paper's ratio (x) | largest MAC reduction at teacher quality | verdict |",
             "|---|---|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n\n"


def render_cells(cells: dict[tuple[str, str], dict[str, str]], tasks=EMBEDDED_TASKS) -> str:
    """``{(notebook, figure): {task: text}}`` (task ``""`` for a task-free notebook) as the tables of
    :func:`markdown_table`; :func:`parse_cells` reads them back."""
    # keep each notebook's rows together (records first, runtime last), notebooks in name order
    order = sorted(cells, key=lambda k: (k[0], k[1] == "runtime (min)"))
    per_task = [k for k in order if "" not in cells[k]]
    task_free = [k for k in order if "" in cells[k]]
    tasks = [t for t in tasks if any(t in cells[k] for k in per_task)]   # a column per task that has numbers
    lines = []
    if per_task:
        lines += ["| notebook | figure | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
        lines += [f"| {nb} | {key} | " + " | ".join(cells[(nb, key)].get(t, "") for t in tasks) + " |"
                  for nb, key in per_task]
    if task_free:
        lines += ([""] if lines else []) + ["| notebook | figure | value |", "|---|---|---|"]
        lines += [f"| {nb} | {key} | {cells[(nb, key)]['']} |" for nb, key in task_free]
    return "\n".join(lines) + "\n"


def parse_cells(markdown: str) -> dict[tuple[str, str], dict[str, str]]:
    """The cells of the tables :func:`render_cells` wrote (other lines are ignored; empty cells are absent)."""
    cells: dict[tuple[str, str], dict[str, str]] = {}
    columns: list[str] = []
    for line in markdown.splitlines():
        if not line.startswith("|") or line.startswith("|---"):
            continue
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if parts[:2] == ["notebook", "figure"]:
            columns = ["" if p == "value" else p for p in parts[2:]]
            continue
        for task, text in zip(columns, parts[2:]):
            if text:
                cells.setdefault((parts[0], parts[1]), {})[task] = text
    return cells


def merge_cells(old: dict, new: dict) -> dict:
    """``new``, plus the cells of ``old`` for every (notebook, task) that ``new`` has no figure of: a run of some
    notebooks or tasks replaces their rows and keeps everyone else's."""
    present = {(nb, task) for (nb, _), row in new.items() for task in row}
    kept = {key: {task: text for task, text in row.items() if (key[0], task) not in present} for key, row in old.items()}
    # rows in the old order, a row only the new cells have after the row before it in ``new``
    order = [key for key in old if kept[key] or key in new]
    for i, key in enumerate(new):
        if key not in order:
            order.insert(order.index(list(new)[i - 1]) + 1 if i else 0, key)
    return {key: {**kept.get(key, {}), **new.get(key, {})} for key in order}


def write_summary(runs_dir: str | Path, preset: str, runtimes: dict[str, float], wall: dict | None = None,
                  how: dict | None = None) -> tuple[Path, Path]:
    """Gather every notebook's record into ``summary.{json,md}``. Runtimes of notebooks not run this time (``--only``)
    are kept from the previous summary, so the table always shows each notebook's last measured runtime.

    ``wall``: how long the whole ``gclib run`` took, ``{"minutes", "jobs", "cores", "notebooks"}`` (kept from the
    previous summary when not given, as the runtimes are).

    ``how``: how this run was asked for (``{"overrides", "dataset_root"}``); every run into the folder is listed
    under ``runs``, so :func:`publish` can refuse a folder any overridden run wrote into."""
    runs_dir = Path(runs_dir)
    results = collect(runs_dir)
    previous = runs_dir / "summary.json"
    runs = []
    if previous.exists():
        before = json.loads(previous.read_text())
        runtimes = {**before.get("runtimes_s", {}), **runtimes}
        wall = wall or before.get("wall")
        runs = before.get("runs", [])
    if how is not None and how not in runs:
        runs = runs + [how]
    summary = {"preset": preset, "runtimes_s": runtimes, "results": results, "runs": runs,
               **({"wall": wall} if wall else {})}
    atomic_write_json(runs_dir / "summary.json", summary)
    md = f"Preset `{preset}`, generated by `python -m gclib run`"
    if wall:
        books = wall["notebooks"]
        where = (f"{wall['jobs']} tasks side by side on {wall['cores']} cores" if wall["jobs"] > 1
                 else f"on {wall['cores']} cores")
        md += (f"; the last run of notebook{'s' if len(books) > 1 else ''} {', '.join(books)} took "
               f"{wall['minutes']:.0f} minutes ({where})")
        if "peak_memory_gb" in wall:
            md += f", its peak memory {wall['peak_memory_gb']:.2f} GB (the runner and its kernels)"
        timed = {name: sec for name, sec in runtimes.items() if name[:2] in books}
        if len(timed) > 1:   # the lab path's figure: every notebook within its time
            name = max(timed, key=timed.get)
            md += f"; the longest notebook {name}, {timed[name] / 60:.1f} minutes"
    table = markdown_table(results, runtimes)
    md += ".\n\n" + headline_table(parse_cells(table)) + table
    atomic_write_bytes(runs_dir / "summary.md", md.encode())
    return runs_dir / "summary.json", runs_dir / "summary.md"


def publish_figures(runs_dir: str | Path, figures_dir: str | Path) -> list[Path]:
    """Copy the run's PNG figures into the repository's ``figures/`` folder."""
    src = Path(runs_dir) / "figures"
    out = []
    if src.is_dir():
        Path(figures_dir).mkdir(parents=True, exist_ok=True)
        for png in sorted(src.glob("*.png")):
            out.append(Path(shutil.copy2(png, Path(figures_dir) / png.name)))
    return out


def publishable(run_dir: str | Path, expected: list[str]) -> dict:
    """The summary of ``run_dir`` if it may be published: a ``laptop`` run, no overridden or real-data run ever wrote
    into the folder, and every notebook of ``expected`` (``01_teacher_training_facades``, ...) has its runtime (ran
    to its end). Else a ValueError that says which and what to run."""
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        raise ValueError(f"{run_dir} holds no summary.json: publish the folder of a finished `python -m gclib run`")
    summary = json.loads(path.read_text())
    if summary.get("preset") != "laptop":
        raise ValueError(f"{run_dir} is a {summary.get('preset')!r} run; only complete laptop runs are published")
    changed = [r for r in summary.get("runs", []) if r.get("overrides") or r.get("dataset_root")]
    if changed:
        raise ValueError(f"{run_dir} was written by a run with changed settings ({changed[0]}): its figures are not "
                         f"the preset's. Publish a folder that only `make run` (no --set, no --dataset-root) wrote")
    missing = [name for name in expected if name not in summary.get("runtimes_s", {})]
    if missing:
        raise ValueError(f"{run_dir} is a partial run: {', '.join(missing)} did not run to the end in it. Run them "
                         f"(`python -m gclib run --preset laptop --out {run_dir}`, finished notebooks load their "
                         f"artifacts) and publish again")
    return summary


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"   # a live widget: nothing to see without its kernel


def readable_notebook(nb: dict) -> dict:
    """An executed notebook as a reader on the web sees it: every output that shows something (text, tables,
    images), without what only a live kernel can show (widget views and state) or what only churns (progress bars
    and warnings on stderr, papermill's timings)."""
    nb = json.loads(json.dumps(nb))
    nb.get("metadata", {}).pop("widgets", None)
    for timing in ("start_time", "end_time", "duration"):
        nb.get("metadata", {}).get("papermill", {}).pop(timing, None)
    for cell in nb.get("cells", []):
        cell.get("metadata", {}).pop("execution", None)
        cell.get("metadata", {}).pop("papermill", None)
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                continue
            data = out.get("data")
            if data is not None:
                data.pop(WIDGET_VIEW, None)
                if not data:
                    continue
            kept.append(out)
        if "outputs" in cell:
            cell["outputs"] = kept
    return nb


def publish_notebooks(run_dir: str | Path, dest: str | Path) -> list[Path]:
    """The run's executed notebooks (``run_dir/notebooks``), made readable (:func:`readable_notebook`), into
    ``dest``: the notebooks with the outputs of the last published run, for a reader who does not run them."""
    out = []
    for path in sorted((Path(run_dir) / "notebooks").glob("*.ipynb")):
        target = Path(dest) / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(readable_notebook(json.loads(path.read_text())), indent=1, ensure_ascii=False) + "\n"
        atomic_write_bytes(target, text.encode())
        out.append(target)
    return out


def publish(run_dir: str | Path, expected: list[str], repo: str | Path) -> tuple[Path, list[Path]]:
    """Publish a complete ``laptop`` run (see :func:`publishable`): its table into ``repo/RESULTS.md``, its figures
    into ``repo/figures/`` and its executed notebooks into ``repo/docs/notebooks/``. Returns the results file and
    the copied files."""
    publishable(run_dir, expected)
    results = Path(repo) / "RESULTS.md"
    update_results(results, (Path(run_dir) / "summary.md").read_text())
    if (Path(repo) / "README.md").exists():
        update_readme(Path(repo) / "README.md", results.read_text())
    return results, publish_figures(run_dir, Path(repo) / "figures") + publish_notebooks(run_dir, Path(repo) / "docs"
                                                                                          / "notebooks")


def update_results(results: str | Path, summary_md: str) -> bool:
    """Replace the text between the results markers of ``results`` (RESULTS.md) with ``summary_md``, keeping its rows
    of every notebook and task the summary has no numbers of. Returns whether the file changed."""
    results = Path(results)
    text = results.read_text()
    if RESULTS_START not in text or RESULTS_END not in text:
        raise ValueError(f"{results} has no {RESULTS_START} ... {RESULTS_END} markers to write the table between")
    head, rest = text.split(RESULTS_START, 1)
    old_block, tail = rest.split(RESULTS_END, 1)
    intro, table_start, _ = summary_md.partition("| notebook |")
    intro = intro.partition("| family |")[0]           # the headline is rebuilt from the merged numbers
    cells = merge_cells(parse_cells(old_block), parse_cells(summary_md))
    merged = headline_table(cells) + render_cells(cells, tasks=_tasks_in(old_block + summary_md))
    new = f"{head}{RESULTS_START}\n{intro if table_start else summary_md.rstrip() + chr(10) * 2}{merged}{RESULTS_END}{tail}"
    if new != text:
        atomic_write_bytes(results, new.encode())
    return new != text


README_START, README_END = "<!-- run:start -->", "<!-- run:end -->"


def update_readme(readme: str | Path, results_md: str) -> bool:
    """The README's results header, between its run markers: the published run's first line (its wall-clock time and
    peak memory) and the headline table, both as RESULTS.md (generated from the same run) has them."""
    readme = Path(readme)
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_START} ... {README_END} markers to write the run's header between")
    block = results_md.split(RESULTS_START, 1)[1].split(RESULTS_END, 1)[0]
    first_line = block.strip().splitlines()[0] if block.strip() else ""
    headline = headline_table(parse_cells(block))
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    new = f"{head}{README_START}\n{first_line}\n\n{headline}{README_END}{tail}"
    if new != text:
        atomic_write_bytes(readme, new.encode())
    return new != text


METRIC_NAMES = {"fid": "FID", "kid": "KID x1000", "l1": "L1 (grey levels)", "psnr": "PSNR (dB)",
                "perceptual": "perceptual", "mIoU": "mIoU", "diversity": "diversity"}


def score_table(rows: dict[str, dict], names: dict[str, str] | None = None, digits: int = 3):
    """A pandas table of scores with their 95% intervals, one row per model: ``'1.23 [1.10, 1.40]'``.

    ``rows``: model -> the flat dict a :class:`gclib.metrics.GeneratorScorer` returns (``fid``, ``fid low``, ...);
    metrics a row lacks are left empty."""
    import pandas as pd
    names = names or METRIC_NAMES
    table = {}
    for model, scores in rows.items():
        cells = {}
        for key, label in names.items():
            if key in scores:
                v = scores[key]
                lo, hi = scores.get(f"{key} low"), scores.get(f"{key} high")
                cells[label] = (f"{v:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]" if lo is not None and lo != hi
                                else f"{v:.{digits}g}")
        table[model] = cells
    return pd.DataFrame.from_dict(table, orient="index").fillna("")


def _tasks_in(markdown: str) -> list[str]:
    """The task columns of the tables in ``markdown``, in the order they first appear (the embedded tasks first)."""
    tasks = list(EMBEDDED_TASKS)
    for line in markdown.splitlines():
        if line.startswith("| notebook | figure |"):
            tasks += [t for t in (p.strip() for p in line.strip().strip("|").split("|")[2:])
                      if t and t != "value" and t not in tasks]
    return tasks


LOWER_IS_BETTER = {"fid": True, "kid": True, "l1": True, "perceptual": True, "psnr": False, "mIoU": False,
                   "diversity": False}


def seed_spread(values) -> float:
    """The seed-to-seed spread of one score: the largest minus the smallest value over seeds (0 for one seed)."""
    values = list(values)
    return max(values) - min(values)


def compare_seeds(a, b, metric: str) -> dict:
    """Per-seed scores ``a`` and ``b`` of two models on ``metric``: their means, the gap (positive: ``a`` is better),
    the larger of the two seed spreads, and the verdict: ``a`` better / worse *beyond* that spread, or not told
    apart ("within"). With one seed per model there is no spread to read a gap against: the verdict says so."""
    a, b = list(a), list(b)
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    gap = (mean_b - mean_a) if LOWER_IS_BETTER[metric] else (mean_a - mean_b)
    noise = max(seed_spread(a), seed_spread(b))
    if min(len(a), len(b)) < 2:
        verdict = "one seed, no spread"
    else:
        verdict = "within" if abs(gap) <= noise else ("better" if gap > 0 else "worse")
    return {"mean a": mean_a, "mean b": mean_b, "gap": gap, "spread": noise, "verdict": verdict}


def within_teacher_spread(student, teachers, metric: str) -> bool:
    """``student``'s mean score is at teacher quality on ``metric``: no worse than the worse of the teachers (trained
    alike, differing only in seed), i.e. inside or beyond the teachers' own seed-to-seed spread."""
    mean = sum(student) / len(student)
    return mean <= max(teachers) if LOWER_IS_BETTER[metric] else mean >= min(teachers)


# The paper's MAC reduction at teacher quality per family (GAN Compression, CVPR 2020; MUNIT from Fast GAN
# Compression): pix2pix edges2shoes 11.8x, CycleGAN horse2zebra 21.3x, GauGAN cityscapes 9.0x, MUNIT edges2shoes 29.4x
PAPER_RATIOS = {"pix2pix": 11.8, "CycleGAN": 21.3, "GauGAN": 9.0, "MUNIT": 29.4}


def family_name(family: str, paired: bool) -> str:
    """The paper's name of a generator family on a task: ResNet generators are pix2pix (paired) or CycleGAN."""
    return {"spade": "GauGAN", "munit": "MUNIT"}.get(family, "pix2pix" if paired else "CycleGAN")


def frontier_metrics(record: dict) -> list[str]:
    """The metrics a frontier is judged on: every score the family's test scorer gives (FID, KID, mIoU; paired tasks'
    distances to the target; MUNIT's diversity), in LOWER_IS_BETTER's order."""
    first = next(iter(record["rows"][0]["after"].values()))
    return [m for m in LOWER_IS_BETTER if m in first]


def frontier_table(record: dict):
    """One row per (budget, role) of a frontier record: MACs and reduction, the test scores after fine-tuning (mean
    over seeds, and the seed spread), before fine-tuning (shared weights), and whether every metric is at teacher
    quality (inside the teacher's band, :func:`gclib.pipeline.teacher_band`)."""
    import pandas as pd

    from .pipeline import at_teacher_quality
    metrics = frontier_metrics(record)
    teachers = list(record["teacher_test"].values())
    rows = []
    for r in record["rows"]:
        row = {"budget": r["budget"], "role": r["role"], "config": r["config"],
               "x fewer MACs": record["teacher_macs"] / r["macs"]}
        for m in metrics:
            values = [s[m] for s in r["after"].values()]
            row[m] = sum(values) / len(values)
            row[f"{m} spread"] = seed_spread(values)
            row[f"{m} before"] = r["before"][m]
        quality = at_teacher_quality(r, teachers, metrics)
        row["at teacher quality on"] = ", ".join(m for m in metrics if quality[m]) or "none"
        row["at teacher quality"] = all(quality.values())
        rows.append(row)
    return pd.DataFrame(rows)


def frontier_verdict(record: dict, family: str) -> dict:
    """The frontier's headline for ``family`` (a key of PAPER_RATIOS): the largest MAC reduction of a searched
    sub-network at teacher quality on every metric, against the paper's ratio: ``held`` (at least the paper's),
    ``partly`` (some budget at teacher quality, below the paper's ratio), ``not`` (none); and in words."""
    from .pipeline import largest_reduction
    metrics = frontier_metrics(record)
    best = largest_reduction(record["rows"], list(record["teacher_test"].values()), record["teacher_macs"], metrics)
    paper = PAPER_RATIOS[family]
    ratios = sorted(record["teacher_macs"] / b for b in record["search"]["budgets"].values())
    if best is None:
        verdict, text = "not", (f"no searched sub-network is at teacher quality on every metric at any of the "
                                f"budgets tested ({', '.join(f'{x:.1f}x' for x in ratios)}); the paper's "
                                f"{family}: {paper}x")
    else:
        verdict = "held" if best["reduction"] >= paper else "partly"
        text = (f"the largest MAC reduction at teacher quality on every metric ({', '.join(metrics)}) is "
                f"{best['reduction']:.1f}x ({best['config']}, the {best['budget']} budget), "
                f"{'at least' if verdict == 'held' else 'below'} the paper's {paper}x for {family} "
                f"(budgets tested: {', '.join(f'{x:.1f}x' for x in ratios)})")
    return {"verdict": verdict, "reduction": None if best is None else best["reduction"], "paper": paper,
            "text": text, "metrics": metrics}


def frontier_headline(record: dict, family: str) -> tuple[dict, str, dict]:
    """What a notebook prints and records of a shipped frontier: (the verdict of :func:`frontier_verdict`, one
    sentence saying what was measured and what it shows, the numbers of the headline row of the results)."""
    verdict = frontier_verdict(record, family)
    text = (f"{family} on {record['stage']['task']}, the zoo's {record['preset']} frontier (test split, "
            f"{len(record['seeds'])} fine-tuning seeds of {record['fine-tuning steps']:g} steps, offline features): "
            f"{verdict['verdict'].upper()}: {verdict['text']}.")
    fields = {"frontier family": family, "frontier task": record["stage"]["task"], "paper's ratio (x)": verdict["paper"],
              "largest MAC reduction at teacher quality":
                  f"{verdict['reduction']:.1f}x" if verdict["reduction"] else "none",
              "frontier verdict": verdict["verdict"]}
    return verdict, text, fields
