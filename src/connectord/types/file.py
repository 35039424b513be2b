"""The ``file`` type: file storage by URL through fsspec (``docs/file-probe.md``).

``s3://bucket/prefix`` (s3fs; ``endpoint_url`` for S3-compatible stores) and
``file:///path`` under the operator's roots (``CONNECTORD_FILE_ROOTS``);
``gs://`` and ``az://`` answer ``unsupported`` with the package they need.

The test lists the base path and reports how many entries it holds (never
their names). When the connector claims ``write`` and the user asks for a
``write_check``, it writes and deletes a small probe object.

The AWS plumbing (client settings, botocore error mapping) is shared with the
Lambda probe in ``_aws.py``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import stat
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, model_validator

from connectord.model import Capability, ErrorKind
from connectord.network import Network
from connectord.plugin import ConnectorConfig, ConnectorType, ProbeContext, ProbeError, ProbeOutcome
from connectord.timing import timed
from connectord.types._aws import (
    aws_config,
    aws_session,
    botocore_error_kind,
    checked_resolver,
    map_botocore_error,
)
from connectord.types.base import reveal
from connectord.types.endpoint import EndpointRule

__all__ = [
    "MAX_ENTRIES",
    "PROBE_PREFIX",
    "FileConfig",
    "FileType",
    "botocore_error_kind",
    "local_folder",
    "map_botocore_error",
    "map_os_error",
    "s3_location",
]

MAX_ENTRIES = 1000
PROBE_PREFIX = ".connectord-probe-"
PROBE_BODY = b"connectord write check; deleted at once\n"
# Protocols that fsspec serves through a package of their own, with the package to install.
EXTRA_PACKAGES = {"gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs"}


class FileConfig(ConnectorConfig):
    """Config of a ``file`` connector. The endpoint is a URL: ``s3://bucket/prefix`` or
    ``file:///folder`` (inside a root the operator configured)."""

    endpoint_url: str | None = Field(
        default=None,
        max_length=2048,
        description="s3: the URL of an S3-compatible store (MinIO, Ceph...); default: AWS S3.",
    )
    region: str | None = Field(default=None, max_length=64, description="s3: the region (e.g. eu-west-1).")
    access_key_id: str | None = Field(
        default=None, max_length=256, description="s3: access key id (none: anonymous requests)."
    )
    secret_access_key: SecretStr | None = Field(default=None, description="s3: secret access key.")
    session_token: SecretStr | None = Field(
        default=None, description="s3: session token of temporary credentials."
    )
    tls_verify: bool = Field(default=True, description="s3: verify the server certificate and name.")
    read_only: bool = Field(
        default=False, description="The connector only reads: it does not claim the write capability."
    )
    write_check: bool = Field(
        default=False,
        description="Also write and delete a small probe object (.connectord-probe-*) in the base path; "
        "only done when the connector claims write.",
    )

    @model_validator(mode="after")
    def _credentials(self) -> FileConfig:
        if self.password is not None:
            raise ValueError("password is not used by file connectors: use secret_access_key")
        if bool(self.access_key_id) != (self.secret_access_key is not None):
            raise ValueError("access_key_id and secret_access_key go together")
        if self.session_token is not None and not self.access_key_id:
            raise ValueError("session_token needs access_key_id and secret_access_key")
        return self


