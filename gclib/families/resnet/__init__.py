"""The pix2pix / CycleGAN ResNet generator family: teacher, mobile student, supernet and their config space."""
from .family import FAST_CYCLEGAN_CHOICES, FAST_PIX2PIX_CHOICES, RESNET, ResnetFamily
from .networks import (MobileResnetBlock, MobileResnetGenerator, ResnetBlock, ResnetGenerator, SeparableConv2d,
                       SuperMobileResnetGenerator, config_widths, describe_state_dict)

__all__ = ["FAST_CYCLEGAN_CHOICES", "FAST_PIX2PIX_CHOICES", "RESNET", "ResnetFamily", "MobileResnetBlock",
           "MobileResnetGenerator", "ResnetBlock", "ResnetGenerator", "SeparableConv2d", "SuperMobileResnetGenerator",
           "config_widths", "describe_state_dict"]
