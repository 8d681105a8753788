"""`ficli compare`: the before/after panel of a still image with a line profile (issue 26, item 5)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from ficli.image import io
from ficli.image.phantom import phantom, to_dtype


@pytest.fixture
def pair(tmp_path):
    before = tmp_path / "cells.tif"
    io.write_image(before, to_dtype(phantom(60, 90, seed=1), np.uint16, max_value=4095))
    return before


def test_compare_writes_a_panel_of_enhance_output(run_cli, pair, tmp_path):
    assert run_cli("enhance", pair, "--out", tmp_path / "sharp", "-q").exit_code == 0
    result = run_cli("compare", pair, tmp_path / "sharp" / "cells.tif", "--out", tmp_path / "panel.png")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "line 0,29.5,89,29.5" in result.output  # the middle row by default
    with PILImage.open(tmp_path / "panel.png") as panel:
        width, height = panel.size
        pixels = np.asarray(panel.convert("L"))
    assert width > 600 and height > 300 and pixels.std() > 10  # two images and a plot, not a blank page


def test_compare_takes_a_line_and_is_quiet(run_cli, pair, tmp_path):
    result = run_cli("compare", pair, pair, "--line", "5,5,80,50", "--out", tmp_path / "p.png", "-q")
    assert result.exit_code == 0 and result.output == "" and (tmp_path / "p.png").stat().st_size > 1000


def test_compare_draws_the_profile_of_each_image(pair, tmp_path):
    from ficli.tools.profile import compare_panel, line_profile

    line = compare_panel(pair, pair, tmp_path / "p.png", (0, 10, 89, 10))
    assert line == (0, 10, 89, 10)
    distance, values = line_profile(io.read_image(pair).data.astype(np.float32), line)
    assert len(distance) == 90 and values.max() > 0


@pytest.mark.hostile
def test_compare_refuses_images_of_different_sizes(run_cli, pair, tmp_path):
    other = tmp_path / "big.png"
    io.write_image(other, to_dtype(phantom(120, 180, seed=2), np.uint8))
    result = run_cli("compare", pair, other, "--out", tmp_path / "p.png")
    assert result.exit_code == 1 and "one size" in result.output and not (tmp_path / "p.png").exists()


@pytest.mark.hostile
def test_compare_never_writes_over_an_input_or_an_existing_file(run_cli, pair, tmp_path):
    before = pair.read_bytes()
    result = run_cli("compare", pair, pair, "--out", pair)
    assert result.exit_code != 0 and pair.read_bytes() == before
    (tmp_path / "p.png").write_bytes(b"mine")
    result = run_cli("compare", pair, pair, "--out", tmp_path / "p.png")
    assert result.exit_code != 0 and (tmp_path / "p.png").read_bytes() == b"mine"
    assert run_cli("compare", pair, pair, "--out", tmp_path / "p.png", "--overwrite").exit_code == 0


@pytest.mark.hostile
def test_compare_line_outside_the_image_is_refused(run_cli, pair, tmp_path):
    result = run_cli("compare", pair, pair, "--line", "0,0,500,10", "--out", tmp_path / "p.png")
    assert result.exit_code != 0 and "outside" in result.output and not (tmp_path / "p.png").exists()


def test_which_command_table_opens_the_readme_and_the_model_card_carries_it():
    """The first screen of the README answers "which command for my data"; the model card has the
    same table (its numbers are written once: tests/which_model.py --write copies them)."""
    from which_model import CARD, README, table

    readme = README.read_text(encoding="utf-8")
    assert readme.index("<!-- which-model -->") < readme.index("## Set up")
    assert len(readme[: readme.index("<!-- /which-model -->")].splitlines()) < 40  # on one screen
    source = table(README)
    for kind in ("native camera", "undersampled", "shrank and enlarged", "video", "ficli compare"):
        assert kind in source
    assert table(CARD) == source
