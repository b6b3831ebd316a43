"""Elastic layers: one set of weights that runs at any narrower width (the supernets of notebook 03).

Before a forward pass each elastic conv is given an active output width ``active_out``; it then uses only its
**first k** filters, and of each filter the first channels its (possibly narrower) input has::

    Conv2d:           weight[:out, :in]      (out, in, k, k)
    depthwise Conv2d: weight[:in]            (in, 1, k, k), groups = in
    ConvTranspose2d:  weight[:in, :out]      (in, out, k, k)

Because an elastic layer keeps its plain twin's parameter names and shapes, a sub-network's state_dict is the
supernet's sliced to the sub-network's shapes (:func:`slice_state_dict`), for any family built from these layers.
Non-affine norms need no per-width statistics; BatchNorm-based families (SPADE) re-calibrate them per sub-network.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ElasticConv2d(nn.Conv2d):
    """A Conv2d that uses its first ``active_out`` filters and the first ``x.shape[1]`` input channels."""

    active_out: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c_in = x.shape[1]
        if self.groups == 1:
            out = self.active_out or self.out_channels
            weight, groups = self.weight[:out, :c_in], 1
        else:  # depthwise: one filter per input channel, as many outputs as inputs
            out, weight, groups = c_in, self.weight[:c_in], c_in
        bias = self.bias[:out] if self.bias is not None else None
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, groups)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)


class ElasticConvTranspose2d(nn.ConvTranspose2d):
    """A ConvTranspose2d on the first ``x.shape[1]`` inputs producing its first ``active_out`` outputs."""

    active_out: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.active_out or self.out_channels
        bias = self.bias[:out] if self.bias is not None else None
        return F.conv_transpose2d(x, self.weight[:x.shape[1], :out], bias, self.stride, self.padding,
                                  self.output_padding, 1, self.dilation)


class ElasticInstanceNorm2d(nn.InstanceNorm2d):
    """The non-affine InstanceNorm at whatever width arrives (the plain one warns when it differs from its own)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, eps=self.eps)


def make_elastic(module: nn.Module) -> nn.Module:
    """Turn every plain (transposed) conv and non-affine InstanceNorm of ``module`` into its elastic twin, in place:
    same parameters, same names. Returns ``module``."""
    for m in module.modules():
        if type(m) is nn.Conv2d:
            m.__class__ = ElasticConv2d
        elif type(m) is nn.ConvTranspose2d:
            m.__class__ = ElasticConvTranspose2d
        elif type(m) is nn.InstanceNorm2d and not m.affine and not m.track_running_stats:
            m.__class__ = ElasticInstanceNorm2d
    return module


def set_active_widths(net: nn.Module, widths: dict[str, int]) -> None:
    """``widths``: module name -> active output width, for the elastic layers a family's config controls."""
    for name, width in widths.items():
        net.get_submodule(name).active_out = width


def strongest_channels(norms: torch.Tensor, k: int, by_importance: bool = False) -> torch.Tensor:
    """The indices of the ``k`` largest of ``norms`` (one L1 norm ``sum |W[c]|`` per filter): how a narrower network
    keeps a trained wider one's channels. In channel order, or strongest first with ``by_importance`` (a supernet,
    whose first-k slices then inherit the k strongest)."""
    kept = torch.topk(norms, k).indices
    return kept if by_importance else torch.sort(kept).values


def slice_state_dict(shared: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each tensor of ``shared`` cut to the shape of the same-named tensor of ``target``, keeping the first k along
    every dimension (first-k weight sharing). Raises a ``KeyError`` naming a tensor ``shared`` lacks."""
    out = {}
    for k, v in target.items():
        if k not in shared:
            raise KeyError(f"the supernet has no tensor {k!r} for this sub-network")
        out[k] = shared[k][tuple(slice(0, n) for n in v.shape)].clone()
    return out