class FileType(ConnectorType):
    """File storage through fsspec: S3-compatible, GCS, Azure, local roots."""

    name: ClassVar[str] = "file"
    description: ClassVar[str] = "File storage through fsspec: S3-compatible, GCS, Azure, local roots."
    endpoint: ClassVar[EndpointRule] = EndpointRule(
        schemes=("s3", "s3a", "file", "gs", "gcs", "az", "abfs", "abfss"), hostless=("file",)
    )
    config_model: ClassVar[type[ConnectorConfig]] = FileConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (Capability.READ, Capability.WRITE)

    def capabilities(self, config: ConnectorConfig) -> list[str]:
        """Read and write, or read only when the config says so."""
        assert isinstance(config, FileConfig)
        return [str(Capability.READ)] if config.read_only else super().capabilities(config)

    async def prepare(self) -> None:
        """botocore's data files for s3, read once in a thread (about 0.3-0.4 s)."""
        await aws_session("s3")

    async def probe(self, ctx: ProbeContext) -> ProbeOutcome:
        """List the base path (a count of entries); write and delete a probe object if asked."""
        config = ctx.config
        assert isinstance(config, FileConfig)
        if not ctx.endpoint or "://" not in ctx.endpoint:
            raise ProbeError(
                ErrorKind.INVALID_CONFIG, "the endpoint is a URL: s3://bucket/prefix or file:///path"
            )
        protocol = ctx.endpoint.split("://", 1)[0].lower()
        write = config.write_check and str(Capability.WRITE) in self.capabilities(config)
        if protocol in {"s3", "s3a"}:
            details = await _probe_s3(ctx, config, write)
        elif protocol == "file":
            details = await _probe_local(ctx, write)
        elif protocol in EXTRA_PACKAGES:
            raise _extra_needed(protocol)
        else:
            raise ProbeError(
                ErrorKind.INVALID_CONFIG, f"unknown protocol {protocol!r}: use s3://, file://, gs:// or az://"
            )
        if config.write_check and not write:
            details["write_check"] = "skipped: the connector does not claim write"
        return ProbeOutcome(details={"protocol": protocol, **details})


def _extra_needed(protocol: str) -> ProbeError:
    package = EXTRA_PACKAGES[protocol]
    if importlib.util.find_spec(package) is None:
        return ProbeError(
            ErrorKind.UNSUPPORTED,
            f"{protocol}:// needs the {package} package on the server (pip install {package})",
        )
    # Installed, but its client resolves and connects by itself, outside the egress policy.
    return ProbeError(
        ErrorKind.UNSUPPORTED, f"testing {protocol}:// connectors is not supported yet by this server"
    )


# --- S3 ------------------------------------------------------------------------------


