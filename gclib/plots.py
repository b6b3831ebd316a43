"""Figures shared by the notebooks: image grids and training curves."""
from __future__ import annotations

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


def training_curves(history: list[dict], evals: list[dict], extractor: str, smooth: int = 20):
    """Left: each loss term over steps (moving average). Right: FID and KID on the evaluation split over steps."""
    fig, (ax_loss, ax_fid) = plt.subplots(1, 2, figsize=(11, 3.4))
    steps = np.array([h["step"] for h in history])
    for key in [k for k in history[0] if k not in ("step", "seconds")] if history else []:
        v = np.array([h[key] for h in history], dtype=float)
        k = max(1, min(smooth, len(v)))
        ax_loss.plot(steps[k - 1:], np.convolve(v, np.ones(k) / k, mode="valid"), label=key)
    ax_loss.set(xlabel="step", ylabel="loss", title=f"training losses (moving average of {smooth})")
    ax_loss.legend(fontsize=8)
    if evals:
        es = [e["step"] for e in evals]
        ax_fid.plot(es, [e["fid"] for e in evals], "o-", color="C0", label="FID")
        ax_fid.set(xlabel="step", ylabel="FID", title=f"quality on the held-out split ({extractor} features)")
        ax_kid = ax_fid.twinx()
        ax_kid.errorbar(es, [e["kid"] for e in evals], yerr=[e["kid_std"] for e in evals], fmt="s--", color="C1",
                        label="KID x1000")
        ax_kid.set_ylabel("KID x1000")
        handles = ax_fid.get_legend_handles_labels()[0] + ax_kid.get_legend_handles_labels()[0]
        ax_fid.legend(handles=handles, fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig
