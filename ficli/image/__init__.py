"""Image data: everything that turns files into arrays and back, and the pure operations on arrays.

Belongs here: reading and writing images (`io`, `tiff`, `png`, `files`, `paths`; OME-Zarr's metadata and levels: `ngff`), the output rules (`guard`: which
path may be written, one run per output, SIGTERM/SIGHUP as Ctrl-C), the record of how an output was made
(`provenance`), the intensity map
(`intensity`), the degradation family and the project's one bicubic (`degrade`), a frame's H.264
coding (`h264`: the ffmpeg of imageio-ffmpeg), the blur-scale
estimate (`blurscale`), metrics (`metrics`) and synthetic phantoms (`phantom`): numpy (and
OpenCV/tifffile) only.

Must not be here: anything that imports torch or a model, runs a network or knows a command's
options. This is the bottom layer: it imports no other ficli subpackage (only `ficli.errors` and
`ficli.defaults`).
"""
