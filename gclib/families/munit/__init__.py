"""The MUNIT family (multimodal translation, notebook 07 to come): networks, supernet and the family contract; its
training recipe and notebook come next."""
from .family import MUNIT_FAMILY
from .networks import MUNITGenerator, SuperMobileMUNITGenerator, config_widths, student, teacher

__all__ = ["MUNIT_FAMILY", "MUNITGenerator", "SuperMobileMUNITGenerator", "config_widths", "student", "teacher"]
