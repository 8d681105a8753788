"""The model: networks, losses and model files.

Belongs here: the FI-GAN generator and critic (`nets`), the losses with the total gradient loss
(`losses`), the perceptual feature networks (`perceptual`) and safe model files with their metadata
(`modelfile`).

Must not be here: tiling, devices, files other than model files, or training loops. May import
`ficli.image` (model files are written atomically with its helpers), never a layer above.
"""
