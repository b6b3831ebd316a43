"""Once-for-all training (notebook 03): one set of weights, every sub-network of a family's config space.

Every step samples a sub-network (each config entry uniformly and independently, Fast GAN Compression's sampler,
from the step's own random stream so resuming is exact), then takes one distillation step of it against the full
teacher. A sub-network uses the first-k slices of the shared weights, so every step also trains the channels all
narrower networks share. The mapping convs are elastic too: each uses the first ``C_s`` input channels of its weight,
``C_s`` being the sampled width at its distillation point.
"""
from __future__ import annotations

from torch import nn

from ..families.base import ConfigSpace
from ..nn.elastic import make_elastic
from .distill import DistillTrainer, build_mappings


def elastic_mappings(family, supernet: nn.Module, teacher: nn.Module) -> nn.ModuleList:
    """The distillation mappings of the supernet at its widest, made elastic (they take whatever width arrives)."""
    return make_elastic(build_mappings(family, supernet, teacher))


class SupernetTrainer(DistillTrainer):
    """nets: ``{'G': the family's supernet, 'D': discriminator, 'maps': elastic_mappings(...)}``; ``space``: the
    sub-networks to sample from."""

    def __init__(self, *args, space: ConfigSpace, **kwargs):
        self.space = space
        super().__init__(*args, **kwargs)

    def train_step(self, batch, g):
        self.nets["G"].set_config(self.space.sample(g))
        return super().train_step(batch, g)
