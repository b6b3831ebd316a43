"""Family-agnostic layers: elastic (sliceable) convolutions, the PatchGAN discriminator and the GAN losses."""
