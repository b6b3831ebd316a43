"""MACs and parameters.

MACs are counted with torchprofile, the counter the paper's code uses: it traces the model and counts the
multiply-accumulates of convolutions and matrix products. A ``ConvTranspose2d`` is counted on its *output*
(each output pixel costs ``C_in/groups * k * k`` MACs per output channel); norms, activations and padding count 0.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn


def count_macs(model: nn.Module, image_size: int = 256, in_channels: int = 3,
               inputs: tuple[torch.Tensor, ...] | None = None) -> int:
    """Multiply-accumulates of one forward pass at batch 1, as torchprofile counts them. ``inputs``: the forward's
    arguments for generators that take more than one image (default: one zero image of ``image_size``)."""
    from torchprofile import profile_macs
    device = next(model.parameters()).device
    if inputs is None:
        inputs = (torch.zeros(1, in_channels, image_size, image_size),)
    inputs = tuple(x.to(device) for x in inputs)
    was_training = model.training
    model.eval()
    with warnings.catch_warnings():  # torchprofile warns about ops it does not count (pads, norms, activations)
        warnings.simplefilter("ignore")
        macs = profile_macs(model, inputs if len(inputs) > 1 else inputs[0])
    model.train(was_training)
    return int(macs)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe(model: nn.Module, image_size: int) -> dict:
    """``{'GMACs': ..., 'Mparams': ...}`` at ``image_size`` and batch 1."""
    return {"GMACs": count_macs(model, image_size) / 1e9, "Mparams": count_params(model) / 1e6}
