"""gclib: the library behind the GAN Compression notebooks."""
__version__ = "0.1.0"