def s3_location(endpoint: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://bucket/prefix``; the prefix ends with ``/`` unless empty."""
    parts = urlsplit(endpoint)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint is s3://bucket/prefix, without options")
    bucket = parts.hostname or ""
    if not bucket:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint names no bucket (s3://bucket/prefix)")
    prefix = unquote(parts.path).strip("/")
    return bucket, f"{prefix}/" if prefix else ""


async def _probe_s3(ctx: ProbeContext, config: FileConfig, write: bool) -> dict[str, Any]:
    from s3fs import S3FileSystem

    assert ctx.endpoint is not None
    bucket, prefix = s3_location(ctx.endpoint)
    phases: dict[str, float] = {}
    resolver = await checked_resolver(ctx, config.endpoint_url, phases)
    # Compatible stores rarely serve bucket.host names; it also keeps the host the one checked.
    s3_options = {"s3": {"addressing_style": "path"}} if config.endpoint_url else {}
    anonymous = not config.access_key_id
    fs = S3FileSystem(
        asynchronous=True,
        session=await aws_session("s3"),
        skip_instance_cache=True,
        use_listings_cache=False,
        anon=anonymous,  # never the server's own credentials
        key=config.access_key_id,
        secret=reveal(config.secret_access_key),
        token=reveal(config.session_token),
        endpoint_url=config.endpoint_url,
        client_kwargs={"region_name": config.region, "verify": config.tls_verify},
        config_kwargs={**aws_config(ctx.timeout, resolver), **s3_options},
    )
    fs.retries = 1  # s3fs retries with back-off by default: a dead store would outlast the timeout
    client = None
    details: dict[str, Any] = {"bucket": bucket, "anonymous": anonymous}
    try:
        client = await fs.set_session()
        with timed(phases, "list_ms"):
            listing = await fs._call_s3(
                "list_objects_v2", Bucket=bucket, Prefix=prefix, Delimiter="/", MaxKeys=MAX_ENTRIES
            )
        objects = [o for o in listing.get("Contents", []) if o.get("Key") != prefix]
        details["entries"] = len(objects) + len(listing.get("CommonPrefixes", []))
        details["entries_truncated"] = bool(listing.get("IsTruncated"))
        if write:
            path = f"{bucket}/{prefix}{PROBE_PREFIX}{secrets.token_hex(8)}"
            with timed(phases, "write_ms"):
                await fs._pipe_file(path, PROBE_BODY)
                await fs._rm_file(path)
                details["write_ok"] = not await fs._exists(path)
    except ProbeError:
        raise
    except Exception as exc:
        raise map_botocore_error(exc, "the S3 store", resolver) from exc
    finally:
        if client is not None:
            await client.close()
    details["phases"] = phases
    return details


# --- local folders -------------------------------------------------------------------


def local_folder(endpoint: str, network: Network) -> str:
    """The real path of a ``file://`` folder inside a configured root.

    Outside every root (also through ``..`` or a symlink) is ``egress_denied``,
    checked before anything else, so a probe cannot learn what exists outside.
    """
    parts = urlsplit(endpoint)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "a local endpoint is file:///absolute/path")
    path = unquote(parts.path)
    if not os.path.isabs(path):
        raise ProbeError(ErrorKind.INVALID_CONFIG, "a local endpoint's path must be absolute")
    return network.local_path(path)


async def _probe_local(ctx: ProbeContext, write: bool) -> dict[str, Any]:
    assert ctx.endpoint is not None
    folder = local_folder(ctx.endpoint, ctx.network)
    phases: dict[str, float] = {}
    try:
        async with asyncio.timeout(ctx.timeout):
            with timed(phases, "list_ms"):
                details = await asyncio.to_thread(_count_entries, folder)
            if write:
                with timed(phases, "write_ms"):
                    details["write_ok"] = await asyncio.to_thread(_write_and_delete, folder)
    except TimeoutError as exc:
        raise ProbeError(ErrorKind.TIMEOUT, f"the folder did not answer within {ctx.timeout:g} s") from exc
    except OSError as exc:
        raise map_os_error(exc) from exc
    return {**details, "phases": phases}


def _count_entries(folder: str) -> dict[str, Any]:
    if not stat.S_ISDIR(os.stat(folder).st_mode):
        raise NotADirectoryError(folder)
    count = 0
    with os.scandir(folder) as entries:
        for _ in entries:
            count += 1
            if count > MAX_ENTRIES:
                return {"entries": MAX_ENTRIES, "entries_truncated": True}
    return {"entries": count, "entries_truncated": False}


def _write_and_delete(folder: str) -> bool:
    path = os.path.join(folder, f"{PROBE_PREFIX}{secrets.token_hex(8)}")
    # O_EXCL and O_NOFOLLOW: never overwrite, never write through a planted symlink.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, PROBE_BODY)
    finally:
        os.close(fd)
        os.unlink(path)
    return not os.path.lexists(path)


def map_os_error(exc: OSError) -> ProbeError:
    """A local file-system error as a :class:`ProbeError` (never the path: it is in the endpoint)."""
    if isinstance(exc, FileNotFoundError):
        return ProbeError(ErrorKind.NOT_FOUND, "no such folder")
    if isinstance(exc, NotADirectoryError):
        return ProbeError(ErrorKind.INVALID_CONFIG, "the path is not a folder")
    if isinstance(exc, PermissionError):
        return ProbeError(ErrorKind.AUTH, "the server may not read or write this folder")
    if isinstance(exc, TimeoutError):
        return ProbeError(ErrorKind.TIMEOUT, "the folder did not answer in time")
    return ProbeError(ErrorKind.UNAVAILABLE, f"cannot use the folder: {exc.strerror or type(exc).__name__}")
