"""Reading batch uploads: CSV tables, JSON lists, zips of images (with their labels).

Every problem with an upload is the sender's: a 400 naming the file and what is
wrong.  Zip entries with an absolute path or ``..`` are refused outright, and the
unpacked size is bounded (a small zip can inflate to gigabytes).
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Dict, List, Optional

import pandas as pd

from .errors import BadRequest, TooLarge
from .zip_directory import TooManyEntries, check_entries

LABELS_FILE = "labels.csv"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def unreadable_csv(filename: str, exc: Exception) -> BadRequest:
    return BadRequest(f"unreadable CSV {filename!r}: {str(exc).splitlines()[0]}", field="file")


def require_filled(frame: pd.DataFrame, column: str, filename: str) -> None:
    """400 naming the rows where ``column`` (an id or label column) has no value."""
    empty = frame.index[frame[column].isna()].tolist()
    if empty:
        rows = ", ".join(str(i) for i in empty[:10]) + (" ..." if len(empty) > 10 else "")
        raise BadRequest(f"{filename!r}: column {column!r} is empty in row(s) {rows} "
                         f"(rows counted from 0, header excluded)", field=column)


TABLE_VALUES = (str, int, float, bool, type(None))


def frame_of_records(rows: List[Dict[str, Any]]) -> pd.DataFrame:
    """JSON rows as a table, for a model that takes tables: every value a scalar."""
    for index, row in enumerate(rows):
        for column, value in row.items():
            if not isinstance(value, TABLE_VALUES):
                raise BadRequest(f"row {index}, column {column!r}: a JSON "
                                 f"{'list' if isinstance(value, list) else 'object'} is not a "
                                 "table value (a number, text, true/false or null)",
                                 field=str(column))
    return pd.DataFrame.from_records(rows)


def records_of(frame: pd.DataFrame) -> List[Dict[str, Any]]:
    """Rows as JSON-ready dicts (missing cells become null, numbers stay numbers)."""
    return [{k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
             for k, v in row.items()} for row in frame.to_dict(orient="records")]


def json_records(value: Any) -> List[Any]:
    if not isinstance(value, list) or not value:
        raise BadRequest("expected a non-empty JSON list of objects", field="body")
    return value


@dataclass
class ImageArchive:
    entries: List[tuple] = field(default_factory=list)  # (name, bytes), in archive order
    labels: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ZipLimits:
    """What one uploaded zip may unpack to, and how many entries it may hold (counted
    before ZipFile() parses its directory: zip_directory.py)."""

    unpacked_bytes: int
    entries: int = 10_000


def read_zip(data: bytes, filename: str, limits: ZipLimits) -> ImageArchive:
    max_unpacked = limits.unpacked_bytes
    try:
        check_entries(data, limits.entries)
    except TooManyEntries as exc:
        count = f"declares {exc.count}" if exc.declared else f"holds more than {exc.limit}"
        raise TooLarge(f"zip {filename!r} {count} entries; the gateway takes at most "
                       f"{exc.limit} (MLPLATFORM_GATEWAY_MAX_ZIP_ENTRIES)",
                       limit_entries=exc.limit) from None
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise BadRequest(f"unreadable zip {filename!r}: {exc}", field="file") from exc
    result, labels_csv, total = ImageArchive(), None, 0
    with archive:
        for info in archive.infolist():
            name = info.filename
            if _unsafe(name):
                raise BadRequest(f"zip entry {name!r} has an absolute path or '..'", field="file")
            if info.is_dir() or _ignored(name):
                continue
            if total + info.file_size > max_unpacked:  # what the header declares ...
                raise _too_large(filename, max_unpacked)
            try:
                content = _inflate(archive, info, max_unpacked - total, filename)
            except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, ValueError) as exc:
                raise BadRequest(f"zip entry {name!r} cannot be read: {exc}", field="file") from exc
            total += len(content)
            if PurePosixPath(name).name == LABELS_FILE and "/" not in name.strip("/"):
                labels_csv = content
            elif name.lower().endswith(IMAGE_SUFFIXES):
                result.entries.append((name, content))
    if not result.entries:
        raise BadRequest(f"zip {filename!r} holds no .png/.jpg images", field="file")
    result.labels = _labels(result.entries, labels_csv)
    return result


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, room: int, filename: str) -> bytes:
    """... and what really comes out, counted 1 MB at a time: a header that lies about the
    size (1.5 MB deflated to 1.5 GB, declared 1,000 bytes) is stopped at the limit.
    ``ZipFile.read`` would inflate up to 2 GB in one call before checking anything."""
    parts, seen = [], 0
    with archive.open(info) as entry:
        while chunk := entry.read(1 << 20):
            seen += len(chunk)
            if seen > room:
                raise _too_large(filename, None)
            parts.append(chunk)
    return b"".join(parts)


def _too_large(filename: str, limit: Optional[int]) -> TooLarge:
    return TooLarge(f"zip {filename!r} unpacks to more than the gateway accepts"
                    + (f" ({limit} bytes)" if limit else ""))


def _unsafe(name: str) -> bool:
    return (name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) is not None
            or ".." in PurePosixPath(name.replace("\\", "/")).parts)


def _ignored(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return parts[0] == "__MACOSX" or any(part.startswith(".") for part in parts)


def _labels(entries: List[tuple], labels_csv: Optional[bytes]) -> Dict[str, str]:
    """``labels.csv`` (columns file,label) if present, else the folder-per-class layout."""
    if labels_csv is not None:
        try:
            rows = list(csv.DictReader(io.StringIO(labels_csv.decode("utf-8-sig"))))
        except UnicodeDecodeError as exc:
            raise BadRequest(f"{LABELS_FILE} is not UTF-8 text", field="file") from exc
        if not rows or not {"file", "label"} <= set(rows[0]):
            raise BadRequest(f"{LABELS_FILE} needs the columns file,label", field="file")
        return {row["file"]: row["label"] for row in rows}
    if all("/" in name for name, _ in entries):
        return {name: PurePosixPath(name).parent.name for name, _ in entries}
    return {}
