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


def many_entries_zip(count: int, declared: int = -1) -> bytes:
    """``count`` empty stored entries (names 0, 1, ...) written directly: zipfile takes ~12 us
    an entry.  ZIP64 end records past 65,535 entries, as zipfile writes them.  ``declared``:
    the count the end records claim (default: the truth)."""
    declared = count if declared < 0 else declared
    local, central = bytearray(), bytearray()
    for index in range(count):
        name = str(index).encode()
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0,
                               0, len(name), 0, 0, 0, 0, 0, len(local)) + name
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0,
                             len(name), 0) + name
    start, size = len(local), len(central)
    tail = bytearray()
    if declared > 0xFFFF:
        end64 = start + size
        tail += struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, declared, declared,
                            size, start)
        tail += struct.pack("<4sLQL", b"PK\x06\x07", 0, end64, 1)
        short = (0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    else:
        short = (declared, size, start)
    tail += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, short[0], short[0], short[1],
                        short[2], 0)
    return bytes(local + central + tail)
