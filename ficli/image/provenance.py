"""The record of how an output was made, written into it and read back.

A record is a plain dict (JSON): ficli's name and version, the command, the model file's name and
SHA-256, the blur scale told the model and how it was chosen, the upscale, the normalisation
percentiles and the lo/hi values they gave (in the input's units), the tile settings, the device
and precision, the date and the input file's name. `enhance` and `video` write it into every output
(`io.write_image(record=...)`: a TIFF's ImageDescription, its ImageJ Info or an OME
CommentAnnotation; a PNG iTXt chunk; the video's `comment` tag), into `ficli-run.json` for a batch,
and the Python API returns it. `read_image_record` reads it back from an image file (`ficli info`).
Plain Python: no numpy, no torch.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from importlib import metadata
from pathlib import Path

from ficli.image import png, tiff
from ficli.image.files import printable, remove_stale_parts, write_text  # noqa: F401 (remove_stale_parts: for callers)

KEY = "ficli-provenance"  # the PNG keyword, the ImageJ Info line's prefix, the OME annotation's namespace
RUN_FILE = "ficli-run.json"


def version() -> str:
    try:
        return metadata.version("ficli")
    except metadata.PackageNotFoundError:
        return "unknown"


def software() -> str:
    """What an output's Software tag says: "ficli 0.1.0"."""
    return f"ficli {version()}"


def sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def model_fields(path: Path | str | None, hashes: dict | None = None) -> dict:
    """The model's part of a record: file name and SHA-256 (`hashes` caches them by path); a model
    built in memory (no file) is named as such."""
    if path is None or not Path(path).is_file():
        return {"model": str(path) if path else "(in memory)", "model_sha256": None}
    path = Path(path)
    if hashes is None:
        return {"model": printable(path.name), "model_sha256": sha256(path)}
    if str(path) not in hashes:
        hashes[str(path)] = sha256(path)
    return {"model": printable(path.name), "model_sha256": hashes[str(path)]}


def base(command: str, **fields) -> dict:
    """A record's common fields, then `fields` (None values dropped)."""
    record = {"software": "ficli", "version": version(), "command": command, "date": now()}
    record.update({k: v for k, v in fields.items() if v is not None})
    return record


def to_text(record: dict) -> str:
    """One line of JSON, ASCII only (TIFF tags and ffmpeg metadata hold it as it is)."""
    return json.dumps(record, ensure_ascii=True, sort_keys=False, separators=(", ", ": "))


def from_text(text: str) -> dict | None:
    """The record in `text` (JSON, or an ImageJ Info block holding a `KEY: {...}` line); None if none."""
    for line in [text, *text.splitlines()]:
        line = line.strip()
        if line.startswith(KEY + ":"):
            line = line[len(KEY) + 1 :].strip()
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except ValueError:
                continue
            if isinstance(found, dict) and found.get("software") == "ficli":
                return found
    return None


def read_image_record(path: Path | str) -> dict | None:
    """The record in an image file ficli wrote (TIFF or PNG); None when it holds none."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        text = tiff.read_record_text(path, KEY)
    elif suffix == ".png":
        text = png.texts(path.read_bytes()).get(KEY)
    elif suffix in (".jpg", ".jpeg"):
        text = next((c for c in jpeg_comments(path.read_bytes()) if c.startswith(KEY + ":")), None)
    else:
        return None
    return from_text(text) if text else None


def jpeg_with_comment(raw: bytes, text: str) -> bytes:
    """A JPEG file `raw` with a COM segment `KEY: text` after its SOI and APP0 (JFIF) segments."""
    data = f"{KEY}: {text}".encode("ascii", "backslashreplace")[:65533]
    at = 2
    if raw[2:4] == b"\xff\xe0":  # JFIF's APP0 must stay first
        at = 4 + int.from_bytes(raw[4:6], "big")
    return raw[:at] + b"\xff\xfe" + (len(data) + 2).to_bytes(2, "big") + data + raw[at:]


def jpeg_comments(raw: bytes) -> list[str]:
    """The COM segments of a JPEG file before its image data, as text."""
    found, i = [], 2
    while i + 4 <= len(raw) and raw[i] == 0xFF and raw[i + 1] not in (0xD9, 0xDA):
        length = int.from_bytes(raw[i + 2 : i + 4], "big")
        if raw[i + 1] == 0xFE:
            found.append(raw[i + 4 : i + 2 + length].decode("latin-1"))
        i += 2 + length
    return found


def write_run_file(folder: Path | str, run: dict, records: list[dict], name: str = RUN_FILE) -> Path:
    """Write `run` (`base` fields and the options) with the `records` of its files as `folder`/`name`,
    atomically. The records of an earlier run there whose outputs this run did not write (a run
    resumed with --skip-existing) are kept, before this run's."""
    path = Path(folder) / name
    written = {r.get("output") for r in records}
    earlier: list = []
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(old, dict) and old.get("software") == "ficli" and isinstance(old.get("files"), list):
            earlier = [r for r in old["files"] if isinstance(r, dict) and r.get("output") not in written]
    except (OSError, ValueError):
        pass
    write_text(path, json.dumps({**run, "files": earlier + records}, indent=2, ensure_ascii=False) + "\n")
    return path
