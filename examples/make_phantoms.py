"""Write the small synthetic fluorescence images shipped in examples/phantoms/.

Three 256×256 phantoms (points, filaments and vessels through a Gaussian PSF, with Poisson noise) in
the pixel types microscopes produce: 8-bit PNG, 16-bit PNG, and 12-bit data in a 16-bit TIFF.
Run from the repository root: python examples/make_phantoms.py
"""

from pathlib import Path

import numpy as np

from ficli.image.io import write_image
from ficli.image.phantom import phantom, to_dtype

out = Path(__file__).parent / "phantoms"
write_image(out / "phantom_8bit.png", to_dtype(phantom(256, 256, seed=1), np.uint8))
write_image(out / "phantom_16bit.png", to_dtype(phantom(256, 256, seed=2), np.uint16))
write_image(out / "phantom_12bit.tif", to_dtype(phantom(256, 256, seed=3), np.uint16, max_value=4095))
print(f"wrote 3 phantoms to {out}")
