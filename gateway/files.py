"""Job inputs and outputs in the artifact store: an S3 bucket or a local folder.

Files move in chunks (``CHUNK`` bytes), never whole in memory, both ways.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO, Iterator

CHUNK = 1 << 20


class JobFiles:
    def __init__(self, base: str):
        self.base = base.rstrip("/")
        self.s3 = self.base.startswith("s3://")
        if self.s3:
            import boto3

            bucket_and_prefix = self.base[len("s3://"):]
            self.bucket, _, self.prefix = bucket_and_prefix.partition("/")
            self.client = boto3.client("s3", endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL"))
        else:
            Path(self.base).mkdir(parents=True, exist_ok=True)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}".lstrip("/") if self.s3 else key

    def put(self, key: str, source: BinaryIO) -> None:
        if self.s3:
            self.client.upload_fileobj(source, self.bucket, self._key(key))
            return
        path = Path(self.base) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as target:
            shutil.copyfileobj(source, target, CHUNK)

    def put_file(self, key: str, path: Path) -> None:
        with open(path, "rb") as source:
            self.put(key, source)

    def fetch(self, key: str, destination: Path) -> Path:
        if self.s3:
            self.client.download_file(self.bucket, self._key(key), str(destination))
        else:
            shutil.copyfile(Path(self.base) / key, destination)
        return destination

    def chunks(self, key: str) -> Iterator[bytes]:
        if self.s3:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            yield from body.iter_chunks(CHUNK)
            return
        with open(Path(self.base) / key, "rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk
