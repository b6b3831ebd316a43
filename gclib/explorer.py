"""The budget explorer of notebook 04: slide a MAC budget, see the best searched sub-network under it.

Moving the slider picks, from the searched table, the best sub-network whose MACs fit the budget, extracts it from
the supernet (a real, standalone ``nn.Module``), runs it on fixed test inputs, and shows its images, its FID/KID and
its measured latency next to the teacher's. Budgets snap to the table's MAC values, so every position of the slider
is a network that was actually evaluated. :meth:`BudgetExplorer.figure` draws the same trade-off at a few budgets for
headless runs (papermill, nbval, GitHub's notebook view), where widgets do not render.
"""
from __future__ import annotations

import html
import io
from typing import Callable

import numpy as np
import torch
from torch import nn

from .metrics import generate
from .search import best_under

CSS_PREFIX = "gclib-explorer"  # class names the browser test looks for


def gmacs(macs: float, digits: int = 4) -> str:
    """MACs in G to ``digits`` significant digits: 0.003701 at the smoke preset's sizes, 281.4 at the paper's (fixed
    decimals would print two neighbouring small networks alike)."""
    return f"{macs / 1e9:.{digits}g}"


def budget_labels(budgets: list[float]) -> list[str]:
    """The slider's labels, one per budget, with as many significant digits as it takes to tell them apart."""
    for digits in range(4, 12):
        labels = [f"{gmacs(b, digits)} G" for b in budgets]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{b:.0f} MACs" for b in budgets]


def _strip_png(images: torch.Tensor, scale: int = 2) -> bytes:
    """uint8 images (N, 3, H, W) side by side, each pixel drawn ``scale`` x ``scale`` -> PNG bytes."""
    from PIL import Image
    strip = torch.cat(list(images), dim=2).permute(1, 2, 0).numpy()        # (H, N*W, 3)
    strip = np.kron(strip, np.ones((scale, scale, 1), dtype=np.uint8))
    buffer = io.BytesIO()
    Image.fromarray(strip).save(buffer, format="PNG")
    return buffer.getvalue()


