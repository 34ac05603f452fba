"""``mlplatform batch``: score a file too big for a request with a registered model.

Two engines, the same model and the same answers:

* ``local`` (default): the file streams through the model in one process, a chunk of
  rows at a time (CSV or Parquet in, CSV or Parquet out), so memory stays at one chunk.
* ``spark``: ``mlflow.pyfunc.spark_udf`` on a Spark DataFrame -- Spark's local mode on
  this machine, any cluster with ``--master`` (every executor loads the model from the
  registry itself).  For files beyond one machine.

Both load ``models:/<name>/<version>`` (an alias is resolved to its version first, so
one run uses one version however the alias moves meanwhile) and hand the model a
DataFrame, which table models score as columns (``JsonCodecModel.predict``).  Output:
the input's ``id`` column when it has one, then one column per answer field.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import pandas as pd

CHUNK_ROWS = 50_000
FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class BatchError(ValueError):
    """The batch cannot run as asked; the message names the file, column or option."""


@dataclass
class BatchResult:
    rows: int
    seconds: float
    output: Path
    model_uri: str

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def file_format(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise BatchError(f"{path}: unknown format {path.suffix!r}; use .csv or .parquet") from None


def answers_frame(answer: Any, rows: int) -> pd.DataFrame:
    """What ``predict`` returned for a DataFrame, as one column per answer field."""
    if isinstance(answer, pd.DataFrame):
        frame = answer.reset_index(drop=True)
    elif isinstance(answer, dict):
        frame = pd.DataFrame({key: _plain(values) for key, values in answer.items()})
    else:
        raise BatchError(f"the model answered a {type(answer).__name__} for a table; "
                         "batch scoring needs a model that scores tables (accepts_table)")
    if len(frame) != rows:
        raise BatchError(f"the model answered {len(frame)} rows for {rows}")
    return frame


def _plain(values: Any) -> Any:
    values = np.asarray(values)
    if values.dtype.kind in "OS":  # text answers travel as UTF-8 bytes (codec._text_as_bytes)
        return [v.decode() if isinstance(v, bytes) else v for v in values.tolist()]
    return values


# ---------------------------------------------------------------- local engine


def read_chunks(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    kind = file_format(path)
    if not path.is_file():
        raise BatchError(f"{path}: no such file")
    try:
        if kind == "csv":
            yield from pd.read_csv(path, chunksize=chunk_rows)
        else:
            import pyarrow.parquet as pq

            for piece in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
                yield piece.to_pandas()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise BatchError(f"{path}: cannot read it as {kind}: {exc}") from exc


class ChunkWriter:
    """Appends answer chunks to a CSV or Parquet file."""

    def __init__(self, path: Path):
        self.path, self.kind = path, file_format(path)
        self._parquet = None
        self._first = True

    def write(self, frame: pd.DataFrame) -> None:
        if self.kind == "csv":
            frame.to_csv(self.path, mode="w" if self._first else "a", header=self._first,
                         index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table)
        self._first = False

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()


def score_local(model_uri: str, source: Path, output: Path,
                chunk_rows: int = CHUNK_ROWS) -> BatchResult:
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri)
    started, rows = time.perf_counter(), 0
    writer = ChunkWriter(output)
    try:
        for chunk in read_chunks(source, chunk_rows):
            ids = chunk.pop("id").reset_index(drop=True) if "id" in chunk.columns else None
            answers = answers_frame(_predict(model, chunk, rows), len(chunk))
            if ids is not None:
                answers.insert(0, "id", ids)
            writer.write(answers)
            rows += len(chunk)
    finally:
        writer.close()
    if rows == 0:
        raise BatchError(f"{source}: no rows")
    return BatchResult(rows, time.perf_counter() - started, output, model_uri)


def _predict(model, chunk: pd.DataFrame, first_row: int) -> Any:
    from mlplatform.pyfunc_models.errors import ModelInputError

    try:
        return model.predict(chunk)
    except ModelInputError as exc:  # rows are counted from the chunk: name them in the file
        raise BatchError(f"the model refused rows {first_row}-{first_row + len(chunk) - 1} "
                         f"of the file: {exc}") from exc


# ---------------------------------------------------------------- spark engine


def spark_type(values: np.ndarray) -> str:
    kind = np.asarray(values).dtype.kind
    return {"b": "boolean", "i": "long", "u": "long", "f": "double"}.get(kind, "string")


def result_schema(sample: pd.DataFrame) -> str:
    """The Spark struct of the answers, from the model's answer to a sample of rows."""
    return ", ".join(f"`{name}` {spark_type(sample[name].to_numpy())}" for name in sample.columns)


def is_remote(source: Any) -> bool:
    """A URI Spark reads itself (s3a://, hdfs://, ...), not a local file."""
    return "://" in str(source)


def score_spark(model_uri: str, source: Any, output: Path, master: str = "local[*]",
                spark_options: Optional[Dict[str, str]] = None) -> BatchResult:
    import mlflow
    from pyspark.sql import SparkSession, functions

    kind = file_format(Path(str(source)))
    file_format(output)
    builder = SparkSession.builder.master(master).appName(f"mlplatform batch {model_uri}")
    options = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4"}
    if master.startswith("local"):
        # Spark's Python workers run this interpreter (the one with the platform and the
        # model's libraries); on a cluster, the executors' Python is the cluster's.
        options["spark.pyspark.python"] = sys.executable
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in {**options, **(spark_options or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    started = time.perf_counter()
    try:
        frame = (spark.read.option("header", True).option("inferSchema", True).csv(str(source))
                 if kind == "csv" else spark.read.parquet(str(source)))
        features = [c for c in frame.columns if c != "id"]
        sample = frame.select(*features).limit(20).toPandas()
        if sample.empty:
            raise BatchError(f"{source}: no rows")
        # the answer's columns and types, from the model's answer to a few rows
        model = mlflow.pyfunc.load_model(model_uri)
        schema = result_schema(answers_frame(_predict(model, sample, 0), len(sample)))
        udf = mlflow.pyfunc.spark_udf(spark, model_uri, result_type=schema, env_manager="local")
        scored = frame.withColumn("_answer", udf(functions.struct(*features)))
        kept = (["id"] if "id" in frame.columns else []) + ["_answer.*"]
        rows = _write_spark(scored.select(*kept), output, file_format(output))
    finally:
        spark.stop()
    return BatchResult(rows, time.perf_counter() - started, output, model_uri)


def _write_spark(answers, output: Path, kind: str) -> int:
    """One file at ``output`` (Spark writes folders of parts: they are joined in order)."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".spark-") as folder:
        parts = Path(folder) / "parts"
        if kind == "csv":
            answers.write.option("header", True).csv(str(parts))
        else:
            answers.write.parquet(str(parts))
        files = sorted(parts.glob(f"part-*.{'csv' if kind == 'csv' else 'parquet'}"))
        writer, rows = ChunkWriter(output), 0
        try:
            for part in files:
                for chunk in read_chunks(part):
                    writer.write(chunk)
                    rows += len(chunk)
        finally:
            writer.close()
        shutil.rmtree(parts, ignore_errors=True)
    return rows


ENGINES: Dict[str, Callable[..., BatchResult]] = {"local": score_local, "spark": score_spark}
__all__: List[str] = ["BatchError", "BatchResult", "ENGINES", "score_local", "score_spark"]
