"""The SPADE (GauGAN) generator family: teacher, mobile student, supernet, BatchNorm re-calibration."""
from .networks import (MobileSPADEGenerator, SPADEGenerator, SuperMobileSPADEGenerator, config_widths,
                       recalibrate)

__all__ = ["MobileSPADEGenerator", "SPADEGenerator", "SuperMobileSPADEGenerator", "config_widths", "recalibrate"]
