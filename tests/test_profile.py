import numpy as np
import pytest

from ficli.image import io
from ficli.errors import ConfigError
from ficli.tools.profile import line_profile, parse_line


def test_profile_of_a_ramp_is_the_ramp():
    ramp = np.tile(np.arange(50, dtype=np.float32) * 2, (20, 1))
    distance, values = line_profile(ramp, (5, 10, 45, 10))
    assert distance[0] == 0 and distance[-1] == pytest.approx(40)
    assert np.allclose(values, 10 + 2 * distance, atol=1e-4)


def test_diagonal_profile_samples_every_pixel_of_length():
    img = np.zeros((30, 30), np.float32)
    distance, values = line_profile(img, (0, 0, 20, 20))
    assert len(values) == int(np.ceil(20 * np.sqrt(2))) + 1


def test_bad_lines_are_config_errors():
    with pytest.raises(ConfigError, match="x0,y0,x1,y1"):
        parse_line("1,2,3")
    with pytest.raises(ConfigError, match="outside"):
        line_profile(np.zeros((10, 10)), (0, 0, 10, 3))


def test_cli_profile_writes_plot_and_csv(run_cli, tmp_path):
    a = np.tile(np.arange(40, dtype=np.uint16) * 100, (30, 1))
    io.write_image(tmp_path / "hr.png", a)
    io.write_image(tmp_path / "sr.png", a // 2)
    result = run_cli("profile", tmp_path / "hr.png", tmp_path / "sr.png", "--line", "0,5,39,5", "--out", tmp_path / "p.png", "--csv", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    assert io.read_image(tmp_path / "p.png").data.shape[0] > 100
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "distance_px,hr.png,sr.png" and len(rows) == 41
    assert rows[11].split(",")[1:] == ["1000", "500"]


def test_cli_profile_refuses_images_of_different_sizes(run_cli, tmp_path):
    io.write_image(tmp_path / "a.png", np.zeros((10, 10), np.uint8))
    io.write_image(tmp_path / "b.png", np.zeros((12, 10), np.uint8))
    result = run_cli("profile", tmp_path / "a.png", tmp_path / "b.png", "--line", "0,0,5,5", "--out", tmp_path / "p.png")
    assert result.exit_code == 1 and "differ in size" in result.output
