"""S3 checks shared by the stack, MinIO and registration: reachable endpoint, bucket present.

The same calls run against real MinIO, AWS S3, or the test suite's stand-in
(moto's standalone ``moto_server``).  Timeouts are short and retries off: an
unreachable endpoint is reported in seconds, naming the URL.
"""
from __future__ import annotations

from typing import Optional

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError


class S3Unavailable(RuntimeError):
    """The S3 endpoint cannot be used; the message names the URL and the reason."""


def s3_client(endpoint_url: str, access_key: Optional[str], secret_key: Optional[str]):
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1},
                      s3={"addressing_style": "path"}),
    )


def ensure_bucket(endpoint_url: str, bucket: str, access_key: Optional[str],
                  secret_key: Optional[str], *, create: bool = True) -> bool:
    """Check the endpoint answers and ``bucket`` exists; create it if allowed.

    Returns True if the bucket was created.
    """
    client = s3_client(endpoint_url, access_key, secret_key)
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise S3Unavailable(
                f"S3 endpoint {endpoint_url} refused the credentials for bucket {bucket!r} ({code})"
            ) from exc
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise S3Unavailable(f"S3 endpoint {endpoint_url} answered {code} for {bucket!r}") from exc
    except BotoCoreError as exc:
        raise S3Unavailable(f"S3 endpoint {endpoint_url} is unreachable ({exc})") from exc
    if not create:
        raise S3Unavailable(f"bucket {bucket!r} does not exist at {endpoint_url}")
    try:
        client.create_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as exc:
        raise S3Unavailable(f"cannot create bucket {bucket!r} at {endpoint_url}: {exc}") from exc
    return True
