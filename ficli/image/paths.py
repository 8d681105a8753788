"""Which files to read and where their results go: inputs from files, folders, globs and lists,
output paths mirrored under --out, and the checks made on both before any work is done.

`collect_inputs` expands what was given into `InputFile`s (each with the path below its folder
that is mirrored under --out); `output_path` names each result; `check_output_dir`,
`refuse_existing` and `check_input_file` refuse, before anything is read or loaded, what would
overwrite an input, clobber an earlier result or cannot be used. Plain Python: no numpy, no torch.
"""

from __future__ import annotations

import glob
import os
import stat
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from ficli.errors import ConfigError, InputError, OutputError
from ficli.image.files import check_writable, first_line
from ficli.image.guard import file_key

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class InputFile:
    """An input image and its path relative to the folder it was found in (mirrored under --out).

    `root` is that folder (the named file's folder, the named folder, a glob's fixed prefix); `rel`
    starts with part of the root's own path where two inputs would otherwise share an output name.
    """

    path: Path
    rel: Path
    root: Path | None = None

    @property
    def source_root(self) -> Path:
        """The folder this input was found in, resolved."""
        if self.root is not None:
            return self.root.resolve()
        root = self.path.resolve().parent
        for _ in self.rel.parts[1:]:
            root = root.parent
        return root


def collect_inputs(inputs: list[str | Path], *, recursive: bool = False, stdin=None, on_note=None) -> list[InputFile]:
    """Expand files, folders, glob patterns and lists of them into image files, each with its path to mirror.

    A file keeps its name; a folder's images keep their path inside the folder; a glob's matches keep
    their path below the pattern's fixed prefix. Where two inputs would still share a name (x.png
    from folders A and B), every input's folder is mirrored too, from the folder they have in
    common: A/x.png and B/x.png. `-` reads paths from `stdin` (default: standard input) and `@FILE`
    from FILE (see `expand_lists`). Non-image files inside folders are passed over (folders often
    hold notes and metadata); a named file that is not an image is an error. Hidden files (ficli's
    own unfinished writes among them) are ignored. A file reached twice (named twice, or by a
    symlink or hard link besides its own name) is done once, under the name met first;
    `on_note(message)` is told which names were passed over.
    """
    found: _Found = _Found(on_note)
    for text in expand_lists(inputs, stdin):
        path = Path(text)
        if glob.has_magic(text) and not path.exists():
            base = _glob_base(text)
            matches = sorted(Path(p) for p in glob.glob(text, recursive=recursive))
            images = [p for p in matches if p.is_file() and _is_image_name(p)]
            if not images:
                raise InputError(f"{text}: the pattern matches no image files")
            for p in images:
                below = p.is_relative_to(base)
                found.add(InputFile(p, p.relative_to(base) if below else Path(p.name), base if below else p.parent))
        elif path.is_dir():
            images = list(_walk_images(path, recursive))
            if not images:
                hint = "" if recursive else " (add --recursive to look in subfolders)"
                raise InputError(f"{path}: no images found ({', '.join(IMAGE_SUFFIXES)}){hint}")
            for p in images:
                found.add(InputFile(p, p.relative_to(path), path))
        elif path.is_file():
            if not _is_image_name(path):
                raise InputError(f"{path}: not a supported image type (use {', '.join(IMAGE_SUFFIXES)})")
            found.add(InputFile(path, Path(path.name), path.parent))
        elif os.path.lexists(path) and path.exists():
            raise InputError(f"{path}: is {special_kind(path)}, not an image file; ficli reads regular files: copy the data into one")
        else:
            flag = " (a flag such as --recursive takes no value: write it alone)" if text.strip().lower() in FLAG_WORDS else ""
            raise InputError(f"{path}: no such file or folder{flag}")
    return _mirror_clashes(list(found.items.values()))


class _Found:
    """The inputs found so far, one per file (`file_key`: a link and its target are one file)."""

    def __init__(self, on_note=None):
        self.items: dict[tuple, InputFile] = {}
        self.on_note = on_note

    def add(self, item: InputFile) -> None:
        first = self.items.setdefault(file_key(item.path), item)
        if first is not item and self.on_note is not None and os.path.abspath(first.path) != os.path.abspath(item.path):
            self.on_note(f"{item.path}: is the same file as {first.path} (the two names reach one file "
                         f"through a link); it is done once, under the name {first.path.name}")


def _mirror_clashes(items: list[InputFile]) -> list[InputFile]:
    """Where two inputs share a relative path (ignoring case, which some disks ignore), prefix every
    input's path with its folder's path below the folder all the inputs' folders have in common."""
    names = Counter(item.rel.as_posix().casefold() for item in items)
    if all(count == 1 for count in names.values()):
        return items
    roots = [Path(os.path.abspath(item.root)) for item in items]
    common = Path(os.path.commonpath(roots))
    return [replace(item, rel=root.relative_to(common) / item.rel) for item, root in zip(items, roots)]


def expand_lists(inputs: list[str | Path], stdin=None) -> list[str]:
    """The inputs with `-` replaced by the paths read from `stdin` (default: standard input) and
    `@FILE` by the paths in FILE: one a line, surrounding spaces dropped, blank lines and lines
    starting with # skipped, relative paths taken from the current folder, as on the command line.
    Listed paths that do not exist are refused together, each with its line number. (A file whose
    name starts with @ is given as ./@name.)"""
    expanded: list[str] = []
    for item in inputs:
        text = str(item)
        if text == "-" or (text.startswith("@") and len(text) > 1):
            expanded += _read_list(text, stdin)
        else:
            expanded.append(text)
    return expanded


def _read_list(text: str, stdin) -> list[str]:
    if text == "-":
        source, name = (sys.stdin if stdin is None else stdin), "standard input (-)"
        raw = _read_stdin(source)
    else:
        path, name = Path(text[1:]), text[1:]
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{path}: no such file (the list of inputs given as {text})") from None
        except OSError as exc:
            raise InputError(f"{path}: the list of inputs given as {text} cannot be read ({first_line(exc)})") from None
    if isinstance(raw, bytes):  # names in the file system's encoding, undecodable bytes kept
        raw = raw.removeprefix(b"\xef\xbb\xbf").decode(sys.getfilesystemencoding(), "surrogateescape")
    raw = raw.removeprefix("\ufeff")  # a UTF-8 byte-order mark (Windows editors write one) is no part of a path
    entries, missing = [], []
    for number, line in enumerate(raw.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entries.append(line)
        if not os.path.lexists(line) and not glob.has_magic(line):
            missing.append(f"{line} (line {number})")
    if missing:
        shown = ", ".join(missing[:10]) + (f", … and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise InputError(f"{name}: {len(missing)} listed path(s) do not exist: {shown}")
    if not entries:
        raise InputError(f"{name}: lists no paths (blank lines and # comments are skipped)")
    return entries


def _read_stdin(source) -> bytes | str:
    """What `-` names: all of standard input; InputError when there is none to read (closed with
    `<&-`, or a daemon's None), not an AttributeError."""
    advice = "pipe the paths in, one a line (e.g. `ls *.tif | ficli enhance - --out OUT`), or name the files"
    if source is None or getattr(source, "closed", False):
        raise InputError(f"standard input (-): is closed, so no paths can be read from it; {advice}")
    try:
        return source.buffer.read() if hasattr(source, "buffer") else source.read()
    except (OSError, ValueError) as exc:  # EBADF on a closed descriptor; ValueError on a closed file object
        raise InputError(f"standard input (-): cannot be read ({first_line(exc)}); {advice}") from None


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if glob.has_magic(p))]]
    return Path(*fixed) if fixed else Path(".")


FLAG_WORDS = ("true", "false", "yes", "no", "on", "off")  # what a user types after a flag that takes no value


def skipped_subfolders(inputs: list[str | Path], recursive: bool) -> list[Path]:
    """The subfolders, one level below the folders named in `inputs`, that hold images (at any depth)
    which a run without `recursive` passes over: what to tell the user. Empty with `recursive`."""
    if recursive:
        return []
    skipped = []
    for text in inputs:
        path = Path(text)
        if str(text) == "-" or str(text).startswith("@") or not path.is_dir():
            continue
        try:
            with os.scandir(path) as entries:
                subfolders = sorted(Path(e.path) for e in entries if e.is_dir() and not e.name.startswith("."))
        except OSError:  # unreadable: collect_inputs has said what it could
            continue
        skipped += [sub for sub in subfolders if next(_walk_images(sub, True), None) is not None]
    return skipped


def _walk_images(root: Path, recursive: bool):
    """Images under `root` in a stable order; followed folder links are visited once (no loops)."""
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in sorted(files):
            p = Path(folder, name)
            if _is_image_name(p) and p.is_file():
                yield p


def output_path(item: InputFile, out_dir: Path, suffix: str | None = None, name_suffix: str = "") -> Path:
    """Where the result for `item` goes: its relative path mirrored under `out_dir`, with the file
    extension `suffix` if given and `name_suffix` added before the extension (x.png -> x_sr.png)."""
    rel = item.rel.with_suffix(suffix) if suffix else item.rel
    if name_suffix:
        stem, extension = split_extension(rel.name)
        rel = rel.with_name(stem + name_suffix + extension)
    return Path(out_dir) / rel


def split_extension(name: str) -> tuple[str, str]:
    """("cells", ".ome.tif") for cells.ome.tif, ("x", ".png") for x.png: OME-TIFF's double extension kept."""
    lower = name.lower()
    for double in (".ome.tif", ".ome.tiff"):
        if lower.endswith(double) and len(name) > len(double):
            return name[: -len(double)], name[-len(double):]
    extension = Path(name).suffix
    return name[: len(name) - len(extension)], extension


