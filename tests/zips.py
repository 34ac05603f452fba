"""Zip archives for the upload tests, honest and not."""
from __future__ import annotations

import io
import struct
import zipfile


def zip_of(entries) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries:
            archive.writestr(name, content)
    return buffer.getvalue()


def lying_zip(actual_bytes: int, declared_bytes: int, name: str = "bomb.png") -> bytes:
    """One deflated entry of ``actual_bytes`` zeros whose headers (local and central)
    declare ``declared_bytes``: the hardening issue's 1.5 MB -> 1.5 GB zip, scaled."""
    data = bytearray(zip_of([(name, bytes(actual_bytes))]))
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, declared_bytes)     # uncompressed size
    struct.pack_into("<I", data, central + 24, declared_bytes)
    return bytes(data)
