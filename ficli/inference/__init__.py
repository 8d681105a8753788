"""Inference: a model made ready on a device and run over images.

Belongs here: devices and precision (`device`), the rules of the tile settings without torch
(`tiles`, checked by the command line before torch loads), the tiled engine (`engine`, which takes a callable
and knows no files or model class), a model file made ready to run and the blur scale it is told
(`runtime`), enhancing one image file (`enhance`), one operation over many files (`batch`) and an OME-Zarr image
block by block, here or on a dask cluster (`chunked`).

Must not be here: video streaming, training or command-line code. May import `ficli.image` and
`ficli.model`.
"""
