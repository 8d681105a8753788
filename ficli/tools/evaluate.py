"""Score restored images against ground truth: pair files, put them on one scale, tabulate metrics.

`evaluate_folders` pairs each SR folder's images with the HR images (by relative path, then by path
without extension, so HR `a.tif` pairs with SR `a.png`), scores every pair with `ficli.image.metrics`
and returns a `Report`: per-image scores, per-folder summaries and every problem found, by file
name. Nothing is dropped silently: unpaired files, size or pixel-type mismatches and unreadable
images each become a `Problem`, and the pair is left out of the scores. The texture excess
(`metrics.texture_excess`) is a score like the others, except that an image it cannot measure
(under 32 px a side, an HR image without variation) is still scored on the rest: NaN there, and a
note in `Report.unmeasured` instead of a problem.

Scales (docs/DESIGN.md section 5), chosen with `Scale`:
    dtype   integers ÷ their type's maximum, floats as they are (scikit-image's and most papers')
    hr      each HR image's own min..max → 0..1, and the same affine map on the image compared with it
    VALUE   both images ÷ VALUE (e.g. 4095 for a 12-bit camera)
"""

from __future__ import annotations

import csv
import json
import math
from io import StringIO
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ficli.image import io, metrics, ngff
from ficli.errors import ConfigError, FicliError, InputError, OutputError
from ficli.image.io import Image, InputFile, collect_inputs, dtype_max, read_image

# An HR image spanning less than this fraction of its type's range scores flatteringly on the dtype scale.
NARROW_FRACTION = 1 / 8
UNPAIRED_KINDS = ("no-sr", "no-hr")
METRICS = ("psnr", "ssim", "rmse", "texture")
KEYS = {"psnr": "psnr_db", "ssim": "ssim", "rmse": "rmse", "texture": "texture_pct"}  # names in CSV and JSON


# ----------------------------------------------------------------------------------------------- scale


NAN_ADVICE = "metrics would be meaningless (not scored)"

@dataclass(frozen=True)
class Scale:
    """How intensities are put on [0, 1] before scoring: kind 'dtype', 'hr' or 'value' (÷ value)."""

    kind: str = "dtype"
    value: float | None = None

    @property
    def label(self) -> str:
        return f"{self.value:g}" if self.kind == "value" else self.kind

    def describe(self) -> str:
        if self.kind == "dtype":
            return "dtype (integers ÷ their type's maximum, floats as they are)"
        if self.kind == "hr":
            return "hr (each HR image's min..max → 0..1, same map on its SR image)"
        return f"÷ {self.value:g}"


def parse_scale(text: str) -> Scale:
    """'dtype', 'hr' or a positive number (the value that maps to 1)."""
    word = text.strip().lower()
    if word in ("dtype", "hr"):
        return Scale(word)
    try:
        value = float(word)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"--data-range {text!r}: use 'dtype', 'hr' or a positive number such as 4095")
    return Scale("value", value)


def to_scale(hr: np.ndarray, sr: np.ndarray, scale: Scale) -> tuple[np.ndarray, np.ndarray]:
    """Both images (any layout) as float64 on `scale`; the whole stack shares one map."""
    a = np.asarray(hr, np.float64)
    b = np.asarray(sr, np.float64)
    if scale.kind == "dtype":
        return a / dtype_max(hr.dtype), b / dtype_max(sr.dtype)
    if scale.kind == "value":
        return a / scale.value, b / scale.value
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        raise InputError(f"HR image is constant ({lo:g}); its min..max cannot define a scale — use --data-range dtype or a value")
    return (a - lo) / (hi - lo), (b - lo) / (hi - lo)


# ------------------------------------------------------------------------------------------ scoring


@dataclass(frozen=True)
class Scores:
    psnr: float  # dB
    ssim: float
    rmse: float  # on the chosen scale
    texture: float  # % (metrics.texture_excess); NaN where not measured


