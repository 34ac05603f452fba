"""Tables on the V2 wire: one tensor per column, for batches of thousands of rows.

A request with the content type ``mlplatform_table`` carries one input per
column, all of the same length:

- numbers (and booleans) as ``FP64``; a missing value is NaN (``null`` in JSON);
- text dictionary-encoded: an ``INT32`` tensor of codes whose parameter
  ``mlplatform_categories`` is the JSON list of the column's distinct strings,
  code ``-1`` meaning missing.  Plain ``BYTES`` text columns are accepted too.

Why codes and not ``BYTES``: MLServer unpacks every ``BYTES`` element of a
gRPC request one by one in Python (108 ms for the two text columns of 100,000
transactions, measured here), while a code column is one ``struct.unpack``;
the JSON is smaller too.  Numbers travel as they are, so over gRPC a column is
its numpy buffer (``raw_input_contents``), little-endian as V2 specifies.

Over gRPC a column goes *packed*: one ``BYTES`` element holding the column's
little-endian buffer, its element datatype in the parameter ``mlplatform_packed``
(shape ``[1]``).  Why: MLServer turns every raw tensor into a Python list
(``struct.unpack``) that the codec then turns back into an array -- 8 ms of
MLServer's time per 20,000 transactions, on the batch's critical path; a packed
column is one memory copy and ``np.frombuffer``.  It is still plain V2 (any V2
server carries a ``BYTES`` tensor unchanged); over REST columns stay JSON lists.

The same module encodes (gateway) and decodes (the model's codec), so the two
ends cannot drift apart.  It needs numpy and pandas, never MLServer.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
import pandas as pd

from .wire import BYTES, TABLE

__all__ = ["CATEGORIES", "PACKED", "TABLE", "TableColumn", "encode_frame", "decode_columns",
           "from_raw", "to_raw"]

CATEGORIES = "mlplatform_categories"
PACKED = "mlplatform_packed"
CODES = "INT32"
NUMBERS = "FP64"

# V2 datatypes with a fixed width, as little-endian numpy dtypes (raw tensor contents).
_DTYPES = {
    "BOOL": np.dtype("?"), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}


class TableError(ValueError):
    """A table tensor does not hold what this format requires; the message names the column."""


@dataclass
class TableColumn:
    """One column as one V2 tensor."""

    name: str
    datatype: str
    values: np.ndarray
    categories: Optional[List[str]] = None

    def parameters(self) -> Dict[str, str]:
        if self.categories is None:
            return {}
        return {CATEGORIES: json.dumps(self.categories, ensure_ascii=False)}

    def as_json(self) -> Dict[str, Any]:
        """The V2 REST (JSON) input; NaN becomes ``null``."""
        tensor: Dict[str, Any] = {"name": self.name, "shape": [len(self.values)],
                                  "datatype": self.datatype}
        if self.datatype == NUMBERS:
            tensor["data"] = [None if v != v else v for v in self.values.tolist()]
        else:
            tensor["data"] = self.values.tolist()
        if self.categories is not None:
            tensor["parameters"] = self.parameters()
        return tensor

    def raw(self) -> bytes:
        """The V2 gRPC ``raw_input_contents`` element."""
        return to_raw(self.values, self.datatype)

    def packed(self) -> Tuple[Dict[str, str], bytes]:
        """The column packed for gRPC: the ``BYTES`` tensor's parameters and its raw
        contents (one length-prefixed element: the column's buffer)."""
        return {**self.parameters(), PACKED: self.datatype}, to_raw([self.raw()], BYTES)

    def rows(self, start: int, stop: int) -> "TableColumn":
        """Rows ``start:stop``; a text column carries only the strings those rows use."""
        values = self.values[start:stop]
        if self.categories is None:
            return TableColumn(self.name, self.datatype, values)
        used, codes = np.unique(values, return_inverse=True)
        missing = used[0] == -1 if len(used) else False
        codes = (codes - 1 if missing else codes).astype(np.int32)  # -1 stays -1
        kept = [self.categories[code] for code in used[1:]] if missing else \
            [self.categories[code] for code in used]
        return TableColumn(self.name, self.datatype, codes, kept)

    def nbytes(self) -> int:
        """About what the column weighs on the wire: its values plus its strings."""
        text = sum(len(value.encode()) + 4 for value in self.categories or ())
        return int(self.values.nbytes) + text


def encode_frame(frame: pd.DataFrame) -> List[TableColumn]:
    """A DataFrame as table columns: numbers and booleans as FP64, anything else as text codes."""
    columns = []
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            columns.append(TableColumn(str(name), NUMBERS, values))
        else:
            codes, distinct = pd.factorize(series, use_na_sentinel=True)
            columns.append(TableColumn(str(name), CODES, codes.astype(np.int32),
                                       [str(value) for value in distinct]))
    return columns


def decode_columns(tensors: Iterable[Any]) -> Dict[str, np.ndarray]:
    """Tensors of a table request (MLServer ``RequestInput``s) as one 1-d array per column.

    Text columns come back as object arrays of ``str`` (``None`` where missing),
    number columns as float64 (NaN where missing).
    """
    columns: Dict[str, np.ndarray] = {}
    for tensor in tensors:
        datatype, data = tensor.datatype, tensor.data.root
        packed = _parameter(tensor, PACKED)
        if packed is not None:
            datatype, data = packed, _unpacked(tensor.name, packed, data)
        columns[tensor.name] = _decode_column(tensor.name, datatype, data,
                                              _parameter(tensor, CATEGORIES))
    lengths = {len(column) for column in columns.values()}
    if len(lengths) > 1:
        raise TableError(f"table columns differ in length: {sorted(lengths)}")
    return columns


def _parameter(tensor: Any, name: str) -> Optional[str]:
    parameters = getattr(tensor, "parameters", None)
    extra = getattr(parameters, "model_extra", None) or {}
    return extra.get(name)


def _unpacked(name: str, datatype: str, data: Any) -> np.ndarray:
    """A packed column's values: its one ``BYTES`` element read as ``datatype``."""
    if datatype not in _DTYPES:
        raise TableError(f"column {name!r}: {PACKED} must be a fixed-width V2 datatype, "
                         f"not {datatype!r}")
    if not (isinstance(data, list) and len(data) == 1 and isinstance(data[0], bytes)):
        raise TableError(f"column {name!r}: a packed column is one raw BYTES element "
                         "(gRPC raw contents)")
    if len(data[0]) % _DTYPES[datatype].itemsize:
        raise TableError(f"column {name!r}: {len(data[0])} bytes are not whole "
                         f"{datatype} values")
    # a copy (~20 us for 20,000 numbers): a model may change its columns in place, and
    # an array over the request's bytes is read-only
    return np.frombuffer(data[0], dtype=_DTYPES[datatype]).copy()


def _decode_column(name: str, datatype: str, data: Any,
                   categories: Optional[str]) -> np.ndarray:
    if categories is not None:
        try:
            distinct = json.loads(categories)
        except ValueError as exc:
            raise TableError(f"column {name!r}: {CATEGORIES} is not a JSON list ({exc})") from exc
        if not isinstance(distinct, list):
            raise TableError(f"column {name!r}: {CATEGORIES} is not a JSON list")
        try:
            codes = np.asarray(data, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise TableError(f"column {name!r}: codes must be integers ({exc})") from exc
        if codes.size and (codes.min() < -1 or codes.max() >= len(distinct)):
            raise TableError(f"column {name!r}: codes must be between -1 and "
                             f"{len(distinct) - 1}")
        lookup = np.array([*distinct, None], dtype=object)  # code -1 picks the trailing None
        return lookup[codes]
    values = data if isinstance(data, (list, np.ndarray)) else [data]
    if datatype == BYTES:
        return np.array([v.decode() if isinstance(v, bytes) else v for v in values],
                        dtype=object).reshape(-1)
    try:
        return np.asarray(values, dtype=np.float64).reshape(-1)  # None -> NaN
    except (TypeError, ValueError) as exc:
        raise TableError(f"column {name!r}: not numbers ({exc})") from exc


def to_raw(values: Any, datatype: str) -> bytes:
    """A tensor's contents as V2 raw bytes: little-endian, row-major; BYTES length-prefixed."""
    if datatype == BYTES:
        parts = []
        for value in np.asarray(values, dtype=object).reshape(-1):
            data = value if isinstance(value, bytes) else str(value).encode()
            parts.append(struct.pack("<I", len(data)) + data)
        return b"".join(parts)
    return np.ascontiguousarray(values, dtype=_dtype(datatype)).tobytes()


def from_raw(raw: bytes, datatype: str) -> np.ndarray:
    """The inverse of ``to_raw``: a 1-d array (BYTES as an object array of ``bytes``)."""
    if datatype != BYTES:
        return np.frombuffer(raw, dtype=_dtype(datatype))
    items, offset = [], 0
    while offset < len(raw):
        (size,) = struct.unpack_from("<I", raw, offset)
        items.append(raw[offset + 4:offset + 4 + size])
        offset += 4 + size
    return np.array(items, dtype=object)


def _dtype(datatype: str) -> np.dtype:
    try:
        return _DTYPES[datatype]
    except KeyError:
        raise TableError(f"datatype {datatype!r} has no raw form") from None
