"""A batch's answer as JSON: ``{"model", "version", "rows", ["metrics"], "results": [...]}``
with one object per row, ``{"row": i, <id fields>, ["label"], <the answer's fields>}``.

Two ways to the same bytes.  A table model's answers (``TableAnswers``) are rendered
from their columns: each column turned into JSON once, the rows filled into one
template.  Anything else goes through one dict per row.  Why: 100,000 fraud answers
took ~150 ms as dicts (built, merged, then rendered by orjson) and take ~45 ms from
the columns -- on a 2-core machine that was a quarter of ``/forward_batch``'s time
beside the model's (docs/benchmarks.md).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import orjson

from .directory import ServedModel
from .table import TableAnswers

OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def render(payload: Any) -> bytes:
    """JSON bytes, as ``ORJSONResponse`` would write them (for rendering in a thread)."""
    return orjson.dumps(payload, option=OPTIONS)


def opening(served: ServedModel, rows: int, metrics: Optional[Dict[str, Any]] = None) -> bytes:
    """The answer up to its results' first row: ``{"model":...,"results":[``."""
    head: Dict[str, Any] = {"model": served.name, "version": served.version, "rows": rows}
    if metrics is not None:
        head["metrics"] = metrics
    return render(head)[:-1] + b',"results":['


CLOSING = b"]}"


def rows_json(served: ServedModel, first: int, ids: Sequence[Dict[str, Any]],
              truth: Optional[Sequence[Any]], answers: Sequence[Any]) -> bytes:
    """The rows' objects, comma-separated, without the list's brackets; rows numbered from
    ``first``, ``truth`` (the labels) None for ``/forward_batch``."""
    if not answers:
        return b""
    if isinstance(answers, TableAnswers):
        names = _id_names(ids)
        before = {"row", *(names or ()), *(["label"] if truth is not None else [])}
        if names is not None and not before.intersection(answers.plain + ["probabilities"]):
            return _from_columns(first, ids, names, truth, answers)
    results = [{"row": first + i, **key, **({"label": truth[i]} if truth is not None else {}),
                **as_dict(shaped(served, answer))}
               for i, (key, answer) in enumerate(zip(ids, answers))]
    return render(results)[1:-1]


def shaped(served: ServedModel, answer: Any) -> Any:
    if served.output_format == "base64":
        return {"image": answer, "content_type": "image/png"}
    return answer


def as_dict(answer: Any) -> Dict[str, Any]:
    return answer if isinstance(answer, dict) else {"answer": answer}


def _id_names(ids: Sequence[Dict[str, Any]]) -> Optional[List[str]]:
    """The id fields every row has, or None when rows differ in them (then rows are
    rendered one by one)."""
    names = ids[0].keys() if ids else {}
    if set(map(len, ids)) - {len(names)} or (
            names and not all(key.keys() == names for key in ids)):
        return None
    return list(names)


def _from_columns(first: int, ids: Sequence[Dict[str, Any]], id_names: List[str],
                  truth: Optional[Sequence[Any]], answers: TableAnswers) -> bytes:
    fields = [("row", _numbers(range(first, first + len(answers))))]
    fields += [(name, _values([key[name] for key in ids])) for name in id_names]
    if truth is not None:
        fields.append(("label", _values(truth)))
    for name in answers.plain:
        fields.append((name, _column(answers, name)))
    template = b"{" + b",".join(_slot(name) for name, _ in fields)
    if answers.per_class:
        template += (b',"probabilities":{'
                     + b",".join(_slot(cls) for cls in answers.classes) + b"}")
        fields += [(name, _column(answers, name)) for name in answers.per_class]
    template += b"}"
    # one %-format over every row at once: the values interleaved row by row by slice
    # assignment (half the time of formatting row by row in a comprehension)
    width, count = len(fields), len(answers)
    interleaved: List[Any] = [None] * (width * count)
    for place, (_, values) in enumerate(fields):
        interleaved[place::width] = values
    return b",".join([template] * count) % tuple(interleaved)


def _slot(name: Any) -> bytes:
    return render(str(name)).replace(b"%", b"%%") + b":%s"


def _column(answers: TableAnswers, name: str) -> List[bytes]:
    values = answers.columns[name]
    return _numbers(values) if answers.numeric[name] else _values(values)


def _numbers(values: Sequence[Any]) -> List[bytes]:
    # numbers, true/false and null hold no comma: one orjson call for the whole column
    return render(list(values))[1:-1].split(b",")


def _values(values: Sequence[Any]) -> List[bytes]:
    if all(type(value) in COMMALESS for value in values):  # ids and labels: often numbers
        return _numbers(values)
    return [render(value) for value in values]


COMMALESS = (int, float, bool, type(None))
