"""The feature store: labelled training data in a SQL database (seed 003 "DB - feature
storage"), through SQLAlchemy.

A SQLite file in the state folder by default (``features.db``), any SQLAlchemy URL
by setting (``MLPLATFORM_FEATURE_STORE_URL``, e.g. ``postgresql+psycopg://...``).

Per dataset, one table of rows (``features_<dataset>``: the feature columns, the
label, the batch each row came in and when) and its entries in the shared
``feature_batches`` table (id, dataset, source, rows, time).  A batch is written
in one transaction and only if every row is valid: the checks are the serving
checks (``Dataset.validate`` calls the model's own column validation), so data
the model could not score never reaches its training set.

A dataset is seeded on first use (its ``seed`` function: the synthetic generator
for the fraud datasets), as batch ``seed``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import sqlalchemy as sa

from .errors import ModelInputError

NUMBER, TEXT, BOOLEAN = "number", "text", "boolean"
TRUTHS = {"true": 1, "false": 0, "yes": 1, "no": 0, "1": 1, "0": 0, "1.0": 1, "0.0": 0}
SQL_TYPES = {NUMBER: sa.Float, TEXT: sa.String(200), BOOLEAN: sa.Boolean}


class DataError(ValueError):
    """Rows that cannot be added; the message names the column and rows (or the file)."""

    def __init__(self, message: str, column: Optional[str] = None):
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class Dataset:
    """What a model trains on: typed feature columns and a label."""

    name: str
    features: Tuple[Tuple[str, str], ...]          # (column, NUMBER | TEXT | BOOLEAN)
    label: str
    classes: Tuple[Any, ...]                       # the label's allowed values
    seed: Callable[[], pd.DataFrame]               # the rows it starts with
    # The model's own check of a table of features (serving's): raises ModelInputError.
    check_features: Callable[[Dict[str, np.ndarray]], Any]

    @property
    def columns(self) -> List[str]:
        return [name for name, _ in self.features] + [self.label]

    def validate(self, frame: pd.DataFrame, source: str = "the upload") -> pd.DataFrame:
        """``frame`` typed for the table, or ``DataError`` naming what is wrong."""
        unknown = [c for c in frame.columns if c not in self.columns]
        missing = [c for c in self.columns if c not in frame.columns]
        if missing or unknown:
            parts = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + (
                [f"unknown column(s) {', '.join(map(str, unknown))}"] if unknown else [])
            raise DataError(f"{source}: {'; '.join(parts)} (dataset {self.name!r} has "
                            f"{', '.join(self.columns)})", column=(missing or unknown)[0])
        if frame.empty:
            raise DataError(f"{source} has no rows")
        table = {name: frame[name].to_numpy(dtype=object) for name, _ in self.features}
        for name, kind in self.features:
            if kind == BOOLEAN:  # CSV text: true/false, yes/no, 1/0 in any case
                table[name] = np.array([TRUTHS.get(str(v).strip().lower(), v) for v in
                                        table[name]], dtype=object)
        try:
            checked = self.check_features(table)
        except ModelInputError as exc:
            raise DataError(f"{source}: {exc} (rows counted from 0, header excluded)") from exc
        labels = [self._label(value) for value in frame[self.label].tolist()]
        bad = [i for i, value in enumerate(labels) if value is None]
        if bad:
            shown = ", ".join(map(str, bad[:5])) + (" ..." if len(bad) > 5 else "")
            raise DataError(f"{source}: column {self.label!r} must be one of "
                            f"{', '.join(map(str, self.classes))} (rows {shown})",
                            column=self.label)
        typed = {name: (np.asarray(checked[name], dtype=bool) if kind == BOOLEAN
                        else checked[name]) for name, kind in self.features}
        typed[self.label] = labels
        return pd.DataFrame(typed)

    def _label(self, value: Any) -> Any:
        for allowed in self.classes:
            if value == allowed or str(value).strip().lower() == str(allowed).lower():
                return allowed
            if isinstance(allowed, int) and str(value).strip() in (f"{allowed}.0", str(allowed)):
                return allowed
        return None


@dataclass(frozen=True)
class Batch:
    id: int
    dataset: str
    source: str
    rows: int
    added_at: datetime

    def public(self) -> Dict[str, Any]:
        return {"batch_id": self.id, "dataset": self.dataset, "source": self.source,
                "rows": self.rows, "added_at": self.added_at.isoformat()}


@dataclass(frozen=True)
class Snapshot:
    """A dataset as read for training: the rows and the batches they came in."""

    dataset: Dataset
    frame: pd.DataFrame      # features + label + batch_id
    batches: Tuple[Batch, ...]


_DATASETS: Dict[str, Dataset] = {}


def register_dataset(dataset: Dataset, *models: str) -> Dataset:
    """Make ``dataset`` known, as the training data of ``models``."""
    for name in (dataset.name, *models):
        _DATASETS[name] = dataset
    return dataset


def dataset_for(model: str) -> Dataset:
    from . import catalog

    catalog.model_specs()  # imports the built-in models, which register their datasets
    try:
        return _DATASETS[model]
    except KeyError:
        names = ", ".join(sorted({d.name for d in _DATASETS.values()}))
        raise KeyError(f"model {model!r} has no training dataset in the feature store "
                       f"(datasets: {names})") from None


class FeatureStore:
    def __init__(self, url: str):
        self.url = url
        self.engine = sa.create_engine(url, future=True)
        self.metadata = sa.MetaData()
        self.batches = sa.Table(
            "feature_batches", self.metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("dataset", sa.String(100), nullable=False, index=True),
            sa.Column("source", sa.String(300), nullable=False),
            sa.Column("rows", sa.Integer, nullable=False),
            sa.Column("added_at", sa.DateTime(timezone=True), nullable=False))
        self._tables: Dict[str, sa.Table] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.engine.dispose()

    # ---------------------------------------------------------------- tables

    def table(self, dataset: Dataset) -> sa.Table:
        with self._lock:
            if dataset.name not in self._tables:
                label_type = (sa.Integer if all(isinstance(c, int) for c in dataset.classes)
                              else sa.String(100))
                table = sa.Table(
                    f"features_{dataset.name}", self.metadata,
                    sa.Column("row_id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("batch_id", sa.Integer, sa.ForeignKey("feature_batches.id"),
                              nullable=False, index=True),
                    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
                    *(sa.Column(name, SQL_TYPES[kind], nullable=False)
                      for name, kind in dataset.features),
                    sa.Column(dataset.label, label_type, nullable=False))
                self.metadata.create_all(self.engine, tables=[self.batches, table])
                self._tables[dataset.name] = table
            return self._tables[dataset.name]

    # ---------------------------------------------------------------- writing

    def add(self, dataset: Dataset, frame: pd.DataFrame, source: str) -> Batch:
        """Validate every row, then append them as one batch in one transaction."""
        typed = dataset.validate(frame, source)
        return self._append(dataset, typed, source)

    def ensure_seeded(self, dataset: Dataset) -> Optional[Batch]:
        """Seed an empty dataset from its generator (first use); None if it has rows."""
        table = self.table(dataset)
        with self.engine.begin() as connection:
            if connection.execute(sa.select(sa.func.count()).select_from(table)).scalar():
                return None
        return self._append(dataset, dataset.validate(dataset.seed()[dataset.columns], "seed"),
                            "seed")

    def _append(self, dataset: Dataset, typed: pd.DataFrame, source: str) -> Batch:
        table = self.table(dataset)
        now = datetime.now(timezone.utc)
        records = typed.to_dict(orient="records")
        with self.engine.begin() as connection:  # the batch and its rows, or nothing
            batch_id = connection.execute(self.batches.insert().values(
                dataset=dataset.name, source=source[:300], rows=len(records),
                added_at=now)).inserted_primary_key[0]
            for record in records:
                record["batch_id"], record["added_at"] = batch_id, now
            connection.execute(table.insert(), records)
        return Batch(int(batch_id), dataset.name, source[:300], len(records), now)

    # ---------------------------------------------------------------- reading

    def size(self, dataset: Dataset) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(
                sa.select(sa.func.count()).select_from(self.table(dataset))).scalar())

    def batch_list(self, dataset: Dataset) -> List[Batch]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(self.batches).where(
                self.batches.c.dataset == dataset.name).order_by(self.batches.c.id)).all()
        return [Batch(r.id, r.dataset, r.source, r.rows, _utc(r.added_at)) for r in rows]

    def snapshot(self, dataset: Dataset, batches: Optional[Sequence[int]] = None) -> Snapshot:
        """Every row (or those of ``batches``), in the order they were added."""
        table = self.table(dataset)
        query = sa.select(*(table.c[name] for name in dataset.columns),
                          table.c.batch_id).order_by(table.c.row_id)
        if batches is not None:
            query = query.where(table.c.batch_id.in_(list(batches)))
        with self.engine.connect() as connection:
            frame = pd.read_sql(query, connection)
        kept = set(frame["batch_id"].unique().tolist())
        return Snapshot(dataset, frame, tuple(b for b in self.batch_list(dataset) if b.id in kept))


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
