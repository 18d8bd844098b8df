"""Media in a bucket of any S3-compatible service (``--media-store s3://bucket/prefix``, ``--s3-endpoint-url``).

Workers upload; API nodes hand out presigned GET URLs (the service itself answers range requests on them);
deletes remove the objects. Credentials, region and retries come from boto3's standard chain (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``~/.aws``...). Nothing here depends on which
service answers: only the S3 API and SigV4.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pixgen.errors import ConfigError
from pixgen.storage import CHUNK, check_name

MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 presigned URLs live at most a week


class S3MediaStore:
    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    @classmethod
    def from_url(cls, location: str, *, endpoint_url: str | None = None) -> S3MediaStore:
        """The store ``s3://bucket/prefix`` names, on ``endpoint_url`` (None: AWS itself)."""
        parts = urlsplit(location)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"media store {location!r}: give s3://bucket or s3://bucket/prefix",
                              field="media_store")
        import boto3
        from botocore.config import Config

        # Path-style addressing for a custom endpoint: every S3-compatible service answers it, not all have
        # per-bucket host names.
        config = Config(signature_version="s3v4", s3={"addressing_style": "path" if endpoint_url else "auto"})
        client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        return cls(client, parts.netloc, parts.path)

    def key(self, name: str) -> str:
        name = check_name(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, name: str, source: Path, content_type: str) -> None:
        self.client.upload_file(str(source), self.bucket, self.key(name), ExtraArgs={"ContentType": content_type})
        source.unlink(missing_ok=True)

    def size(self, name: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        except ValueError:
            return None
        except self.client.exceptions.ClientError as exc:
            if _missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    def open(self, name: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        wanted = f"bytes={start}-{'' if end is None else end}"
        answer = self.client.get_object(Bucket=self.bucket, Key=self.key(name), Range=wanted)
        body = answer["Body"]
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def url(self, name: str, *, ttl: int, content_type: str) -> str | None:
        params = {"Bucket": self.bucket, "Key": self.key(name), "ResponseContentType": content_type}
        url: str = self.client.generate_presigned_url("get_object", Params=params,
                                                      ExpiresIn=min(ttl, MAX_PRESIGN_SECONDS))
        return url

    def local_copy(self, name: str, work_dir: Path) -> Path:
        work_dir.mkdir(parents=True, exist_ok=True)
        target = work_dir / f"{secrets.token_hex(4)}-{check_name(name)}"  # two workers may copy the same file
        try:
            self.client.download_file(self.bucket, self.key(name), str(target))
        except self.client.exceptions.ClientError as exc:
            target.unlink(missing_ok=True)
            if _missing(exc):
                raise FileNotFoundError(name) from None
            raise
        return target

    def delete(self, name: str) -> None:
        try:
            key = self.key(name)
        except ValueError:
            return
        self.client.delete_object(Bucket=self.bucket, Key=key)  # S3 answers 204 whether or not it was there


def _missing(exc: Any) -> bool:
    error = exc.response.get("Error", {})
    return str(error.get("Code")) in ("404", "NoSuchKey", "NotFound")
