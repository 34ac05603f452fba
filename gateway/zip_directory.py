"""A zip's entry count, read from its end records before anything parses its directory.

``zipfile.ZipFile()`` builds a ``ZipInfo`` for every central-directory entry before a
caller can look at one: 300,000 empty entries (a 26 MB body) cost +149 MB and 2.2 s of
a core, a 128 MB body several times that, unauthenticated (docs/benchmarks.md, hostile
uploads).  ``check_entries`` reads what the end-of-central-directory record (and the
ZIP64 one, when present) declares, then walks the directory's fixed-size headers
itself, stopping at ``limit`` + 1: ``zipfile`` walks the directory by its *size*, not
by the declared count, so a record that lies about the count is caught too.  Nothing
is allocated per entry.
"""
from __future__ import annotations

import struct
from typing import Optional, Tuple

END = b"PK\x05\x06"              # end of central directory record (22 bytes + comment)
END64_LOCATOR = b"PK\x06\x07"    # ZIP64 end of central directory locator (20 bytes)
END64 = b"PK\x06\x06"            # ZIP64 end of central directory record (56 bytes + data)
CENTRAL = b"PK\x01\x02"          # one central directory header (46 bytes + name, extra, comment)
MAX_COMMENT = 0xFFFF


class TooManyEntries(Exception):
    def __init__(self, count: int, limit: int, declared: bool):
        super().__init__(count, limit, declared)
        self.count, self.limit, self.declared = count, limit, declared


def end_records(data: bytes) -> Optional[Tuple[int, int, int]]:
    """(entries declared, directory size, directory end) or None when ``data`` has no end
    record (not a zip: the caller's own parser says so in its words)."""
    position = data.rfind(END, max(0, len(data) - 22 - MAX_COMMENT))
    if position < 0 or position + 22 > len(data):
        return None
    entries, size = struct.unpack_from("<HI", data, position + 10)
    directory_end = position
    locator = position - 20
    if locator >= 0 and data[locator:locator + 4] == END64_LOCATOR:
        (record,) = struct.unpack_from("<Q", data, locator + 8)
        # The record sits just before the locator; its offset field counts from the
        # archive's first byte, which may not be ours (data prepended): trust the position.
        record = locator - 56 if data[locator - 56:locator - 52] == END64 else record
        if 0 <= record <= len(data) - 56 and data[record:record + 4] == END64:
            entries, size = struct.unpack_from("<QQ", data, record + 32)
            directory_end = record
    return entries, size, directory_end


def check_entries(data: bytes, limit: int) -> None:
    """Raise ``TooManyEntries`` when the zip declares or holds more than ``limit`` entries."""
    found = end_records(data)
    if found is None:
        return
    declared, size, directory_end = found
    if declared > limit:
        raise TooManyEntries(declared, limit, declared=True)
    position = max(0, directory_end - size)
    walked = 0
    while position + 46 <= directory_end and data[position:position + 4] == CENTRAL:
        walked += 1
        if walked > limit:
            raise TooManyEntries(walked, limit, declared=False)
        name, extra, comment = struct.unpack_from("<HHH", data, position + 28)
        position += 46 + name + extra + comment
