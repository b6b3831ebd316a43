"""Figures shared by the notebooks: image grids, training curves, rank and latency plots, the frontier."""
from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch


def _as_hwc(images: torch.Tensor) -> np.ndarray:
    """uint8 (N, 3, H, W) or float in [-1, 1] -> uint8 (N, H, W, 3)."""
    if images.dtype != torch.uint8:
        images = ((images.detach().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return images.cpu().permute(0, 2, 3, 1).numpy()


def image_grid(rows: dict[str, torch.Tensor], n: int = 8, scale: float = 1.3, title: str | None = None):
    """One row per entry of ``rows`` (label -> images (N, 3, H, W)), ``n`` columns."""
    fig, axes = plt.subplots(len(rows), n, figsize=(n * scale, len(rows) * scale), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        hwc = _as_hwc(images[:n])
        for c in range(n):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(hwc):
                ax.imshow(hwc[c], interpolation="nearest")
        axes[r, 0].text(-0.08, 0.5, label, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.04, hspace=0.04)
    return fig


def training_curves(history: list[dict], evals: list[dict], extractor: str, smooth: int = 20,
                    selected: dict | None = None, metric: str = "fid"):
    """Left: each loss term over steps (moving average). Right: the held-out ``metric`` over steps, of the weight
    average (what is evaluated and kept) and of the raw weights when an average is kept; ``selected`` (an artifact's
    ``selected`` record) marks the step whose weights were kept, and the last quarter (the plateau rule's) is shaded."""
    fig, (ax_loss, ax_q) = plt.subplots(1, 2, figsize=(11, 3.4))
    steps = np.array([h["step"] for h in history])
    for key in [k for k in history[0] if k not in ("step", "seconds")] if history else []:
        v = np.array([h[key] for h in history], dtype=float)
        k = max(1, min(smooth, len(v)))
        ax_loss.plot(steps[k - 1:], np.convolve(v, np.ones(k) / k, mode="valid"), label=key)
    ax_loss.set(xlabel="step", ylabel="loss", title=f"training losses (moving average of {smooth})")
    ax_loss.legend(fontsize=8)
    evals = [e for e in evals if metric in e]
    if evals:
        es = [e["step"] for e in evals]
        averaged = f"raw_{metric}" in evals[0]
        ax_q.plot(es, [e[metric] for e in evals], "o-", color="C0",
                  label=f"{metric.upper()}, weight average" if averaged else metric.upper())
        if averaged:
            ax_q.plot(es, [e[f"raw_{metric}"] for e in evals], "x--", color="C7", alpha=0.7,
                      label=f"{metric.upper()}, raw weights")
        ax_q.axvspan(es[len(es) - max(1, len(es) // 4)], es[-1], color="C2", alpha=0.08, label="last quarter")
        if selected and selected.get("weights") == "best":
            ax_q.plot([selected["step"]], [selected["score"]], "*", color="C3", markersize=14,
                      label=f"kept: step {selected['step']}")
        ax_q.set(xlabel="step", ylabel=metric.upper(), title=f"{metric.upper()} on the held-out split ({extractor} features)")
        ax_q.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def curves_by_run(runs: dict[str, list[list[dict]]], metrics: tuple[str, ...] = ("fid", "kid"),
                  title: str = "held-out split"):
    """One panel per metric in ``metrics``; per label, the mean over runs (seeds) with a min-max band.

    ``runs``: label -> one ``evals`` list per seed, each ``[{'step', 'fid', 'kid', ...}, ...]``."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for i, (label, per_seed) in enumerate(runs.items()):
            steps = [e["step"] for e in per_seed[0]]
            values = np.array([[e[metric] for e in evals] for evals in per_seed], dtype=float)  # (seeds, evals)
            ax.plot(steps, values.mean(0), "o-", color=f"C{i}", label=f"{label} ({len(per_seed)} seeds)")
            if len(per_seed) > 1:
                ax.fill_between(steps, values.min(0), values.max(0), color=f"C{i}", alpha=0.15)
        ax.set(xlabel="step", ylabel={"kid": "KID x1000", "fid": "FID"}.get(metric, metric), title=f"{metric.upper()}, {title}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def feature_projections(teacher: list[torch.Tensor], students: dict[str, list[torch.Tensor]], names: list[str]):
    """Teacher vs (mapped) student features at each distillation point, for one image.

    Each feature map (C, h, w) is shown as its projection on the first principal component of the *teacher's* map at
    that point (over its h*w pixels), so the student panels read in the teacher's coordinates; the title gives the
    MSE to the teacher, the quantity distillation minimises."""
    cols = 1 + len(students)
    fig, axes = plt.subplots(len(names), cols, figsize=(2.1 * cols, 2.1 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        t = teacher[r].detach().float()                                   # (C, h, w)
        x = t.flatten(1).T                                                # (h*w, C)
        mean = x.mean(0)
        v = torch.linalg.svd(x - mean, full_matrices=False).Vh[0]         # (C,)
        project = lambda f: ((f.detach().float().flatten(1).T - mean) @ v).view(t.shape[1:])
        t_img = project(t)
        lim = float(t_img.abs().max()) or 1.0
        panels = {"teacher": (t_img, None)}
        panels.update({label: (project(f[r]), float(((f[r].detach().float() - t) ** 2).mean()))
                       for label, f in students.items()})
        for c, (label, (img, mse)) in enumerate(panels.items()):
            ax = axes[r, c]
            ax.imshow(img.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(label if mse is None else f"{label}\nMSE {mse:.2f}", fontsize=8)
        axes[r, 0].set_ylabel(name, fontsize=9)
    fig.tight_layout()
    return fig


def weight_sharing(configs: list[str], max_width: int):
    """Which filters of the supernet each sub-network uses: one panel per config, one column per config entry.

    Column i is the layer group set by entry ``c_i``; its height is the supernet's width ``max_width``, the coloured
    part the first ``c_i`` filters the sub-network uses (every sub-network starts at filter 0: first-k sharing)."""
    from .families.base import parse_widths
    names = ["stem", "down", "trunk", "inner\n1/3", "inner\n2/3", "inner\n3/3", "up", "up"]
    fig, axes = plt.subplots(1, len(configs), figsize=(3.2 * len(configs), 2.8), sharey=True, squeeze=False)
    for k, (ax, config) in enumerate(zip(axes[0], configs)):
        values = parse_widths(config, len(names))
        x = np.arange(len(values))
        ax.bar(x, [max_width] * len(values), color="0.9", edgecolor="0.6", width=0.8, label="supernet (shared)")
        ax.bar(x, values, color=f"C{k}", width=0.8, label="used by this sub-network")
        ax.set_xticks(x, names, fontsize=7)
        ax.set_title(config, fontsize=8)
    axes[0, 0].set_ylabel("filters (x multiplier: 1, 2 or 4)")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def rank_scatter(shared: list[float], standalone: list[float], labels: list[str], metric: str = "FID",
                 seed_scores: list[list[float]] | None = None):
    """Shared-weight score (supernet, no training) vs stand-alone score of the same configs, with both rank
    correlations in the title: if weight sharing ranks architectures faithfully, the points rise together.
    ``seed_scores``: each config's stand-alone score per seed (``standalone`` is then their mean), drawn as a bar from
    the lowest to the highest seed: the training noise the ranking is read against."""
    from scipy.stats import kendalltau, spearmanr
    rho, tau = spearmanr(shared, standalone).statistic, kendalltau(shared, standalone).statistic
    fig, ax = plt.subplots(figsize=(5.2, 4))
    if seed_scores and min(len(s) for s in seed_scores) > 1:
        ax.vlines(shared, [min(s) for s in seed_scores], [max(s) for s in seed_scores], color="0.6", lw=1.5, zorder=1)
    ax.scatter(shared, standalone, s=40, c=np.arange(len(shared)), cmap="viridis", zorder=2)
    for x, y, label in zip(shared, standalone, labels):
        ax.annotate(label, (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    seeds = len(seed_scores[0]) if seed_scores else 1
    ylabel = (f"{metric} trained stand-alone" if seeds == 1
              else f"{metric} trained stand-alone\n(mean of {seeds} seeds; bar: their range)")
    ax.set(xlabel=f"{metric} with the supernet's shared weights", ylabel=ylabel,
           title=f"Spearman {rho:.2f}, Kendall {tau:.2f} ({len(shared)} sub-networks)")
    fig.tight_layout()
    return fig, float(rho), float(tau)


def latency_distribution(rows: list[dict], resolution: int, batch: int = 1):
    """Every timed forward pass of each model (rows of :func:`gclib.profiling.profile_models` at ``resolution`` and
    ``batch``), cheapest model at the top, as a box (median and quartiles: what the table reports) over the passes
    themselves (seaborn): the spread a speed-up is read against, and the slow outliers a mean would be dragged by."""
    import pandas as pd
    import seaborn as sns
    picked = sorted((r for r in rows if r["resolution"] == resolution and r["batch"] == batch), key=lambda r: r["GMACs"])
    passes = pd.DataFrame([{"model": r["model"], "ms": t} for r in picked for t in r["times_ms"]])
    order = [r["model"] for r in picked]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(order) + 1.2))
    with warnings.catch_warnings():     # seaborn's boxplot still passes matplotlib's deprecated ``vert``
        warnings.simplefilter("ignore", DeprecationWarning)
        sns.boxplot(data=passes, x="ms", y="model", order=order, whis=(0, 100), color="0.9", width=0.6, ax=ax)
    sns.stripplot(data=passes, x="ms", y="model", order=order, size=2.5, alpha=0.6, jitter=0.2, ax=ax)
    ax.set(xscale="log", xlabel="ms per forward pass (every timed pass; box: quartiles, line: median)", ylabel="",
           title=f"latency at {resolution}x{resolution}, batch {batch}: {len(passes)} passes")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    # minor ticks labelled at 2 and 5 of each decade, so a narrow log range still has numbers on it
    ax.xaxis.set_minor_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:e}"[0] in "25" else ""))
    fig.tight_layout()
    return fig


DAMAGE_UNITS = {"noise": "noise std (grey levels)", "blur": "blur std (pixels)", "colour": "colour shift (grey levels)",
                "blocky": "weight of 4x4 blocks", "content": "tiles out of place (of 16)"}


def damage_ladder(rows: list[dict], metric: str = "fid", title: str = ""):
    """One panel per kind of damage: the metric (with its bootstrap interval) against the damage's strength, over
    the band of the floor (two clean real samples). A metric that sees the damage leaves the band at once."""
    floor = next(r for r in rows if r["kind"] == "none")
    kinds = list(dict.fromkeys(r["kind"] for r in rows if r["kind"] != "none"))
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.1 * len(kinds), 2.9), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        steps = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["level"])
        x = [r["strength"] for r in steps]
        y = np.array([r[metric] for r in steps])
        err = np.array([[r[metric] - r[f"{metric} low"], r[f"{metric} high"] - r[metric]] for r in steps]).T
        ax.axhspan(floor[f"{metric} low"], floor[f"{metric} high"], color="0.85", label="floor (real vs real)")
        ax.axhline(floor[metric], color="0.5", lw=1)
        ax.errorbar(x, y, yerr=np.clip(err, 0, None), fmt="o-", color="C3", capsize=3, label="damaged")
        ax.set(xscale="log", yscale="log" if min(y.min(), floor[metric]) > 0 else "linear",
               xlabel=DAMAGE_UNITS.get(kind, kind), title=kind)
        ax.xaxis.set_minor_formatter(plt.NullFormatter())       # label the five strengths only
        ax.set_xticks(x, [f"{v:.2g}" for v in x], fontsize=7)
        ax.set_ylabel(metric.upper() if ax is axes[0][0] else "")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title or f"does {metric.upper()} see damage? (95% bootstrap intervals)", fontsize=10)
    fig.tight_layout()
    return fig


def frontier(record: dict, metrics: list[str], names: dict[str, str], paper_ratio: float | None = None):
    """Quality after fine-tuning against the MAC reduction, one panel per metric (seaborn): searched and uniform
    sub-networks, the mean over fine-tuning seeds with the band from the worst to the best seed, the same networks
    before fine-tuning (dashed), the teacher's band (grey: its seeds' spread, or the interval of a single seed), the
    floor of two real samples (black dashes), the paper's ratio (dotted), and the score of doing nothing (written)."""
    import pandas as pd
    import seaborn as sns

    from .pipeline import teacher_band
    long = []                         # one row per (network, seed or "before", metric)
    for r in record["rows"]:
        x = record["teacher_macs"] / r["macs"]
        for m in metrics:
            long += [{"x fewer MACs": x, "network": r["role"], "when": "fine-tuned", "metric": m, "value": s[m]}
                     for s in r["after"].values()]
            long.append({"x fewer MACs": x, "network": r["role"], "when": "before fine-tuning", "metric": m,
                         "value": r["before"][m]})
    long = pd.DataFrame(long)
    teachers = list(record["teacher_test"].values())
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.8 * len(metrics), 3.4), squeeze=False)
    palette = {"searched": "C0", "uniform": "C1", "searched = uniform": "C2"}
    for i, (ax, m) in enumerate(zip(axes[0], metrics)):
        sns.lineplot(data=long[long.metric == m], x="x fewer MACs", y="value", hue="network", style="when",
                     style_order=["fine-tuned", "before fine-tuning"], markers=True, dashes=[(1, 0), (3, 2)],
                     errorbar=("pi", 100), palette=palette, ax=ax, legend=i == 0)
        best, worst = teacher_band(teachers, m)
        ax.axhspan(min(best, worst), max(best, worst), color="0.6", alpha=0.35, label="teacher band")
        if m in record.get("floor", {}):
            ax.axhline(record["floor"][m], color="k", ls="--", lw=0.8, label="floor (real vs real)")
        if paper_ratio:
            ax.axvline(paper_ratio, color="C3", ls=":", lw=1, label=f"the paper's ratio ({paper_ratio}x)")
        if m in record.get("identity_test", {}):   # doing nothing: far off most axes, so written, not drawn
            ax.text(0.02, 0.02, f"doing nothing: {record['identity_test'][m]:.3g}", transform=ax.transAxes,
                    fontsize=7, color="0.3")
        ax.set_xscale("log")
        ratios = sorted(record["teacher_macs"] / b for b in record["search"]["budgets"].values())   # the budgets
        ax.set_xticks(ratios, [f"{x:.3g}" for x in ratios], minor=False)
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set(xlabel="x fewer MACs than the teacher (log)", ylabel=names.get(m, m), title=f"{names.get(m, m)}, test")
    handles, labels = axes[0][0].get_legend_handles_labels()
    axes[0][0].get_legend().remove()
    fig.tight_layout()
    fig.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return fig