def score_images(hr: np.ndarray, sr: np.ndarray, *, is_stack: bool = False, scale: Scale = Scale(),
                 crop_border: int = 0) -> Scores:
    """Scores of SR against HR: (H, W[, C]) images, or (Z, H, W[, C]) stacks scored frame by frame.

    Stacks: each metric is the mean over frames (so a stack's PSNR is the mean frame PSNR); the
    texture excess over the frames it could measure (NaN if none).
    `crop_border` pixels are removed from each side of each frame before scoring.
    Raises InputError when the pair cannot be scored (shapes, too small, constant HR on 'hr').
    """
    if hr.shape != sr.shape:
        raise InputError(f"shapes differ: HR {hr.shape}, SR {sr.shape}")
    a, b = to_scale(hr, sr, scale)
    frames = list(zip(a, b)) if is_stack else [(a, b)]
    height, width = frames[0][0].shape[:2]
    n = crop_border
    if n and (2 * n >= height or 2 * n >= width):
        raise InputError(f"--crop-border {n} leaves nothing of a {width}×{height} image")
    per_frame = []
    for x, y in frames:
        if n:
            x, y = x[n:-n, n:-n], y[n:-n, n:-n]
        per_frame.append((metrics.psnr(x, y), metrics.ssim(x, y), metrics.rmse(x, y), metrics.texture_excess(x, y)))
    psnr_, ssim_, rmse_, texture = (np.array(v) for v in zip(*per_frame))
    return Scores(psnr=float(psnr_.mean()), ssim=float(ssim_.mean()), rmse=float(rmse_.mean()), texture=_measured(texture)[0])


def texture_gap(frame_shape: tuple[int, ...], crop_border: int = 0) -> str:
    """Why `metrics.texture_excess` gave NaN for frames of `frame_shape` (H, W[, C])."""
    height, width = (side - 2 * crop_border for side in frame_shape[:2])
    if min(height, width) < metrics.TEXTURE_MIN_SIDE:
        side = metrics.TEXTURE_MIN_SIDE
        return f"{width}×{height} px{' after --crop-border' if crop_border else ''} is under the {side}×{side} a spectrum needs"
    return "the HR image has no variation to compare with"


def _measured(values: np.ndarray) -> tuple[float, float, int]:
    """Mean, sample std (NaN below 2) and count of the finite values: texture's summary."""
    v = values[np.isfinite(values)]
    mean = float(v.mean()) if len(v) else float("nan")
    return mean, float(v.std(ddof=1)) if len(v) > 1 else float("nan"), len(v)


# ------------------------------------------------------------------------------------------ pairing


@dataclass(frozen=True)
class Problem:
    """Something that kept a file out of the scores. kind: no-sr, no-hr, ambiguous, unreadable,
    size, dtype, unscorable."""

    kind: str
    path: Path
    method: str | None
    message: str


@dataclass(frozen=True)
class Method:
    """One SR folder (a restoration method) and the name it has in tables and files."""

    name: str
    folder: str


def pair_files(hr_items: list[InputFile], sr_items: list[InputFile], method: str) -> tuple[dict[Path, InputFile], list[Problem]]:
    """Map HR relative path → SR file: same relative path first, then same path without extension.

    Returns the pairs and the problems: HR images without SR ('no-sr'), SR images without HR
    ('no-hr'), and stems that match several files on one side ('ambiguous').
    """
    hr_rels = {item.rel: item for item in hr_items}
    pairs: dict[Path, InputFile] = {}
    left: list[InputFile] = []
    for item in sr_items:
        if item.rel in hr_rels and item.rel not in pairs:
            pairs[item.rel] = item
        else:
            left.append(item)
    hr_by_stem: dict[Path, list[Path]] = defaultdict(list)
    for rel in hr_rels:
        if rel not in pairs:
            hr_by_stem[rel.with_suffix("")].append(rel)
    sr_by_stem: dict[Path, list[InputFile]] = defaultdict(list)
    for item in left:
        sr_by_stem[item.rel.with_suffix("")].append(item)

    problems: list[Problem] = []
    ambiguous_hr: set[Path] = set()
    for stem, srs in sr_by_stem.items():
        hrs = hr_by_stem.get(stem, [])
        if len(srs) == 1 and len(hrs) == 1:
            pairs[hrs[0]] = srs[0]
        elif not hrs:
            for item in srs:
                problems.append(Problem("no-hr", item.path, method, f"{item.path}: no HR image with this name (any extension)"))
        else:
            ambiguous_hr.update(hrs)
            names = ", ".join(str(p) for p in [*hrs, *(s.rel for s in srs)])
            for item in srs:
                problems.append(Problem("ambiguous", item.path, method,
                                        f"{item.path}: several files share the name {stem} ({names}); rename so each HR image has one match"))
    for rel, item in hr_rels.items():
        if rel not in pairs and rel not in ambiguous_hr:
            problems.append(Problem("no-sr", item.path, method, f"{item.path}: no image {rel.with_suffix('')}.* in {method}"))
    return pairs, problems


