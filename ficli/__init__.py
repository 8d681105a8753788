"""ficli: sharpen fluorescence images and videos (FI-GAN with the total gradient loss)."""

__version__ = "0.1.0"
