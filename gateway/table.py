"""Batches as columns: a DataFrame to a V2 table request, output columns back to answers.

The wire format is ``pyfunc_models.table`` (under our own content type, so MLServer
passes the raw request through instead of building a DataFrame).  Models that
score whole tables (``mlplatform.accepts_table``) validate and predict each
column at once and answer with one output per field; no JSON document per row
on either side.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from mlplatform.pyfunc_models.conventions import PROBABILITY_PREFIX
from mlplatform.pyfunc_models.table import TABLE, TableColumn


def table_request(columns: Sequence[TableColumn]) -> Dict[str, Any]:
    """The V2 REST (JSON) body of a table request."""
    return {"parameters": {"content_type": TABLE},
            "inputs": [column.as_json() for column in columns]}


# Sends one table request; answers its output columns by name (V2Upstream, GrpcUpstream).
InferTable = Callable[[str, Sequence[TableColumn], Optional[str]], Awaitable[Mapping[str, Any]]]


async def infer_in_parts(infer_table: InferTable, model: str, columns: Sequence[TableColumn],
                         version: Optional[str], max_request_bytes: int) -> Dict[str, Any]:
    """A table as requests of at most ``max_request_bytes`` of column data each, one after
    the other, the answers joined back in row order.

    A CSV of small numbers grows ~4x as binary float64 columns; parts keep every
    request under the server's message limit and bound its memory.
    """
    rows = len(columns[0].values) if columns else 0
    row_bytes = max(1, sum(column.nbytes() for column in columns) // max(1, rows))
    per_request = max(1, max_request_bytes // row_bytes)
    if rows <= per_request:
        return dict(await infer_table(model, columns, version))
    parts = []
    for start in range(0, rows, per_request):
        part = [column.rows(start, start + per_request) for column in columns]
        parts.append(await infer_table(model, part, version))
    names = list(parts[0])
    if any(list(part) != names for part in parts):
        raise ValueError("the model answered parts of one table with different outputs")
    return {name: np.concatenate([np.asarray(part[name]) for part in parts]) for name in names}


def output_columns(body: Dict[str, Any]) -> Dict[str, List[Any]]:
    """A V2 REST answer's outputs by name."""
    return {output["name"]: output["data"] for output in body.get("outputs", [])}


def table_answers(columns: Mapping[str, Any], rows: int) -> List[Dict[str, Any]]:
    """One answer dict per row, shaped like the model's per-row answer.

    ``columns`` are the model's outputs (lists or numpy arrays); output columns
    ``probability_<class>`` become the ``probabilities`` mapping.
    """
    columns = {name: _plain(values) for name, values in columns.items()}
    if any(len(values) != rows for values in columns.values()):
        raise ValueError(f"the model answered columns of other lengths than {rows} rows")
    plain = [name for name in columns if not name.startswith(PROBABILITY_PREFIX)]
    per_class = [name for name in columns if name.startswith(PROBABILITY_PREFIX)]
    classes = [name[len(PROBABILITY_PREFIX):] for name in per_class]
    if plain:
        answers = [dict(zip(plain, values)) for values in zip(*(columns[n] for n in plain))]
    else:
        answers = [{} for _ in range(rows)]
    if per_class:
        for answer, values in zip(answers, zip(*(columns[n] for n in per_class))):
            answer["probabilities"] = dict(zip(classes, values))
    return answers


def _plain(values: Any) -> List[Any]:
    """Python values (``tolist`` of a numpy column; text from raw BYTES decoded)."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    if values and isinstance(values[0], bytes):
        return [v.decode("utf-8", "replace") for v in values]
    return values