def without_suffix(item: InputFile, suffix: str) -> InputFile:
    """An SR file named as `ficli enhance --suffix` names its outputs (x_sr.png for x.png), with the
    name it pairs by (x.png); a name without `suffix` is left as it is."""
    stem, extension = io.split_extension(item.rel.name)
    if not suffix or not stem.endswith(suffix) or stem == suffix:
        return item
    return replace(item, rel=item.rel.with_name(stem[: -len(suffix)] + extension))


def method_names(folders: list[str]) -> list[Method]:
    """Name each SR folder by its last path part, with more parts where two would read the same."""
    parts = [Path(f).resolve().parts for f in folders]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = [str(Path(*p[-depth:])) for p in parts]
        if len(set(names)) == len(names):
            break
    return [Method(name, folder) for name, folder in zip(names, folders)]


# ------------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Row:
    """The scores of one SR image against its HR image."""

    hr: Path  # relative to the HR folder
    hr_path: Path
    method: str
    sr_path: Path
    scores: Scores


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (n − 1; None below 2 images) over a folder's images; the
    texture excess's over the `n_texture` images it measured (NaN below 1 and 2)."""

    method: str
    n: int
    mean: Scores | None
    std: Scores | None
    n_texture: int = 0


@dataclass
class Report:
    hr: str
    scale: Scale
    crop_border: int
    methods: list[Method]
    hr_order: list[Path] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    narrow: list[tuple[Path, float, float, float]] = field(default_factory=list)  # path, min, max, type max
    unmeasured: list[tuple[Path, str]] = field(default_factory=list)  # SR path, why: texture excess NaN

    def scores_by_image(self) -> dict[tuple[Path, str], Scores]:
        """(HR relative path, method name) → scores, for tables."""
        return {(row.hr, row.method): row.scores for row in self.rows}

    def summary(self, method: str) -> Summary:
        rows = [row.scores for row in self.rows if row.method == method]
        if not rows:
            return Summary(method, 0, None, None)
        values = {m: np.array([getattr(s, m) for s in rows]) for m in METRICS}
        texture_mean, texture_std, n_texture = _measured(values.pop("texture"))
        mean = Scores(**{m: _mean(v) for m, v in values.items()}, texture=texture_mean)
        std = Scores(**{m: _std(v) for m, v in values.items()}, texture=texture_std) if len(rows) > 1 else None
        return Summary(method, len(rows), mean, std, n_texture)

    def ok(self, *, allow_unpaired: bool = False) -> bool:
        """True when every file was scored (unpaired files aside, if allowed) and something was."""
        ignored = UNPAIRED_KINDS if allow_unpaired else ()
        return bool(self.rows) and not [p for p in self.problems if p.kind not in ignored]


def _mean(v: np.ndarray) -> float:
    return float("inf") if np.isinf(v).any() else float(v.mean())


def _std(v: np.ndarray) -> float:
    return float("nan") if np.isinf(v).any() else float(v.std(ddof=1))


