"""GPU checks: half precision keeps the default model's output within one 8-bit grey level."""

import numpy as np
import pytest
import torch

from ficli import io
from ficli.engine import TileConfig
from ficli.enhance import EnhanceOptions, enhance_frames, load_generator

from conftest import shared_images

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; this machine has none"),
]


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_matches_fp32_within_one_grey_level(precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    device = torch.device("cuda")
    generator, _ = load_generator(None, device)
    for path in shared_images("test", 3):
        frame = io.to_unit(io.read_image(path).data)
        results = {}
        for p in ("fp32", precision):
            options = EnhanceOptions(tile=TileConfig(device="cuda", precision=p))
            results[p] = io.from_unit(enhance_frames(generator, [frame], options)[0], np.uint8)
        diff = np.abs(results["fp32"].astype(int) - results[precision].astype(int))
        assert diff.max() <= 1, f"{path.name}: {precision} differs from fp32 by {diff.max()} grey levels"
