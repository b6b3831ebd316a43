"""Once-for-all training (notebook 03): one set of weights, every sub-network of a family's config space.

Every step picks a sub-network, then takes one distillation step of it against the full teacher. The ``uniform``
sampler draws each config entry uniformly and independently (Fast GAN Compression's), from the step's own random
stream so resuming is exact; the ``sandwich`` sampler (Once-for-All's rule, spread over steps) trains the largest
sub-network at every step t = 0 mod 4, the smallest at t = 1 mod 4, and a uniform draw otherwise, so the two ends of
the space, which bound every other sub-network's shared weights, are trained as often as the middle. A sub-network
uses the first-k slices of the shared weights, so every step also trains the channels all narrower networks share. The mapping convs are elastic too: each uses the first ``C_s`` input channels of its weight,
``C_s`` being the sampled width at its distillation point.
"""
from __future__ import annotations

from torch import nn

from ..families.base import ConfigSpace
from ..presets import SAMPLERS
from ..nn.elastic import make_elastic
from .distill import DistillTrainer, build_mappings


def elastic_mappings(family, supernet: nn.Module, teacher: nn.Module) -> nn.ModuleList:
    """The distillation mappings of the supernet at its widest, made elastic (they take whatever width arrives)."""
    return make_elastic(build_mappings(family, supernet, teacher))


class SupernetTrainer(DistillTrainer):
    """nets: ``{'G': the family's supernet, 'D': discriminator, 'maps': elastic_mappings(...)}``; ``space``: the
    sub-networks to sample from."""

    def __init__(self, *args, space: ConfigSpace, sampler: str = "uniform", **kwargs):
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown supernet sampler {sampler!r}; choose one of {SAMPLERS}")
        self.space, self.sampler = space, sampler
        super().__init__(*args, **kwargs)

    def config_at(self, step: int, g) -> str:
        """The sub-network trained at ``step``."""
        drawn = self.space.sample(g)          # drawn at every step, so both samplers use the stream alike
        if self.sampler == "sandwich" and step % 4 < 2:
            return self.space.largest() if step % 4 == 0 else self.space.smallest()
        return drawn

    def train_step(self, batch, g):
        self.nets["G"].set_config(self.config_at(self.step, g))
        return super().train_step(batch, g)
