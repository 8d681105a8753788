"""Intensity line profiles through the same line of several images (the paper's Figs. 5-7), and a
before/after panel of two images with the profile under them (`ficli compare`).

Values are sampled with bilinear interpolation at one-pixel steps along the line, in each image's own
units (the file's pixel values), so a profile through an enhanced 16-bit image can be compared with
the original's. Colour images give the mean over their channels.
"""

from __future__ import annotations

import csv
from io import StringIO
from pathlib import Path

import cv2
import numpy as np

from ficli.image import io
from ficli.defaults import HI_PCT, LO_PCT
from ficli.errors import ConfigError, InputError


def parse_line(text: str) -> tuple[float, float, float, float]:
    """'x0,y0,x1,y1' in pixels (x to the right, y down) → four floats."""
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--line wants x0,y0,x1,y1 in pixels, e.g. 10,40,200,40; got {text!r}") from None
    if (x0, y0) == (x1, y1):
        raise ConfigError("--line: the two end points are the same; give a line of some length")
    return x0, y0, x1, y1


def line_profile(image: np.ndarray, line: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(distance in pixels, values) along `line` on a (H, W) or (H, W, C) image, one sample per pixel."""
    x0, y0, x1, y1 = line
    h, w = image.shape[:2]
    for x, y in ((x0, y0), (x1, y1)):
        if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
            raise ConfigError(f"--line end point ({x:g}, {y:g}) lies outside the {w}×{h} image")
    length = float(np.hypot(x1 - x0, y1 - y0))
    t = np.linspace(0.0, 1.0, int(np.ceil(length)) + 1)
    xs = (x0 + t * (x1 - x0)).astype(np.float32)[None]
    ys = (y0 + t * (y1 - y0)).astype(np.float32)[None]
    plane = image.astype(np.float32)
    plane = plane.mean(axis=2) if plane.ndim == 3 else plane
    values = cv2.remap(plane, xs, ys, cv2.INTER_LINEAR)[0]
    return t * length, values


# The plot formats --out takes, by suffix (matplotlib writes each; JPEG through Pillow).
PLOT_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".jpg": "jpg", ".jpeg": "jpg", ".tif": "tiff",
                ".tiff": "tiff", ".eps": "eps", ".ps": "ps"}


def plot_format(out: Path | str) -> str:
    """The format of the plot `out` names by its suffix ("-": PNG); ConfigError for another suffix."""
    if io.writes_through(out) and Path(out).suffix.lower() not in PLOT_FORMATS:
        return "png"  # standard output, a FIFO or a device
    fmt = PLOT_FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise ConfigError(f"--out {out}: cannot write a plot of this type; name it .png, .svg, .pdf, .jpg, .tif, .eps or .ps")
    return fmt


def check_outputs(images: list[Path], out_png: Path, csv_path: Path | None, *, overwrite: bool = False) -> None:
    """Before any image is read: the plot's suffix must name a format (`plot_format`); neither output
    may be an input image (also through a link), a folder, the other output, or an existing file
    without `overwrite`; "-" (standard output) and FIFOs pass. Takes both outputs' locks."""
    plot_format(out_png)
    io.check_distinct_outputs(**{"--out": out_png, "--csv": csv_path})
    for path, option in ((out_png, "--out"), (csv_path, "--csv")):
        if path is not None:
            io.lock_output(path)
            io.check_output_file(path, option, overwrite=overwrite, inputs=images)


def profile_files(paths: list[Path], line, out_png: Path, csv_path: Path | None = None, title: str | None = None) -> list[np.ndarray]:
    """Plot the profile of `line` through every image in `paths` on one axis; optionally write CSV.

    All images must have the same size (a bicubic and an enhanced image of the same field).
    """
    images = [io.read_image(p) for p in paths]
    for image in images:
        io.check_finite(image, "replace them (e.g. by 0) before profiling")
    io.remove_stale_parts([p for p in (out_png, csv_path) if p is not None])  # a killed run's temporaries
    shapes = {im.data.shape[:2] if not im.is_stack else im.data.shape[1:3] for im in images}
    if len(shapes) > 1:
        raise InputError("the images differ in size (" + ", ".join(f"{p.name}: {im.data.shape}" for p, im in zip(paths, images)) + "); profile images of one field at one size")
    profiles = []
    for im in images:
        frame = im.frames[0]
        distance, values = line_profile(frame, line)
        profiles.append(values)
    _plot(paths, distance, profiles, line, out_png, title)
    if csv_path is not None:
        buf = StringIO()
        writer = csv.writer(buf)
        writer.writerow(["distance_px", *column_names(paths)])
        for i, d in enumerate(distance):
            writer.writerow([f"{d:.3f}", *[f"{prof[i]:.6g}" for prof in profiles]])
        io.write_text(csv_path, buf.getvalue())
    return profiles


def column_names(paths: list[Path]) -> list[str]:
    """One distinct CSV header per image: its file name; where two share it, the path from the
    first folder that tells them apart (a/x.png, b/x.png); the same file given twice gets #2, #3."""
    names = [p.name for p in paths]
    depth = 1
    while len(set(names)) < len(names) and depth < max(len(p.parts) for p in paths):
        depth += 1
        clashing = {n for n in names if names.count(n) > 1}
        names = [Path(*p.parts[-depth:]).as_posix() if n in clashing else n for p, n in zip(paths, names)]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return unique


def _plot(paths, distance, profiles, line, out_png: Path, title: str | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for path, values in zip(paths, profiles):
        label = path.parent.name + "/" + path.name if path.parent.name else path.name
        ax.plot(distance, values, label=io.printable(label), lw=1.4)  # the font cannot draw a non-UTF-8 name's bytes
    _save_profile_figure(plt, fig, ax, line, title, out_png, plot_format(out_png), 10, 7)


def default_line(height: int, width: int) -> tuple[float, float, float, float]:
    """The line a panel draws when none is given: across the middle row, end to end."""
    return 0.0, (height - 1) / 2, float(width - 1), (height - 1) / 2


def compare_panel(before: Path, after: Path, out_png: Path, line=None, title: str | None = None) -> tuple[float, float, float, float]:
    """A PNG of `before` and `after` side by side (the same grey map: `before`'s 0.1 and 99.9
    percentiles, so a change of contrast shows) with `line` drawn on both, and the intensity along
    it under them, in each file's units. Same-size images (a stack: its first frame; colour: the
    mean over channels). Returns the line used (`default_line` when None)."""
    images = [io.read_image(p) for p in (before, after)]
    for image in images:
        io.check_finite(image, "replace them (e.g. by 0) before comparing")
    frames = [im.frames[0].astype(np.float32) for im in images]
    frames = [f.mean(axis=2) if f.ndim == 3 else f for f in frames]
    if frames[0].shape != frames[1].shape:
        raise InputError(f"{before} is {frames[0].shape[1]}×{frames[0].shape[0]} px and {after} is "
                         f"{frames[1].shape[1]}×{frames[1].shape[0]}; compare two images of one field at one size "
                         "(an --upscale output: enlarge the original the same way first)")
    io.remove_stale_parts([out_png])
    line = line or default_line(*frames[0].shape)
    profiles = [line_profile(f, line) for f in frames]
    _plot_panel((before, after), frames, profiles, line, out_png, title)
    return line


def _plot_panel(paths, frames, profiles, line, out_png: Path, title: str | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = np.percentile(frames[0], (LO_PCT, HI_PCT))
    h, w = frames[0].shape
    fig = plt.figure(figsize=(9, 4.5 * h / w + 3.2))
    grid = fig.add_gridspec(2, 2, height_ratios=[4.5 * h / w, 3.2])
    for k, (path, frame) in enumerate(zip(paths, frames)):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(frame, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
        ax.plot([line[0], line[2]], [line[1], line[3]], color="#e8a33d", lw=1)
        ax.set_title(("before: " if k == 0 else "after: ") + io.printable(Path(path).name), fontsize=9)
        ax.set_axis_off()
    ax = fig.add_subplot(grid[1, :])
    for label, (distance, values) in zip(("before", "after"), profiles):
        ax.plot(distance, values, label=label, lw=1.3)
    _save_profile_figure(plt, fig, ax, line, title, out_png, "png", 9, 8)


def _save_profile_figure(plt, fig, ax, line, title: str | None, out: Path, fmt: str, title_size: int, legend_size: int) -> None:
    """Label the profile axes (`title`, or the line's ends), and write the figure atomically as `fmt`."""
    ax.set_xlabel("distance along the line (pixels)")
    ax.set_ylabel("intensity (file units)")
    ax.set_title(io.printable(title) if title else "line ({:g}, {:g}) → ({:g}, {:g})".format(*line), fontsize=title_size)
    ax.legend(fontsize=legend_size)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with io.atomic_write(out) as tmp:
        fig.savefig(tmp, dpi=110, format=fmt)
    plt.close(fig)
