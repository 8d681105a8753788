"""`ficli video`: the command that streams a recording through the engine."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Optional

import typer

from ficli.cli.app import CompileOption, DeviceOption, KeepCoarseOption, ModelOption, OverlapOption, PrecisionOption, QuietOption, TileOption, app
from ficli.console import blur_scale_value, console, err_console, note, reporting_errors, usage_errors, video_display
from ficli.defaults import SCALE_CROP, SCALE_FRAMES, VIDEO_TILE

# --------------------------------------------------------------------------------------------- video


def _start_seconds(value: float) -> float:
    """Typer callback: a finite number of seconds, 0 or more (exit 2 otherwise, before anything loads)."""
    if not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"{value} is not a finite number of seconds, 0 or more")
    return value


def _duration_seconds(value: Optional[float]) -> Optional[float]:
    """Typer callback: a finite number of seconds above 0, or none (to the end)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value} is not a finite number of seconds above 0; leave --duration out to go to the end")
    return value


@app.command()
def video(
    src: Path = typer.Argument(..., help="Input video: anything ffmpeg reads (MP4, MOV, MKV, AVI...)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output video (.mp4, .m4v, .mov or .mkv). Default: NAME_ficli.mp4 next to the input NAME.ext."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output (and frames in --frames-dir). The input is never overwritten."),
    model: ModelOption = None,
    side_by_side: bool = typer.Option(False, "--side-by-side", help="Original (bicubic-enlarged with --upscale) left, enhanced right: twice the width."),
    compare_only: bool = typer.Option(False, "--compare-only", help="A split preview at the frame's own width: left half original, right half enhanced."),
    labels: bool = typer.Option(True, "--labels/--no-labels", help="Small 'original' / 'ficli' labels in --side-by-side and --compare-only frames."),
    channels: str = typer.Option("auto", "--channels", help="auto: gray video (also gray stored as RGB: channels within 2 levels) as one channel, colour video by its luminance; gray: the channels' mean (gray output); luma: Y of YCrCb enhanced, chroma kept; rgb: each channel."),
    scale: str = typer.Option("auto", "--scale", callback=blur_scale_value, help=f"Blur scale s of the video, for a model conditioned on it: 1 = already sharp, 4 = as blurred as a ×4 bicubic enlargement; a number from 1 to 8, or auto (default): estimated once for the whole video from the power spectrum of {SCALE_FRAMES} of the frames sampled for the range (the central {SCALE_CROP}×{SCALE_CROP} pixels of each, as the network sees them after --upscale), and printed; frames too small or flat to estimate get the model's training scale. Lossy coding (H.264) adds noise where blur removed detail, so there auto may read low: give S where known. An s above the model's training scale is told that scale. The shipped default model is conditioned; a plain one (--model paper) ignores auto and refuses S."),
    keep_coarse: KeepCoarseOption = None,
    upscale: int = typer.Option(1, "--upscale", min=1, help="Bicubic-enlarge frames by this factor before enhancing: for video at its native resolution. 1 = same size, for video enlarged from low resolution or blurred. The output stays within 400 million pixels a frame."),
    start: float = typer.Option(0.0, "--start", callback=_start_seconds, help="Start this many seconds into the video."),
    duration: Optional[float] = typer.Option(None, "--duration", callback=_duration_seconds, help="Process this many seconds (default: to the end)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Process at most this many frames."),
    frames_dir: Optional[Path] = typer.Option(None, "--frames-dir", help="Also write each enhanced frame here as NAME_000001.png, ... (16-bit PNG for high-bit-depth video)."),
    crf: int = typer.Option(18, "--crf", min=0, max=51, help="H.264 quality: 0 lossless, 18 visually lossless, 23 x264's default; lower is larger."),
    preset: str = typer.Option("medium", "--preset", help="x264 speed/size trade-off: ultrafast ... medium ... veryslow."),
    tile: TileOption = VIDEO_TILE,  # 720p frames whole, 1080p in two tiles
    overlap: OverlapOption = 32,
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Frames run through the network at once (the same tile of each) [default: 1 on the CPU, where it is fastest, 4 on a GPU]."),
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    compile_model: CompileOption = False,
    no_normalize: bool = typer.Option(False, "--no-normalize", help="Feed [0, 1]-scaled intensities as they are, without the percentile mapping."),
    quiet: QuietOption = False,
):
    """Sharpen a video (e.g. a NIR surgical recording) frame by frame into an H.264 file.

    **What the default does**: at the default --upscale 1 the frames keep their size; the default
    model is told one blur scale for the video (--scale auto: estimated from sampled frames and
    printed) and sharpens that much; video sharp to the pixel comes back nearly unchanged. Give
    --upscale S to enlarge native-resolution video S× first (output S× larger).

    Frames stream from ffmpeg through the network and back into ffmpeg (decoding, inference and
    encoding overlap; memory stays small for hour-long files). The output is H.264 (yuv420p, BT.709)
    at the input's frame rate, with the input's audio copied unchanged (re-encoded to AAC only where
    MP4 cannot hold it). It is written to a temporary file and renamed when complete.

    **Normalisation**: one 0.1/99.9-percentile intensity range for the whole selected section
    (never per frame, which would flicker), computed from up to 32 frames spread evenly over it.
    **Blur scale** (a model conditioned on it): one s for the whole section, --scale S or estimated
    from 16 of those frames and printed; lossy coding (H.264) hides blur, so there it may read low.

    Variable-frame-rate input is made constant at the stream's nominal rate (frames repeated or
    dropped), so every frame keeps its time and the audio stays in step. An odd width or height is padded by one repeated pixel
    (yuv420p needs even sides). Ctrl-C (or SIGTERM, SIGHUP) finishes the encoder on the frames
    already done and keeps them, playable, as OUT.partial.mp4 (OUT.partial-2.mp4, ... where that
    name is the input or exists without --overwrite); OUT is written only when complete.
    """
    from ficli.image import io

    def interrupted() -> str:
        return "interrupted" if io.signal_name() == "Ctrl-C" else f"interrupted by {io.signal_name()}"

    with reporting_errors():
        if side_by_side and compare_only:
            raise typer.BadParameter("choose one of --side-by-side and --compare-only", param_hint="--compare-only")
        for path in (src, model):  # before torch is imported (seconds)
            if path is not None:
                io.check_input_file(path)
        from ficli.inference.tiles import check_tiling

        with usage_errors():
            check_tiling(tile, overlap, batch or 1)
        from ficli.inference.device import default_batch, resolve_device, resolve_precision
        from ficli.inference.engine import TileConfig
        from ficli.inference.runtime import check_coarse, ready_generator, scale_chooser
        from ficli.video.pipeline import Section, VideoInterrupted, VideoOptions, check_video, default_output, enhance_video

        with usage_errors():
            dev = resolve_device(device)
            options = VideoOptions(
                out=out, overwrite=overwrite, layout="side-by-side" if side_by_side else "compare" if compare_only else "enhanced",
                labels=labels, channels=channels.lower(), upscale=upscale, normalize=not no_normalize, keep_coarse=keep_coarse,
                section=Section(start=start, duration=duration, max_frames=max_frames), frames_dir=frames_dir,
                crf=crf, preset=preset, batch=batch or default_batch(dev),
                tile=TileConfig(tile=tile, overlap=overlap, batch=1, device=str(dev), precision=precision),
            )
            resolve_precision(precision, dev)
        try:
            io.lock_output(out if out is not None else default_output(src))  # one run per output (and its .partial)
            if frames_dir is not None:
                io.lock_output(frames_dir, folder=True)
            source = check_video(src, options)  # input and output problems before the model loads
            generator, info = ready_generator(model, dev, compile_model=compile_model, cuda_graphs=dev.type == "cuda", on_notice=note)
            with usage_errors():
                options = dataclasses.replace(options, keep_coarse=check_coarse(info, options.keep_coarse),
                                              scale_for=scale_chooser(info, scale))
            from ficli.image import provenance

            options = dataclasses.replace(options, record=provenance.base("video", **provenance.model_fields(info["path"])))
            with video_display(quiet) as (on_start, on_progress, on_done):
                report = enhance_video(src, generator, options, info["config"].channels, info=source,
                                       on_start=on_start, on_progress=on_progress, on_notice=note)
                on_done(report.frames)
        except VideoInterrupted as stop:
            err_console.print(f"{interrupted()}: {stop}", highlight=False, soft_wrap=True, markup=False)
            raise typer.Exit(io.exit_code()) from None
        except KeyboardInterrupt:
            err_console.print(f"{interrupted()} before any frame was written; no file was left", highlight=False, markup=False)
            raise typer.Exit(io.exit_code()) from None
    if quiet:
        return
    console.print(
        f"video: {report.frames} frames in {report.seconds:.1f} s, {report.fps:.2f} frames/s end to end "
        f"(network alone {report.network_fps:.2f} frames/s) -> {report.out}",
        highlight=False, soft_wrap=True, markup=False,
    )
