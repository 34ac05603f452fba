"""The feature store on SQLite and on a real PostgreSQL server: the same tests."""
from __future__ import annotations

import io

import pandas as pd
import pytest

from mlplatform.pyfunc_models.feature_store import DataError, FeatureStore, dataset_for
from mlplatform.pyfunc_models.fraud.data import generate_transactions
from mlplatform.pyfunc_models.fraud.features import FEATURES


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'features.db'}"
    else:
        server = request.getfixturevalue("postgres")
        url = server.url
    opened = FeatureStore(url)
    yield opened
    if request.param == "postgresql":  # one server for the session: leave it empty
        opened.metadata.drop_all(opened.engine)
    opened.close()


def csv_frame(rows: int, seed: int, label: str = "fraud") -> pd.DataFrame:
    """As a user's CSV arrives: text, read back by pandas."""
    text = generate_transactions(rows, seed)[list(FEATURES) + [label]].to_csv(index=False)
    return pd.read_csv(io.StringIO(text))


def test_seeded_on_first_use_then_batches_append(store):
    fraud = dataset_for("fraud")
    seeded = store.ensure_seeded(fraud)
    assert seeded.source == "seed" and seeded.rows == 60_000 == store.size(fraud)
    assert store.ensure_seeded(fraud) is None  # second use: nothing added
    batch = store.add(fraud, csv_frame(250, seed=5), "new.csv")
    assert (batch.id, batch.rows, batch.source) == (seeded.id + 1, 250, "new.csv")
    assert store.size(fraud) == 60_250
    snapshot = store.snapshot(fraud)
    assert [b.id for b in snapshot.batches] == [seeded.id, batch.id]
    last = snapshot.frame.tail(250)
    assert (last["batch_id"] == batch.id).all()
    assert last[list(FEATURES)].reset_index(drop=True).equals(
        csv_frame(250, seed=5)[list(FEATURES)].astype(last[list(FEATURES)].dtypes.to_dict()))
    assert set(snapshot.frame["fraud"].unique()) <= {0, 1}
    assert snapshot.frame["is_online"].dtype == bool
    only_new = store.snapshot(fraud, batches=[batch.id])
    assert len(only_new.frame) == 250 and [b.id for b in only_new.batches] == [batch.id]


def test_each_dataset_has_its_own_table_and_labels(store):
    scenario = dataset_for("fraud_scenario")
    assert scenario is not dataset_for("fraud") and scenario is dataset_for("fraud_scenario")
    store.ensure_seeded(scenario)
    frame = csv_frame(40, seed=6, label="scenario")
    store.add(scenario, frame, "s.csv")
    assert set(store.snapshot(scenario).frame["scenario"]) <= {
        "legit", "card_testing", "account_takeover", "stolen_card"}


@pytest.mark.parametrize("spoil, named", [
    (lambda f: f.assign(hour=f["hour"].where(f.index != 7, 30)), ["'hour'", "rows 7"]),
    (lambda f: f.assign(amount=f["amount"].astype(object).where(f.index != 3, "lots")),
     ["'amount'", "numbers"]),
    (lambda f: f.assign(fraud=f["fraud"].where(f.index != 2, 7)), ["'fraud'", "rows 2"]),
    (lambda f: f.drop(columns=["country"]), ["missing column(s) country"]),
    (lambda f: f.assign(colour="red"), ["unknown column(s) colour"]),
    (lambda f: f.assign(country=f["country"].where(f.index != 4, None)), ["'country'", "rows 4"]),
    (lambda f: f.iloc[0:0], ["no rows"]),
])
def test_a_bad_row_names_itself_and_nothing_is_written(store, spoil, named):
    fraud = dataset_for("fraud")
    store.ensure_seeded(fraud)
    before, batches = store.size(fraud), len(store.batch_list(fraud))
    with pytest.raises(DataError) as raised:
        store.add(fraud, spoil(csv_frame(20, seed=7)), "bad.csv")
    assert all(part in str(raised.value) for part in named), str(raised.value)
    assert "bad.csv" in str(raised.value)
    assert store.size(fraud) == before and len(store.batch_list(fraud)) == batches


def test_a_model_without_a_dataset_is_named():
    with pytest.raises(KeyError) as raised:
        dataset_for("echo")
    assert "echo" in str(raised.value) and "fraud" in str(raised.value)
