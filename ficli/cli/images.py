"""`ficli degrade, evaluate, enhance and profile`: the commands on image files."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from ficli.cli.app import (
    CompileOption,
    CompressionOption,
    DeviceOption,
    InputsHelp,
    ModelOption,
    OutOption,
    OverlapOption,
    OverwriteOption,
    PrecisionOption,
    PyramidOption,
    QuietOption,
    ResultQuietOption,
    KeepCoarseOption,
    ScaleOption,
    ShardOption,
    SkipOption,
    SuffixOption,
    TileOption,
    app,
)
from ficli.console import (
    BATCH_INTERRUPTED,
    evaluate_table,
    note,
    note_skipped_subfolders,
    one_stdout,
    plan_batch,
    print_evaluate_notes,
    progress_bar,
    reporting_errors,
    run_files,
    shard_name,
    stdout_console,
    usage_errors,
)
from ficli.cli.stores import STORE_INTERRUPTED, degrade_stores, enhance_stores, refuse_store_options, store_inputs
from ficli.defaults import HI_PCT, LO_PCT
from ficli.errors import ConfigError as FicliConfigError
from ficli.errors import FicliError
from ficli.image.paths import parse_shard

# ------------------------------------------------------------------------------------------- degrade


@app.command()
def degrade(
    inputs: list[str] = typer.Argument(..., help="HR images: " + InputsHelp),
    out: OutOption = ...,
    scale: str = typer.Option("4", "--scale", "-s", help="Shrink factor s of K_s, any number from 1 to 8 (e.g. 2.5); default 4. U then enlarges back to the input size; 1 with no blur and no noise leaves the image as it is. The sides padded to multiples of s stay within 400 million pixels."),
    kernel: str = typer.Option("pil", "--kernel", "-k", help="Downscale kernel K_s: 'pil' (default, the paper's: antialiased bicubic a=-0.5, as PIL/MATLAB shrink), 'cv2' (OpenCV INTER_CUBIC a=-0.75, not antialiased: what most OpenCV pipelines do), 'area' (mean over each pixel's footprint: what a camera pixel integrates), 'bilinear' (OpenCV INTER_LINEAR, not antialiased: cv2.resize's default). See docs/DEGRADATIONS.md."),
    psf_sigma: float = typer.Option(0.0, "--psf-sigma", help="Gaussian PSF blur before K_s, standard deviation in HR pixels, 0 to 50; default 0 = none."),
    poisson_peak: float = typer.Option(0.0, "--poisson-peak", help="Poisson (shot) noise on the small image: photon count at the image's maximum, up to 1e9; default 0 = none. Lower is noisier (e.g. 200)."),
    gaussian_sigma: float = typer.Option(0.0, "--gaussian-sigma", help="Gaussian read noise on the small image, standard deviation as a fraction of the image's maximum, 0 to 1; default 0 = none."),
    levels: float = typer.Option(0.0, "--levels", help="Round the result to this many grey levels between 0 and the image's maximum, as a camera or file of that depth holds it (e.g. 255 for an 8-bit image that fills its range, 40 for a dim one, 4095 for 12 bits), 2 to 1e6; default 0 = only the output type's own rounding."),
    levels_small: bool = typer.Option(False, "--levels-before-enlarge", help="Round the small image (the camera's pixels) before U enlarges it, as an undersampled acquisition later enlarged is; default: round the result, as a resized file saved again is."),
    h264_crf: Optional[int] = typer.Option(None, "--h264-crf", help="Last, code the result as a video frame: rounded to 8 bits of its maximum and coded as H.264 (x264, preset medium, 4:2:0) at this constant rate factor, 0 to 51 (18 looks lossless, 23 is x264's default, 28 is visibly blocky), then decoded; default: not coded.", show_default=False),
    seed: int = typer.Option(0, "--seed", help="Random seed for the noise; the same seed gives the same output for the same file name."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also read images in subfolders."),
    overwrite: OverwriteOption = False,
    skip_existing: SkipOption = False,
    suffix: SuffixOption = "",
    compression: CompressionOption = "keep",
    shard: ShardOption = None,
    pyramid: PyramidOption = 0,
    quiet: QuietOption = False,
):
    """Simulate blurred, low-resolution images: Y = U(K_s(B(X)) + noise), rounded with --levels.

    An OME-Zarr image (IN.ome.zarr, NGFF 0.4 or 0.5) is degraded plane by plane into a store of the
    same version and calibration: `--out OUT.ome.zarr`, or `--out FOLDER` for FOLDER/IN.ome.zarr.

    The acquisition chain of docs/DEGRADATIONS.md: a PSF at the native grid is `--scale 1
    --psf-sigma S`; an undersampled camera is `--kernel area --levels N --levels-before-enlarge`
    with `--poisson-peak`; a resized and saved file is `--kernel cv2 --levels 255`; a frame of a
    video is `--h264-crf 23`.

    B is an optional Gaussian PSF blur; K_s shrinks by --scale with the --kernel; Poisson, then
    Gaussian noise are added to the small image (where a camera counts photons); U enlarges back with
    the project's one bicubic resize, so each output has its input's size, pixel type and format.
    Sides that do not divide by the scale are reflect-padded before K_s and cropped back after U.
    """
    with reporting_errors(lambda: STORE_INTERRUPTED if store_inputs(inputs) else BATCH_INTERRUPTED):
        _check_compression(compression)
        with usage_errors():
            part = parse_shard(shard)
        stores = store_inputs(inputs)
        if not stores:
            refuse_store_options(**{"--pyramid": pyramid})
            outs = plan_batch(inputs, out, recursive, suffix, overwrite, skip_existing, shard=part)
        from ficli.image.degrade import (  # torch: after the paths are checked
            SCALE_RANGE,
            Degradation,
            check_setting,
            degrade_file,
        )

        with usage_errors():
            try:
                scale = float(scale)
            except ValueError:
                check_setting("scale", scale, *SCALE_RANGE)  # refuses, naming the range
            settings = Degradation(scale=scale, psf_sigma=psf_sigma, poisson_peak=poisson_peak, gaussian_sigma=gaussian_sigma, kernel=kernel,
                                   levels=levels, quantize_small=levels_small, h264_crf=h264_crf)
        if stores:
            return degrade_stores(stores, out, settings, seed, overwrite=overwrite, skip_existing=skip_existing,
                                  pyramid=pyramid, quiet=quiet, shard=part, suffix=suffix)
        from ficli.image import provenance

        base = provenance.base("degrade", degradation={**dataclasses.asdict(settings), "seed": seed})
        run_files("degrade", outs, lambda item, dest, on_fraction: degrade_file(
            item.path, dest, settings, seed, compression, note, {**base, "date": provenance.now()}), skip_existing, quiet)


def _check_compression(compression: str) -> None:
    from ficli.image.io import COMPRESSION_CHOICES

    if compression not in COMPRESSION_CHOICES:
        raise typer.BadParameter(f"{compression!r}: use one of {', '.join(COMPRESSION_CHOICES)}", param_hint="--compression")


# ------------------------------------------------------------------------------------------ evaluate


@app.command()
def evaluate(
    hr: str = typer.Argument(..., help="Ground-truth (HR) folder, image file or glob pattern."),
    sr: list[str] = typer.Argument(..., help="One or more folders of restored (SR) images, one per method; each gets its own column group."),
    data_range: str = typer.Option("dtype", "--data-range", help="Intensity scale mapped to [0, 1]: 'dtype' (integers ÷ their type's maximum, floats as they are), 'hr' (each HR image's min..max, same map on its SR image) or a number (e.g. 4095 for a 12-bit camera)."),
    crop_border: int = typer.Option(0, "--crop-border", min=0, help="Pixels cropped from each side of each image before scoring (e.g. the scale factor); 0 = none."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also read images in subfolders; pairing uses the path inside each folder."),
    per_image: bool = typer.Option(True, "--per-image/--summary-only", help="Show one row per image, or only the mean ± std and count rows."),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="Write per-image scores here (hr, method, sr, psnr_db, ssim, rmse, scale, texture_pct; nan where texture is not measured); '-' = standard output (the table then goes to stderr). File names that are not UTF-8 are written as their own bytes."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write everything here as strict JSON: scale, per-method mean/std/n, per-image scores, every problem by file; '-' = standard output. Infinite or undefined numbers (PSNR of identical images, texture not measured) are null; non-UTF-8 bytes of file names are written as \\xNN."),
    allow_unpaired: bool = typer.Option(False, "--allow-unpaired", help="Exit 0 even when some files have no partner in the other folder (they are still listed)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --csv or --json file. An input image is never replaced."),
    suffix: str = typer.Option("", "--suffix", help="Text the SR names carry before their extension, as `ficli enhance --suffix` writes them: --suffix _sr pairs SR x_sr.png with HR x.png [default: none]."),
    quiet: ResultQuietOption = False,
):
    """Score restorations against ground truth: PSNR (dB), SSIM, RMSE and texture (%) per image and per folder.

    SR images pair with HR images by path inside their folders, or by name without extension (HR
    a.tif with SR a.png). Images are scored on [0, 1] (see --data-range; the table title states the
    scale): RMSE, PSNR = 20·log10(1/RMSE), and SSIM with an 11×11 Gaussian window (σ = 1.5,
    Wang et al. 2004, as scikit-image computes it). texture % measures invented detail: the SR
    image's spectral power above the HR image's, summed over frequencies from 0.02 to 0.5 cycles/px
    (periods under 50 px; Welch spectra of Hann-windowed tiles of up to 256 px), in % of the HR
    image's power there. Blur only removes power, so a blurred copy of the HR image scores 0; detail
    the HR image lacks (texture, ringing, noise, over-sharpening) raises it, and so does more
    contrast (×1.05 scores 10 %). It is 0 or more, with no upper bound, the same on every
    --data-range, and blind to where detail sits (PSNR and SSIM see that); images under 32×32 px
    get – and a note, their other scores count. Colour images are averaged over channels (texture
    pools them), stacks over frames. Summary rows give the mean ± sample standard deviation (n − 1).

    Nothing is dropped silently: unpaired files, size or pixel-type mismatches (not scored: their
    units differ), images smaller than 11×11 after --crop-border and unreadable files are listed by
    name on stderr and in --json.

    Exit code: 0 when every image was scored; 1 when any file was listed as a problem (the table
    and --csv/--json still hold everything that could be scored) or nothing could be scored, or on
    a missing or empty folder; 2 for a bad option.
    """
    from ficli.image import io
    from ficli.tools import evaluate as ev

    with reporting_errors("interrupted: nothing was written (--csv and --json are written at the end); run it again"):
        try:
            scale = ev.parse_scale(data_range)
        except FicliError as exc:
            raise typer.BadParameter(str(exc).split(": ", 1)[-1], param_hint="--data-range") from None
        one_stdout(**{"--csv": csv_file, "--json": json_file})
        io.check_distinct_outputs(**{"--csv": csv_file, "--json": json_file})
        for path, option in ((csv_file, "--csv"), (json_file, "--json")):
            if path is not None:
                io.lock_output(path)
                ev.check_output_file(path, option)
        out_console = stdout_console(csv_file, json_file)
        note_skipped_subfolders([hr, *sr], recursive)
        with progress_bar(quiet) as progress:
            task = progress.add_task("evaluate", total=None, rate="")
            report = ev.evaluate_folders(
                hr, sr, scale=scale, crop_border=crop_border, recursive=recursive, suffix=suffix,
                on_pair=lambda done, total: progress.update(task, completed=done, total=total),
                outputs=[path for path in (csv_file, json_file) if path is not None], overwrite=overwrite,
            )
        out_console.print(evaluate_table(report, per_image, width=out_console.width))
        print_evaluate_notes(report)
        if csv_file is not None:
            ev.write_csv(report, csv_file)
        if json_file is not None:
            ev.write_json(report, json_file)
        if not report.rows:
            raise FicliError("no image pair could be scored; see the problems above")
    if not report.ok(allow_unpaired=allow_unpaired):
        raise typer.Exit(1)




# ------------------------------------------------------------------------------------------- enhance


@app.command()
def enhance(
    inputs: list[str] = typer.Argument(..., help="PNG, TIFF (stacks too), JPEG, BMP images: " + InputsHelp),
    out: OutOption = ...,
    model: ModelOption = None,
    scale: ScaleOption = "auto",
    keep_coarse: KeepCoarseOption = None,
    upscale: int = typer.Option(1, "--upscale", min=1, help="Bicubic-enlarge each image by this factor before enhancing (the paper's re-up-scaling): use it for images at their native resolution. 1 = same size, for images already enlarged from low resolution or blurred. The output stays within 400 million pixels a frame."),
    tile: TileOption = 512,
    overlap: OverlapOption = 32,
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Tiles run through the network at once [default: 1 on the CPU, where it is fastest, 4 on a GPU]."),
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    compile_model: CompileOption = False,
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32: write float32 TIFFs in the input's intensity units (values × the type's maximum, neither rounded nor clipped), for measuring; a PNG, JPEG or BMP input then gives NAME.tif [default: the input's pixel type]."),
    compression: CompressionOption = "keep",
    no_normalize: bool = typer.Option(False, "--no-normalize", help=f"Feed [0, 1]-scaled intensities as they are, without the {LO_PCT:g}/{HI_PCT:g}-percentile mapping (for data already spanning [0, 1])."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also read images in subfolders."),
    overwrite: OverwriteOption = False,
    skip_existing: SkipOption = False,
    suffix: SuffixOption = "",
    shard: ShardOption = None,
    pyramid: PyramidOption = 0,
    block: int = typer.Option(4096, "--block", min=64, max=16384, help="OME-Zarr input: side in output pixels of the region enhanced at once (rounded up to whole output chunks). Each is read with a halo of the network's receptive field (130 px for the default model) and only its interior written, so memory grows with the block's square, not with the image's size; a smaller block costs more recomputed halo (the network runs on 3 % more pixels than in memory at 8192² with 4096, 18 % with 2048; docs/BENCHMARKS.md)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="OME-Zarr input: the address of a running dask.distributed scheduler (tcp://HOST:8786; local, SLURM via dask-jobqueue, Kubernetes) or its scheduler file; the blocks run on its workers, each loading the model once (the model file and stores must be on a disk they share). The result equals a run here [default: here, one block after another, the next one read by a second thread]."),
    quiet: QuietOption = False,
):
    """Sharpen images with FI-GAN, tile by tile, keeping each file's pixel type and range.

    **What the default does**: at the default --upscale 1 the output has the input's size; the
    default model is told how blurred each image is (--scale auto: estimated from its spectrum and
    printed) and sharpens that much: an image enlarged from a low-resolution one (e.g. `ficli
    degrade` output, or data upsampled by the microscope software) gets up to a ×4 bicubic's worth,
    an image sharp to the pixel comes back nearly unchanged. To enlarge native-resolution images,
    give --upscale S: each is first enlarged S× (output S× larger) and then sharpened as read.

    Each image (or whole TIFF stack) is mapped by its own 0.1 and 99.9 intensity percentiles before
    the network and mapped back exactly after it, so intensities stay in the file's units. RGB images
    go through a 1-channel model channel by channel; alpha is kept. Under `torchrun --nproc-per-node N
    -m ficli enhance ...` each process takes every N-th file.

    **OME-Zarr** (NGFF 0.4 or 0.5, axes from t, c, z, y, x): `ficli enhance IN.ome.zarr --out
    OUT.ome.zarr` enhances the full-resolution level block by block (--block), so memory does not
    grow with the image; the percentiles of each channel are estimated once from a sample of its
    chunks and the blur scale from central crops (both printed and kept in the store's record). The
    output has the input's NGFF version, axes, channels and pixel size (divided by --upscale), and
    --pyramid levels. An interrupted run resumes at the first block not written with
    --skip-existing; --scheduler runs the blocks on a dask cluster. Exit code: 1 if any file failed (the others are
    written) or outputs exist already; 2 for an option value that cannot work here.
    """
    with reporting_errors(lambda: STORE_INTERRUPTED if store_inputs(inputs) else BATCH_INTERRUPTED):
        _check_compression(compression)
        if dtype not in (None, "float32"):
            raise typer.BadParameter(f"{dtype!r}: use float32, or leave --dtype out to keep each input's pixel type", param_hint="--dtype")
        with usage_errors():
            part = parse_shard(shard)
            if overwrite and skip_existing:
                raise FicliConfigError("give one of --overwrite (replace existing outputs) and --skip-existing (leave them)")
        stores = store_inputs(inputs)
        if stores:
            return _enhance_stores(stores, out, model, scale, upscale, tile, overlap, batch, device, precision, compile_model, dtype,
                                   no_normalize, overwrite, skip_existing, part, pyramid, block, scheduler, quiet, suffix, keep_coarse)
        refuse_store_options(**{"--pyramid": pyramid, "--scheduler": scheduler, "--block": block != 4096})
        outs = plan_batch(inputs, out, recursive, suffix, overwrite, skip_existing, share=True, tiff_only=dtype is not None, shard=part)
        if model is not None:
            from ficli.image import io

            io.check_model_file(model)
        from ficli.inference.tiles import check_tiling

        with usage_errors():
            check_tiling(tile, overlap, batch or 1)
        # torch from here on: the paths and the tile settings are checked.
        from ficli.inference.device import default_batch, resolve_device, resolve_precision
        from ficli.inference.engine import TileConfig
        from ficli.inference.enhance import EnhanceOptions, enhance_file
        from ficli.inference.runtime import check_coarse, ready_generator, scale_chooser

        with usage_errors():  # once, not once per file
            dev = resolve_device(device)
            options = EnhanceOptions(
                upscale=upscale, keep_coarse=keep_coarse,
                normalize=not no_normalize, dtype=dtype, compression=compression,
                tile=TileConfig(tile=tile, overlap=overlap, batch=batch or default_batch(dev), device=str(dev), precision=precision),
            )
            resolve_precision(precision, dev)
        notices: set[str] = set()

        def notice(message: str):
            if message not in notices:
                notices.add(message)
                note(message)

        generator, info = ready_generator(model, dev, compile_model=compile_model, on_notice=notice)
        channels = info["config"].channels
        with usage_errors():
            options = dataclasses.replace(options, keep_coarse=check_coarse(info, options.keep_coarse),
                                          scale_for=scale_chooser(info, scale))

        _enhance_batch(outs, out, info, options, lambda item, dest, on_fraction, record: enhance_file(
            item.path, dest, generator, options, channels, notice, on_fraction, record=record), skip_existing, quiet, part)


def _enhance_stores(stores, out, model, scale, upscale, tile, overlap, batch, device, precision, compile_model, dtype, no_normalize,
                    overwrite, skip_existing, part, pyramid, block, scheduler, quiet, suffix="", keep_coarse=None) -> None:
    """`enhance` for OME-Zarr inputs: the options checked as for files, then `stores.enhance_stores`."""
    if model is not None:
        from ficli.image import io

        io.check_model_file(model)
    from ficli.inference.tiles import check_tiling

    with usage_errors():
        check_tiling(tile, overlap, batch or 1)
    from ficli.inference.chunked import StoreOptions
    from ficli.inference.device import default_batch, resolve_device, resolve_precision
    from ficli.inference.engine import TileConfig

    with usage_errors():
        dev = resolve_device(device)
        resolve_precision(precision, dev)
        options = StoreOptions(model=None if model is None else str(model), scale=scale, upscale=upscale, normalize=not no_normalize,
                               tile=TileConfig(tile=tile, overlap=overlap, batch=batch or default_batch(dev), device=str(dev),
                                               precision=precision),
                               block=block, pyramid=pyramid, dtype=dtype, keep_coarse=keep_coarse, scheduler=scheduler, overwrite=overwrite,
                               skip_existing=skip_existing)
    enhance_stores(stores, out, options, model, quiet=quiet, shard=part, compile_model=compile_model, suffix=suffix)


def _enhance_batch(outs: dict, out: Path, info: dict, options, process, skip_existing: bool, quiet: bool, part=None) -> None:
    """`run_files` for enhance: each output gets its record (`ficli.image.provenance`), and the
    records of the files written go into OUT/ficli-run.json (ficli-run.rankN.json under torchrun),
    also when some files failed or the run was interrupted; with --skip-existing, those of the files
    left as they were too (read from the files: a killed run wrote none)."""
    import contextlib
    import os

    from ficli.image import provenance
    from ficli.image.io import printable

    base = provenance.base("enhance", **provenance.model_fields(info["path"]))
    names = {dest: printable(dest.relative_to(out) if dest.is_relative_to(out) else dest) for dest in outs.values()}
    records: dict[str, dict] = {}

    def one(item, dest, on_fraction):
        record = process(item, dest, on_fraction, {**base, "date": provenance.now(), "output": names[dest]})
        if record is not None:
            records[names[dest]] = record

    def save() -> None:
        for dest, name in names.items():
            if skip_existing and name not in records and dest.is_file():
                with contextlib.suppress(Exception):  # a file without a readable record is listed by none
                    if (found := provenance.read_image_record(dest)) is not None:
                        records[name] = {**found, "output": name}
        done = [records[name] for name in names.values() if name in records]
        if done:
            run = {k: v for k, v in done[0].items() if k in ("software", "version", "command", "date", "model", "model_sha256",
                                                               "upscale", "tile", "overlap", "device", "precision")}
            provenance.write_run_file(out, run, done, run_name)

    run_name = provenance.RUN_FILE if int(os.environ.get("WORLD_SIZE", 1)) == 1 else f"ficli-run.rank{os.environ.get('RANK', 0)}.json"
    if part is not None:
        run_name = run_name.replace(".json", f".{shard_name(part)}.json")
    provenance.remove_stale_parts([Path(out) / run_name])  # a killed earlier run's unfinished record
    try:
        run_files("enhance", outs, one, skip_existing, quiet)
    except BaseException:  # failed files, a full disk, Ctrl-C: the records of the files written are still kept
        try:
            save()
        except FicliError as exc:  # the error that stopped the run is the one to report
            note(f"{exc} (the run's record file)")
        raise
    save()


# ------------------------------------------------------------------------------------------- profile


@app.command()
def profile(
    images: list[Path] = typer.Argument(..., help="Images of the same field and size: e.g. original, bicubic and enhanced."),
    line: str = typer.Option(..., "--line", help="x0,y0,x1,y1 in pixels (x to the right, y down; sub-pixel allowed)."),
    out: Path = typer.Option(..., "--out", "-o", help="The plot, in the format its suffix names: .png, .svg, .pdf, .jpg/.jpeg, .tif/.tiff, .eps or .ps (another suffix is refused); '-' = PNG on standard output."),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="Also write the sampled values: distance_px and one column per image (headed by the file names; names that are not UTF-8 as their own bytes); '-' = standard output."),
    title: Optional[str] = typer.Option(None, "--title", help="Plot title [default: the line's end points]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out or --csv file. An input image is never replaced."),
    quiet: QuietOption = False,
):
    """Plot the intensity along one line through several images (like the paper's Figs. 5-7).

    One sample per pixel of line length, bilinear interpolation, in each file's own units; colour
    images give the mean over channels; a stack gives its first frame. --out and --csv are checked
    before any image is read: neither may name an input image, nor an existing file without
    --overwrite.
    """
    from ficli.tools.profile import check_outputs, parse_line, profile_files

    with reporting_errors("interrupted: nothing was written; run it again"):
        one_stdout(**{"--out": out, "--csv": csv_file})
        check_outputs(images, out, csv_file, overwrite=overwrite)  # and takes their locks
        profile_files(images, parse_line(line), out, csv_file, title)
        if not quiet:
            stdout_console(out, csv_file).print(f"wrote {out}" + (f" and {csv_file}" if csv_file else ""), highlight=False, markup=False)


# ------------------------------------------------------------------------------------------- compare


@app.command()
def compare(
    before: Path = typer.Argument(..., help="The image as it came in (e.g. the original)."),
    after: Path = typer.Argument(..., help="The same field after ficli (e.g. enhance's output), the same size."),
    out: Path = typer.Option(..., "--out", "-o", help="The panel, a PNG file; '-' = standard output."),
    line: Optional[str] = typer.Option(None, "--line", help="x0,y0,x1,y1 in pixels for the profile [default: across the middle row]."),
    title: Optional[str] = typer.Option(None, "--title", help="Title of the profile [default: the line's end points]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file. An input image is never replaced."),
    quiet: QuietOption = False,
):
    """A before/after panel of a still image: both side by side, on one grey scale, and the intensity
    along a line through both under them (what `video --side-by-side` shows for a recording).

    `ficli enhance cells.tif -o sharp && ficli compare cells.tif sharp/cells.tif -o panel.png`.
    The grey scale is the before image's 0.1 and 99.9 percentiles, so a change of contrast shows; the
    profile is in each file's units (`ficli profile` draws it for more images and writes CSV). A
    stack gives its first frame, a colour image the mean over its channels.
    """
    from ficli.tools.profile import check_outputs, compare_panel, parse_line

    with reporting_errors("interrupted: nothing was written; run it again"):
        check_outputs([before, after], out, None, overwrite=overwrite)
        with usage_errors():
            chosen = parse_line(line) if line is not None else None
        used = compare_panel(before, after, out, chosen, title)
        if not quiet:
            stdout_console(out).print(f"wrote {out} (line {used[0]:g},{used[1]:g},{used[2]:g},{used[3]:g})",
                                      highlight=False, markup=False)
