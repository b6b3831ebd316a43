"""Generator families: one folder each, all behind the :class:`~gclib.families.base.Family` contract."""
from __future__ import annotations

from .base import ConfigSpace, Family, encode
from .resnet import RESNET
from .munit.family import MUNIT_FAMILY
from .spade.family import SPADE_FAMILY

FAMILIES: dict[str, Family] = {RESNET.name: RESNET, SPADE_FAMILY.name: SPADE_FAMILY, MUNIT_FAMILY.name: MUNIT_FAMILY}


def get_family(name: str = "resnet") -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown generator family {name!r}; choose one of {sorted(FAMILIES)}")
    return FAMILIES[name]


__all__ = ["ConfigSpace", "Family", "FAMILIES", "encode", "get_family"]