class BudgetExplorer:
    """rows: searched sub-networks ``{'config', 'macs', 'fid', 'kid', ...}`` (e.g. a Pareto front).
    make_model(config) -> nn.Module builds the sub-network (e.g. ``extract_subnet(supernet, config)``);
    latency(model) -> milliseconds measures it (e.g. gclib.profiling.measure_latency); ``inputs`` are the fixed test
    inputs (float, e.g. (N, 3, H, W) images in [-1, 1] or (N, L, H, W) one-hot label maps); ``teacher_row`` is the
    teacher's ``{'macs', 'fid', 'kid'}``. ``metric``: the row field the best is picked by (lower is better); ``shown``:
    the ``(field, label)`` pairs the text and figure give; ``pictures``: uint8 (N, 3, H, W) pictures of the inputs to
    show above the outputs (a label map's colours), when the inputs are not images themselves; ``styles``: style
    codes (K, style_dim, 1, 1) of a multimodal family (MUNIT), which add a second slider: every image of a row is
    drawn with the chosen code, by the teacher and by the sub-network alike.

    ``best_under_budget=True`` (default): a budget shows the best row within it (give the Pareto front as ``rows`` and
    every position is a front point). ``False``: a budget shows the row of exactly those MACs, to browse every
    evaluated sub-network, good or bad, by cost."""

    def __init__(self, rows: list[dict], make_model: Callable[[str], nn.Module], inputs: torch.Tensor,
                 teacher: nn.Module, teacher_row: dict, latency: Callable[[nn.Module], float], metric: str = "fid",
                 best_under_budget: bool = True, shown: tuple = (("fid", "FID"), ("kid", "KID x1000")),
                 pictures: torch.Tensor | None = None, styles: torch.Tensor | None = None):
        if not rows:
            raise ValueError("the explorer needs at least one searched sub-network")
        self.rows = sorted(rows, key=lambda r: r["macs"])
        self.budgets = sorted({r["macs"] for r in self.rows})
        self.make_model, self.inputs, self.latency, self.metric = make_model, inputs, latency, metric
        self.best_under_budget, self.shown, self.pictures = best_under_budget, tuple(shown), pictures
        self.styles, self.teacher = styles, teacher
        self._views: dict[str, dict] = {}
        self._images: dict[tuple[str, int], torch.Tensor] = {}       # (config or "teacher", style) -> uint8 images
        self.teacher_row = {**teacher_row, "latency_ms": latency(teacher), "images": self._draw(teacher, 0)}
        self._images[("teacher", 0)] = self.teacher_row["images"]

    def _draw(self, model: nn.Module, style: int) -> torch.Tensor:
        """The model's images of the fixed inputs (with style code ``style`` for a multimodal model), uint8."""
        if self.styles is None:
            return generate(model, self.inputs)
        code = self.styles[style:style + 1].expand(len(self.inputs), *self.styles.shape[1:])
        return generate(model, self.inputs, code)

    def images(self, budget_macs: float, style: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(the teacher's images, the picked sub-network's images) under ``budget_macs``, drawn with ``style``."""
        view = self.view(budget_macs)
        if ("teacher", style) not in self._images:
            self._images[("teacher", style)] = self._draw(self.teacher, style)
        if (view["row"]["config"], style) not in self._images:
            self._images[(view["row"]["config"], style)] = self._draw(view["model"], style)
        return self._images[("teacher", style)], self._images[(view["row"]["config"], style)]

    def view(self, budget_macs: float) -> dict:
        """The best sub-network within ``budget_macs``: its row, generated images (uint8) and latency (ms).
        Each config is built, run and timed once, then cached."""
        if self.best_under_budget:
            row = best_under(self.rows, budget_macs, self.metric)
        else:
            at = [r for r in self.rows if r["macs"] == budget_macs]
            if not at:
                raise ValueError(f"no evaluated sub-network has exactly {budget_macs:.0f} MACs; pick one of the "
                                 f"explorer's budgets")
            row = min(at, key=lambda r: r[self.metric])
        if row["config"] not in self._views:
            model = self.make_model(row["config"]).eval()
            self._views[row["config"]] = {"row": row, "model": model, "images": self._draw(model, 0),
                                          "latency_ms": self.latency(model)}
            self._images[(row["config"], 0)] = self._views[row["config"]]["images"]
        return self._views[row["config"]]

    def describe(self, budget_macs: float) -> str:
        """One HTML paragraph: the picked network's config, MACs, quality and latency against the teacher's."""
        v, t = self.view(budget_macs), self.teacher_row
        r = v["row"]
        quality = "".join(f"{label} {r[k]:.2f} (teacher {t[k]:.2f}), " for k, label in self.shown)
        return (f"<b>budget {gmacs(budget_macs)} GMACs</b> &rarr; <code>{html.escape(r['config'])}</code>: "
                f"<span class='{CSS_PREFIX}-macs'>{gmacs(r['macs'])}</span> GMACs "
                f"({t['macs'] / r['macs']:.1f}x fewer than the teacher), {quality}"
                f"latency {v['latency_ms']:.1f} ms (teacher {t['latency_ms']:.1f} ms, "
                f"{t['latency_ms'] / v['latency_ms']:.1f}x faster)")

    def widget(self, scale: int = 2):
        """slider(s) | text | teacher's images | the picked network's images, updated live as a slider moves."""
        import ipywidgets as widgets
        slider = widgets.SelectionSlider(options=list(zip(budget_labels(self.budgets), self.budgets)),
                                         value=self.budgets[len(self.budgets) // 2], description="MAC budget",
                                         continuous_update=False, layout=widgets.Layout(width="95%"),
                                         style={"description_width": "initial"})
        slider.add_class(f"{CSS_PREFIX}-slider")
        info = widgets.HTML()
        info.add_class(f"{CSS_PREFIX}-info")
        teacher_img = widgets.Image(value=_strip_png(self.teacher_row["images"], scale), format="png")
        picked_img = widgets.Image(format="png")
        picked_img.add_class(f"{CSS_PREFIX}-image")

        style = widgets.IntSlider(value=0, min=0, max=len(self.styles) - 1 if self.styles is not None else 0,
                                  description="style code", continuous_update=False,
                                  style={"description_width": "initial"})
        style.add_class(f"{CSS_PREFIX}-style")

        def update(change=None):
            info.value = self.describe(slider.value)
            teacher, picked = self.images(slider.value, style.value)
            teacher_img.value, picked_img.value = _strip_png(teacher, scale), _strip_png(picked, scale)

        slider.observe(update, names="value")
        style.observe(update, names="value")
        update()
        label = lambda text: widgets.HTML(f"<b>{text}</b>")
        inputs = [] if self.pictures is None else [label("input"), widgets.Image(
            value=_strip_png(self.pictures, scale), format="png")]
        sliders = [slider] if self.styles is None else [slider, style]
        return widgets.VBox([*sliders, info, *inputs, label("teacher"), teacher_img,
                             label("best searched sub-network"), picked_img])

    def figure(self, budgets: list[float], n: int = 4, style: int = 0):
        """The static version: the teacher's images, then the best network under each budget, with its numbers
        (a multimodal family's drawn with style code ``style``)."""
        import matplotlib.pyplot as plt
        views = [self.view(b) for b in budgets]
        t = self.teacher_row
        quality = lambda r: ", ".join(f"{label} {r[k]:.2f}" for k, label in self.shown)
        rows = [] if self.pictures is None else [("input", None, "", self.pictures)]
        rows += [("teacher", t["macs"], f"{quality(t)}, {t['latency_ms']:.1f} ms", self.images(budgets[0], style)[0])]
        rows += [(f"<= {gmacs(b)} G", v["row"]["macs"], f"{quality(v['row'])}, {v['latency_ms']:.1f} ms",
                  self.images(b, style)[1]) for b, v in zip(budgets, views)]
        fig, axes = plt.subplots(len(rows), 1, figsize=(1.5 * n + 2.5, 1.55 * len(rows)), squeeze=False)
        for ax, (name, macs, title, images) in zip(axes[:, 0], rows):
            ax.imshow(torch.cat(list(images[:n]), dim=2).permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel(name if macs is None else f"{name}\n{gmacs(macs)} GMACs", fontsize=8, rotation=0,
                          ha="right", va="center")
            ax.set_title(title, fontsize=8, loc="left")
        fig.tight_layout()
        return fig