def evaluate_folders(hr: str | Path, srs: list[str | Path], *, scale: Scale = Scale(), crop_border: int = 0,
                     recursive: bool = False, on_pair: Callable[[int, int], None] | None = None,
                     outputs: list[Path] = (), overwrite: bool | None = None, suffix: str = "") -> Report:
    """Score every SR folder in `srs` against the HR folder (or file) `hr`.

    Each HR image is read once. A missing or empty folder raises InputError (nothing is scored);
    per-file trouble becomes a Problem in the report. `on_pair(done, total)` reports progress.
    `outputs` are the files the caller will write (--csv, --json): OutputError, before any scoring,
    if one of them is an input image, or exists and `overwrite` is False (`io.check_output_file`).
    `suffix`: the SR names carry it before their extension (`ficli enhance --suffix`), and pair without it.
    """
    if crop_border < 0:
        raise ConfigError(f"--crop-border {crop_border}: use 0 or a positive number of pixels")
    hr_items = _collect(hr, recursive)
    methods = method_names([str(s) for s in srs])
    report = Report(str(hr), scale, crop_border, methods, hr_order=[item.rel for item in hr_items])
    pairs_by_method: dict[str, dict[Path, InputFile]] = {}
    sr_items = {method.name: [without_suffix(item, suffix) for item in _collect(method.folder, recursive)]
                for method in methods}
    if ngff.is_store(hr):  # a store against a store: paired whatever their names
        sr_items = {name: [replace(i, rel=hr_items[0].rel) for i in items] if len(items) == 1 and ngff.is_store(items[0].path)
                    else items for name, items in sr_items.items()}
    inputs = io.Protected([item.path for item in [*hr_items, *(i for items in sr_items.values() for i in items)]])
    for path in outputs:  # the rule of `io.check_output_file`: also through a symlink or a hard link
        if not io.writes_through(path) and inputs.find(path):
            raise OutputError(f"{path}: is one of the input images; choose another file name for the scores")
        io.check_output_file(path, "", overwrite=overwrite)
    for method in methods:
        pairs, problems = pair_files(hr_items, sr_items[method.name], method.name)
        pairs_by_method[method.name] = pairs
        report.problems.extend(problems)

    total = sum(len(p) for p in pairs_by_method.values())
    done = 0
    for item in hr_items:
        todo = [(m.name, pairs_by_method[m.name][item.rel]) for m in methods if item.rel in pairs_by_method[m.name]]
        if not todo:
            continue
        try:
            hr_image = _read(item.path)
            io.check_finite(hr_image, NAN_ADVICE, what="pixels")
        except FicliError as exc:
            report.problems.append(Problem("unreadable", item.path, None, str(exc)))
            hr_image = None
        if hr_image is not None and scale.kind == "dtype":
            _note_narrow(report, hr_image)
        for name, sr_item in todo:
            if hr_image is not None:
                problem = _score_pair(report, item, hr_image, name, sr_item)
                if problem:
                    report.problems.append(problem)
            done += 1
            if on_pair:
                on_pair(done, total)
    return report


def _collect(path: str | Path, recursive: bool) -> list[InputFile]:
    """`collect_inputs` of one folder, file or pattern; an OME-Zarr store is one input."""
    if ngff.is_store(path):
        path = Path(path)
        return [InputFile(path, Path(path.name), path.parent)]
    return collect_inputs([path], recursive=recursive)


def _read(path: Path) -> Image:
    """`read_image`, or an OME-Zarr store's full-resolution level read whole as a stack of its planes
    (within `io.MAX_VALUES`)."""
    if ngff.is_store(path):
        data = ngff.read_whole(path, io.MAX_VALUES)
        return Image(data=data, path=Path(path), is_stack=data.ndim == 3)
    return read_image(path)


def _score_pair(report: Report, hr_item: InputFile, hr_image: Image, method: str, sr_item: InputFile) -> Problem | None:
    try:
        sr_image = _read(sr_item.path)
        io.check_finite(sr_image, NAN_ADVICE, what="pixels")
    except FicliError as exc:
        return Problem("unreadable", sr_item.path, method, str(exc))
    hr_data, sr_data = hr_image.data, sr_image.data
    if not _same_units(hr_data.dtype, sr_data.dtype):
        return Problem("dtype", sr_item.path, method,
                       f"{sr_item.path}: pixel type {sr_data.dtype}, but HR {hr_item.path} is {hr_data.dtype}; "
                       "intensities in different units cannot be compared — save both with the same type (not scored)")
    if hr_data.shape != sr_data.shape or hr_image.is_stack != sr_image.is_stack:
        return Problem("size", sr_item.path, method,
                       f"{sr_item.path}: {_describe_shape(sr_image)}, but HR {hr_item.path} is {_describe_shape(hr_image)} (not scored)")
    try:
        scores = score_images(hr_data, sr_data, is_stack=hr_image.is_stack, scale=report.scale, crop_border=report.crop_border)
    except InputError as exc:
        return Problem("unscorable", sr_item.path, method, f"{sr_item.path}: {exc} (not scored)")
    report.rows.append(Row(hr_item.rel, hr_item.path, method, sr_item.path, scores))
    if math.isnan(scores.texture):
        report.unmeasured.append((sr_item.path, texture_gap(hr_image.frames[0].shape, report.crop_border)))
    return None


