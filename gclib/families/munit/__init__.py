"""The MUNIT family (multimodal translation, notebook 07): its networks so far; the supernet, the family contract
and the recipe come next."""
from .networks import MUNITGenerator, config_widths, student, teacher

__all__ = ["MUNITGenerator", "config_widths", "student", "teacher"]
