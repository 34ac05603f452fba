"""Batches as columns: a DataFrame to a V2 table request, output columns back to answers.

The wire format is ``pyfunc_models.table`` (under our own content type, so MLServer
passes the raw request through instead of building a DataFrame).  Models that
score whole tables (``mlplatform.accepts_table``) validate and predict each
column at once and answer with one output per field; no JSON document per row
on either side.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

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


class TableAnswers(Sequence):
    """A table model's answers: its output columns, read as one answer dict per row,
    shaped like the model's per-row answer (``probability_<class>`` columns become the
    ``probabilities`` mapping).

    Why columns and not a list of dicts: the batch routes render the answers straight
    from the columns (``answer_rows.py``: 100,000 fraud answers in ~45 ms instead of
    ~150 ms through dicts), and the prediction log pickles columns to its writer process.
    Indexing, slicing and iterating give the per-row dicts for everything else
    (metrics, shadow comparisons, the log's rows).
    """

    def __init__(self, columns: Mapping[str, Any], rows: int):
        self.numeric = {name: getattr(values, "dtype", None) is not None
                        and values.dtype.kind in NUMERIC_KINDS
                        for name, values in columns.items()}
        self.columns = {name: _plain(values) for name, values in columns.items()}
        if any(len(values) != rows for values in self.columns.values()):
            raise ValueError(f"the model answered columns of other lengths than {rows} rows")
        self.rows = rows
        self.plain = [name for name in self.columns if not name.startswith(PROBABILITY_PREFIX)]
        self.per_class = [name for name in self.columns if name.startswith(PROBABILITY_PREFIX)]
        self.classes = [name[len(PROBABILITY_PREFIX):] for name in self.per_class]

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, index):
        if isinstance(index, slice):
            part = {name: values[index] for name, values in self.columns.items()}
            sliced = TableAnswers(part, len(range(*index.indices(self.rows))))
            sliced.numeric = self.numeric
            return sliced
        answer = {name: self.columns[name][index] for name in self.plain}
        if self.per_class:
            answer["probabilities"] = {cls: self.columns[name][index]
                                       for cls, name in zip(self.classes, self.per_class)}
        return answer

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        columns = self.columns
        if self.plain:
            answers = [dict(zip(self.plain, values))
                       for values in zip(*(columns[n] for n in self.plain))]
        else:
            answers = [{} for _ in range(self.rows)]
        if self.per_class:
            for answer, values in zip(answers, zip(*(columns[n] for n in self.per_class))):
                answer["probabilities"] = dict(zip(self.classes, values))
        return iter(answers)


NUMERIC_KINDS = "biuf"  # numpy kinds whose JSON holds no comma (bool, integers, floats)


def _plain(values: Any) -> List[Any]:
    """Python values (``tolist`` of a numpy column; text from raw BYTES decoded)."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    if values and isinstance(values[0], bytes):
        return [v.decode("utf-8", "replace") for v in values]
    return values