def _same_units(a: np.dtype, b: np.dtype) -> bool:
    """Same integer type, or both floating point (float32 and float64 hold the same units)."""
    return a == b or (a.kind == "f" and b.kind == "f")


def _describe_shape(image: Image) -> str:
    frame = image.frames[0]
    text = f"{frame.shape[1]}×{frame.shape[0]}"
    if frame.ndim == 3:
        text += f"×{frame.shape[2]} channels"
    if image.is_stack:
        text += f", stack of {image.data.shape[0]}"
    return text


def _note_narrow(report: Report, image: Image) -> None:
    top = dtype_max(image.data.dtype)
    lo, hi = float(image.data.min()), float(image.data.max())
    if hi - lo < NARROW_FRACTION * top:
        report.narrow.append((image.path, lo, hi, top))


# ------------------------------------------------------------------------------------------- files


def write_csv(report: Report, path: Path | str) -> None:
    """One row per scored image: hr, method, sr, psnr_db, ssim, rmse, scale, texture_pct (atomic
    write; "-": standard output; texture_pct last so that older readers by position still work, nan
    where not measured). File names that are not UTF-8 are written as their own bytes (`io.write_text`)."""
    buf = StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["hr", "method", "sr", "psnr_db", "ssim", "rmse", "scale", "texture_pct"])
    for row in report.rows:
        s = row.scores
        writer.writerow([row.hr.as_posix(), row.method, str(row.sr_path), repr(s.psnr), repr(s.ssim), repr(s.rmse), report.scale.label,
                         repr(s.texture)])
    io.remove_stale_parts([path])
    io.write_text(path, buf.getvalue())


def summary_dict(report: Report) -> dict:
    """The report as JSON-ready data: the summary per method, one entry per scored image, the
    problems, the images whose texture excess was not measured (texture_pct's own "n" counts those
    that were). Strict JSON: an infinite or undefined number (PSNR of identical images, a mean or
    std over them, an unmeasured texture) is null, and file names that are not UTF-8 are written
    with \\xNN for their bytes (`io.printable`)."""
    methods = []
    for method in report.methods:
        s = report.summary(method.name)
        entry: dict = {"name": io.printable(method.name), "folder": io.printable(method.folder), "n": s.n}
        for m in METRICS:
            entry[KEYS[m]] = {
                "mean": _json_number(getattr(s.mean, m)) if s.mean else None,
                "std": _json_number(getattr(s.std, m)) if s.std else None,
            }
        entry["texture_pct"]["n"] = s.n_texture
        methods.append(entry)
    return {
        "hr": io.printable(report.hr),
        "scale": report.scale.label,
        "scale_description": report.scale.describe(),
        "crop_border": report.crop_border,
        "methods": methods,
        "images": [
            {"hr": io.printable(row.hr.as_posix()), "method": io.printable(row.method), "sr": io.printable(row.sr_path),
             **{KEYS[m]: _json_number(getattr(row.scores, m)) for m in METRICS}}
            for row in report.rows
        ],
        "problems": [{"kind": p.kind, "file": io.printable(p.path), "method": p.method and io.printable(p.method), "message": io.printable(p.message)}
                     for p in report.problems],
        "narrow_range_hr": [{"file": io.printable(p), "min": lo, "max": hi, "type_max": top} for p, lo, hi, top in report.narrow],
        "texture_not_measured": [{"file": io.printable(p), "reason": why} for p, why in report.unmeasured],
    }


def write_json(report: Report, path: Path | str) -> None:
    io.remove_stale_parts([path])
    io.write_text(path, json.dumps(summary_dict(report), indent=2, allow_nan=False, ensure_ascii=False) + "\n")


def _json_number(value: float):
    """A finite float as it is; inf, -inf and NaN as None (null: JSON has no such numbers)."""
    return value if math.isfinite(value) else None


def check_output_file(path: Path | str, option: str) -> None:
    """Refuse an output path that is a folder, or in a folder that cannot be written, before any work
    ("-", FIFOs and devices are written into and pass); the input images and an existing file are
    checked once the inputs are known (`evaluate_folders`)."""
    if not io.writes_through(path) and io.write_target(path).is_dir():
        raise OutputError(f"{option} {path}: is a folder; give a file name such as {Path(path) / ('scores' + ('.csv' if option == '--csv' else '.json'))}")
    io.check_output_file(path, option)
