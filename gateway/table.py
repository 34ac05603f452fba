"""Batches as columns: a DataFrame to a V2 table request, output columns back to answers.

One input per column, numbers as ``FP64``, text as ``BYTES`` (the layout of
MLServer's ``pd`` tables, under our own content type so MLServer passes the raw
request through instead of building a DataFrame).  Models that score whole tables
(``mlplatform.accepts_table``) validate and predict each column at once and
answer with one output per field; no JSON document per row on either side.
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import pandas as pd

from pyfunc_models.wire import TABLE

PROBABILITY_PREFIX = "probability_"


def table_request(frame: pd.DataFrame, name: str) -> Dict[str, Any]:
    inputs = []
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)  # NaN travels as null
            inputs.append({"name": str(column), "shape": [len(frame)], "datatype": "FP64",
                           "data": values})
        else:
            text = series.astype(object).where(series.notna(), None).tolist()
            inputs.append({"name": str(column), "shape": [len(frame)], "datatype": "BYTES",
                           "data": [None if v is None else str(v) for v in text]})
    return {"parameters": {"content_type": TABLE}, "inputs": inputs}


def table_answers(body: Dict[str, Any], rows: int) -> List[Dict[str, Any]]:
    """One answer dict per row, shaped like the model's per-row answer.

    Output columns ``probability_<class>`` become the ``probabilities`` mapping.
    """
    columns = {output["name"]: output["data"] for output in body.get("outputs", [])}
    if any(len(values) != rows for values in columns.values()):
        raise ValueError(f"the model answered columns of other lengths than {rows} rows")
    plain = [name for name in columns if not name.startswith(PROBABILITY_PREFIX)]
    per_class = [name for name in columns if name.startswith(PROBABILITY_PREFIX)]
    classes = [name[len(PROBABILITY_PREFIX):] for name in per_class]
    answers = [dict(zip(plain, values)) for values in zip(*(columns[n] for n in plain))]
    if per_class:
        for answer, values in zip(answers, zip(*(columns[n] for n in per_class))):
            answer["probabilities"] = dict(zip(classes, values))
    return answers
