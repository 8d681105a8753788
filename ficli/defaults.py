"""Numbers that both the library and `ficli --help` use, each written once.

Plain Python with no imports, so that `cli` can put them into its option defaults and help texts
without loading numpy or torch (which it does only after the paths are checked).
"""

# The intensity map's percentiles (docs/DESIGN.md section 4; `ficli.image.intensity`).
LO_PCT = 0.1
HI_PCT = 99.9

# `ficli video`'s largest tile side: frames up to 1280×720 run whole and 1920×1080 in two 1008×1080
# tiles (5 % recomputed), where balanced 512-px tiles recompute 31 % and 47 % (1280×720 end to end
# on 2 CPU cores: 1.07×). Memory: about 0.5 GB per million pixels of a network call in fp32
# (4 frames of 720p: 1.9 GB).
VIDEO_TILE = 1280

# `ficli video --scale auto`: the blur scale is estimated once per video from this many of the
# frames sampled for the intensity range (evenly spread), each its central crop of this side in
# pixels as the network sees them (after --upscale). 16 crops of 512² are 144 Welch tiles of 256²:
# the estimate settles well before that, and the crops cost little memory (uint8 RGB: 0.75 MB each).
SCALE_FRAMES = 16
SCALE_CROP = 512
