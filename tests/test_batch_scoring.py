"""`mlplatform batch`: a file scored with a registered model, in one process (local) and
on Spark in local mode (real PySpark, Debian's Java).  The answers must equal what the
gateway's /forward_batch gives for the same rows on the same version."""
from __future__ import annotations

import pandas as pd
import pytest
import requests

from mlplatform.pyfunc_models.fraud.data import generate_transactions
from mlplatform.pyfunc_models.fraud.features import FEATURES
from mlplatform.scripts.batch_scoring import BatchError, answers_frame, result_schema
from tests.support import MLPLATFORM

ROWS = 400


@pytest.fixture(scope="module")
def transactions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    rows = generate_transactions(ROWS, 13)[list(FEATURES)]
    rows.insert(0, "id", [f"t{n}" for n in range(ROWS)])
    path = folder / "transactions.csv"
    rows.to_csv(path, index=False)
    rows.to_parquet(folder / "transactions.parquet", index=False)
    return folder, path


@pytest.fixture(scope="module")
def gateway_answers(served, transactions):
    """/forward_batch on the version `fraud` serves: the reference."""
    _, path = transactions
    version = requests.post(served.gateway_url + "/forward?model=fraud", timeout=30,
                            json=generate_transactions(4, 1)[list(FEATURES)]
                            .to_dict("records")[0]).headers["x-model-version"]
    answer = requests.post(served.gateway_url + f"/forward_batch?model=fraud/{version}",
                           files={"file": ("t.csv", path.read_bytes(), "text/csv")}, timeout=120)
    assert answer.status_code == 200, answer.text
    return version, pd.DataFrame(answer.json()["results"]).set_index("id")


def same_answers(found: pd.DataFrame, reference: pd.DataFrame) -> None:
    found = found.set_index("id").loc[reference.index]
    assert list(found["is_fraud"].astype(bool)) == list(reference["is_fraud"].astype(bool))
    # answers carry 6 decimals: one rounding step apart at most
    assert (found["fraud_probability"] - reference["fraud_probability"]).abs().max() <= 1.5e-6
    assert (found["threshold"] - reference["threshold"]).abs().max() < 1e-9


def test_local_engine_equals_forward_batch(served, transactions, gateway_answers):
    folder, path = transactions
    version, reference = gateway_answers
    output = folder / "local.csv"
    result = served.cli("batch", f"fraud/{version}", str(path), str(output),
                        "--chunk-rows", "150")  # several chunks
    assert f"scored {ROWS} rows with models:/fraud/{version} (local)" in result.stdout
    found = pd.read_csv(output)
    assert list(found.columns) == ["id", "is_fraud", "fraud_probability", "threshold"]
    assert list(found["id"]) == [f"t{n}" for n in range(ROWS)]  # input order kept
    same_answers(found, reference)


def test_spark_engine_equals_forward_batch(served, transactions, gateway_answers):
    folder, _ = transactions
    version, reference = gateway_answers
    output = folder / "spark.parquet"
    result = served.cli("batch", f"fraud/{version}", str(folder / "transactions.parquet"),
                        str(output), "--engine", "spark", "--master", "local[2]", timeout=900)
    assert f"scored {ROWS} rows with models:/fraud/{version} (spark)" in result.stdout
    same_answers(pd.read_parquet(output), reference)
    assert not list(folder.glob(".spark-*"))  # Spark's part folders are cleaned up


def test_a_text_answer_model_scores_locally(served, transactions):
    folder, path = transactions
    output = folder / "scenario.parquet"
    served.cli("batch", "fraud_scenario", str(path), str(output))
    found = pd.read_parquet(output)
    assert len(found) == ROWS and found["scenario"].map(type).eq(str).all()


def test_bad_rows_are_named_and_nothing_crashes(served, transactions):
    folder, _ = transactions
    rows = generate_transactions(10, 2)[list(FEATURES)]
    rows.loc[7, "hour"] = 99
    bad = folder / "bad.csv"
    rows.to_csv(bad, index=False)
    result = served.cli("batch", "fraud", str(bad), str(folder / "bad-out.csv"), check=False)
    assert result.returncode == 1
    assert "hour" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.unit
@pytest.mark.parametrize("source, output, problem", [
    ("rows.txt", "out.csv", "unknown format '.txt'"),
    ("missing.csv", "out.csv", "no such file"),
    ("rows.csv", "out.json", "unknown format '.json'")])
def test_the_cli_names_what_is_wrong_with_the_files(tmp_path, source, output, problem):
    import subprocess

    (tmp_path / "rows.txt").write_text("a\n1\n")
    (tmp_path / "rows.csv").write_text("a\n1\n")
    result = subprocess.run([MLPLATFORM, "batch", "fraud", str(tmp_path / source),
                             str(tmp_path / output)], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 1 and problem in result.stderr, result.stderr


@pytest.mark.unit
def test_answer_columns_and_their_spark_types():
    frame = answers_frame({"is_fraud": [True, False], "p": [0.1, 0.2],
                           "scenario": [b"legit", b"stolen_card"]}, 2)
    assert list(frame["scenario"]) == ["legit", "stolen_card"]
    assert result_schema(frame) == "`is_fraud` boolean, `p` double, `scenario` string"
    with pytest.raises(BatchError, match="answered 2 rows for 3"):
        answers_frame({"p": [0.1, 0.2]}, 3)
    with pytest.raises(BatchError, match="scores tables"):
        answers_frame("text", 1)
