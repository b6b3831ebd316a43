"""Image conversions shared by every data source: uint8 (H, W, 3) arrays <-> float tensors in [-1, 1]."""
from __future__ import annotations

import numpy as np
import torch


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) or (H, W, 3) -> float (N, 3, H, W) or (3, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.array(images, copy=True)).float().div(127.5).sub(1.0)
    return t.movedim(-1, -3)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1], (..., 3, H, W) -> uint8 (..., 3, H, W), the form FID/KID expect."""
    return ((images.detach().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