def check_name_suffix(text: str) -> None:
    """ConfigError for a --suffix that is not part of a file name (it holds a folder separator or NUL)."""
    if any(c in text for c in ("/", "\\", "\0", os.sep)):
        raise ConfigError(
            f"--suffix {text!r}: holds a folder separator (/ or \\) or NUL; it is added to each output "
            "name before its extension (x.png -> x_sr.png with --suffix _sr), so give text only"
        )


def refuse_existing(paths, *, overwrite: bool = False, skip_existing: bool = False, skippable: bool = True) -> None:
    """One rule for every command that writes files: OutputError naming an existing output unless
    --overwrite (replace it) or --skip-existing (leave it; `skippable`: the command has it) was given.
    Called before any work is done."""
    if overwrite or skip_existing:
        return
    paths = [Path(p) for p in paths]
    existing = [p for p in paths if os.path.lexists(p)]
    if not existing:
        return
    one = len(existing) == 1
    how = f"use --overwrite to replace {'it' if one else 'them'}"
    if skippable:
        how += f", --skip-existing to leave {'it' if one else 'them'} and do the rest,"
    how += " or choose another output; nothing was done"
    if len(paths) == 1:
        raise OutputError(f"{existing[0]}: exists already; {how}")
    count = f"all {len(paths)}" if len(existing) == len(paths) else f"{len(existing)} of the {len(paths)}"
    raise OutputError(f"{count} outputs exist already (e.g. {existing[0]}); {how}")


# Names --model takes for the shipped models besides a path (a file of that name, if there is one, wins).
SHIPPED_MODELS = {"paper": "ficli-paper.safetensors", "noise-kept": "ficli-noise-kept.safetensors",
                  "deconvolve": "ficli-deconvolve.safetensors"}


def check_model_file(path: Path | str) -> None:
    """`check_input_file` for a --model value, which may also name a shipped model (`SHIPPED_MODELS`)."""
    if str(path) in SHIPPED_MODELS and not Path(path).exists():
        return
    check_input_file(path)


def special_kind(path: Path) -> str:
    """What a path that is neither a file nor a folder is, in words ("a named pipe (FIFO)")."""
    mode = os.stat(path).st_mode
    kinds = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((words for test, words in kinds if test(mode)), "not a regular file")


def check_input_file(path: Path | str) -> None:
    """InputError naming `path` unless it is a file this process can open (a video, a model...)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: not a file")
    if not path.is_file():
        raise InputError(f"{path}: is {special_kind(path)}, not a file; ficli reads regular files: copy the data into one")
    try:  # a decoder's own message for an unreadable file is vague; say it plainly first
        with open(path, "rb"):
            pass
    except PermissionError:
        raise InputError(f"{path}: permission denied; check the file's read permission") from None


def check_output_dir(out_dir: Path, inputs: list[InputFile], *, recursive: bool) -> None:
    """Refuse an output folder whose results could overwrite or be mistaken for inputs, or that
    cannot be written (before any work is done)."""
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder; choose a folder for --out")
    for item in inputs:
        src_root = item.source_root
        if out == src_root:
            raise OutputError(f"{out_dir}: is the input folder; results would overwrite the inputs — choose another --out")
        if recursive and out.is_relative_to(src_root):
            raise OutputError(
                f"{out_dir}: lies inside the input folder {src_root} searched with --recursive; "
                "a rerun would read the results as inputs — choose a folder outside it"
            )
    check_writable(out_dir)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """(I, N) of a --shard I/N (1 <= I <= N), None for None; ConfigError saying what is wrong."""
    if text is None:
        return None
    parts = str(text).split("/")
    try:
        i, n = (int(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        i = n = None
    if i is None or n is None or n < 1 or not 1 <= i <= n:
        hint = ("; shards count from 1: for a SLURM --array=0-(N-1) give $((SLURM_ARRAY_TASK_ID + 1))/N"
                if i == 0 and n else "")
        raise ConfigError(f"--shard {text!r}: give I/N, the I-th of N parts, 1 <= I <= N (e.g. 3/10){hint}")
    return i, n


def shard_part(items: list, shard: tuple[int, int] | None, key=None) -> list:
    """The I-th of N disjoint parts of `items` (every N-th in a fixed order, from the I-th): the same
    list gives the same parts on every machine and run, whatever order it was listed in, so N jobs
    given the same inputs cover each exactly once. The order is `key` (default: the item's path below
    its folder, as mirrored under --out, then its full path)."""
    if shard is None:
        return list(items)
    i, n = shard
    key = key or (lambda item: (item.rel.as_posix(), str(item.path)))
    return sorted(items, key=key)[i - 1 :: n]
