"""The batch answer's rows rendered from a table model's output columns: byte for byte
what the one-dict-per-row rendering gives, for every shape the routes produce."""
from __future__ import annotations

import math
import pickle

import numpy as np
import orjson
import pytest

from mlplatform.gateway import answer_rows
from mlplatform.gateway.directory import ServedModel
from mlplatform.gateway.table import TableAnswers

SERVED = ServedModel(name="fraud", version="3")
ROWS = 7


def fraud_columns(rows: int = ROWS):
    generator = np.random.default_rng(5)
    probability = np.round(generator.random(rows), 6)
    return {"is_fraud": probability >= 0.35, "fraud_probability": probability,
            "threshold": np.full(rows, 0.35)}


def scenario_columns(rows: int = ROWS):
    generator = np.random.default_rng(6)
    return {"scenario": np.array(["card, cloned", 'say "hi"', "100% legit"] * 3)[:rows],
            "probability": np.round(generator.random(rows), 6),
            "probability_card, cloned": np.round(generator.random(rows), 6),
            'probability_say "hi"': np.round(generator.random(rows), 6),
            "probability_100% legit": np.array([0.5, math.nan, 0.25, math.inf, 0.0, 1.0, -0.5])[:rows],
            "count": np.arange(rows, dtype=np.int64)}


IDS = {
    "none": [{}] * ROWS,
    "numbers": [{"id": 10 + i} for i in range(ROWS)],
    "text with commas and quotes": [{"id": f't,{i}"%s'} for i in range(ROWS)],
    "files": [{"file": f"images/{i}.png"} for i in range(ROWS)],
    "some rows without": [{"id": i} if i % 2 else {} for i in range(ROWS)],
    "mixed": [{"id": i} if i % 2 else {"file": "x"} for i in range(ROWS)],
}
LABELS = {"none": None, "numbers": [i % 2 for i in range(ROWS)],
          "text": [f"scenario,{i}" for i in range(ROWS)], "booleans": [True, False] * 3 + [None]}


def by_dicts(first, ids, truth, answers):
    return answer_rows.rows_json(SERVED, first, ids, truth, list(answers))  # not TableAnswers


@pytest.mark.parametrize("columns", [fraud_columns, scenario_columns])
@pytest.mark.parametrize("ids", IDS)
@pytest.mark.parametrize("labels", LABELS)
def test_rows_from_columns_equal_rows_from_dicts(columns, ids, labels):
    answers = TableAnswers(columns(), ROWS)
    for first in (0, 40_000):
        fast = answer_rows.rows_json(SERVED, first, IDS[ids], LABELS[labels], answers)
        assert fast == by_dicts(first, IDS[ids], LABELS[labels], answers)
        rows = orjson.loads(b"[" + fast + b"]")
        assert [row["row"] for row in rows] == list(range(first, first + ROWS))


def test_the_rows_are_shaped_like_the_models_per_row_answer():
    answers = TableAnswers(scenario_columns(), ROWS)
    row = orjson.loads(b"[" + answer_rows.rows_json(SERVED, 0, IDS["numbers"], LABELS["text"],
                                                    answers) + b"]")[1]
    assert list(row) == ["row", "id", "label", "scenario", "probability", "count",
                         "probabilities"]
    assert list(row["probabilities"]) == ["card, cloned", 'say "hi"', "100% legit"]
    assert row["probabilities"]["say \"hi\""] == answers[1]["probabilities"]['say "hi"']
    assert row["probabilities"]["100% legit"] is None  # NaN is JSON null, as orjson writes it


def test_an_answer_field_named_like_a_row_field_keeps_the_dict_rendering():
    columns = {"row": np.arange(ROWS) * 2, "id": np.arange(ROWS), "label": np.ones(ROWS)}
    answers = TableAnswers(columns, ROWS)
    fast = answer_rows.rows_json(SERVED, 0, IDS["numbers"], LABELS["numbers"], answers)
    assert fast == by_dicts(0, IDS["numbers"], LABELS["numbers"], answers)
    assert orjson.loads(b"[" + fast + b"]")[3] == {"row": 6, "id": 3, "label": 1.0}


def test_answers_that_are_not_a_table_and_an_empty_batch():
    images = ServedModel(name="imgs", version="1", output_format="base64")
    rendered = answer_rows.rows_json(images, 2, [{"file": "a.png"}], None, ["aGk="])
    assert orjson.loads(rendered) == {"row": 2, "file": "a.png", "image": "aGk=",
                                      "content_type": "image/png"}
    assert orjson.loads(answer_rows.rows_json(SERVED, 0, [{}], None, [0.5])) == \
        {"row": 0, "answer": 0.5}
    assert answer_rows.rows_json(SERVED, 0, [], None, TableAnswers(fraud_columns(0), 0)) == b""


def test_the_whole_answer_is_one_json_document():
    answers = TableAnswers(fraud_columns(), ROWS)
    body = (answer_rows.opening(SERVED, ROWS, {"accuracy": 1.0})
            + answer_rows.rows_json(SERVED, 0, IDS["none"], None, answers) + answer_rows.CLOSING)
    document = orjson.loads(body)
    assert list(document) == ["model", "version", "rows", "metrics", "results"]
    assert document["results"] == [{"row": i, **answers[i]} for i in range(ROWS)]


def test_table_answers_read_row_by_row_slice_and_pickle_as_columns():
    answers = TableAnswers(scenario_columns(), ROWS)
    rows = list(answers)
    assert len(answers) == ROWS and answers[-1] == rows[-1]
    assert list(answers[2:5]) == rows[2:5] and len(answers[2:5]) == 3
    assert orjson.dumps(list(pickle.loads(pickle.dumps(answers)))) == orjson.dumps(rows)
    assert rows[0]["scenario"] == "card, cloned" and isinstance(rows[0]["count"], int)
    with pytest.raises(ValueError, match="other lengths than 8 rows"):
        TableAnswers(fraud_columns(), 8)
