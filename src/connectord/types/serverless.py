"""The ``serverless`` type: HTTP functions and AWS Lambda (``docs/serverless-probe.md``).

``http``: a ``GET`` to the function's health path; a ``POST`` of ``{}`` only
when the user opts in with ``invoke`` (an invoke may have side effects).
``aws_lambda``: ``GetFunction``, then ``Invoke`` with ``InvocationType=DryRun``
(the service checks the request and the permissions; the function code never runs).

The HTTP client (:class:`~connectord.network.http.CheckedHttp`, which
connects only to egress-checked addresses) is shared with the vector probe; the
AWS client settings and error mapping with the file probe (``_aws.py``).
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

from pydantic import Field, SecretStr, model_validator

from connectord.model import Capability
from connectord.network.endpoints import parse_http_url
from connectord.network.failures import aiohttp_error_kind
from connectord.network.http import EgressResolver, map_aiohttp_error, status_error
from connectord.network.tls import CaPem
from connectord.timing import timed
from connectord.types._aws import aws_config, aws_session, checked_resolver, map_botocore_error
from connectord.types.base import ConnectorConfig, ConnectorType, ProbeContext, ProbeOutcome, reveal
from connectord.types.endpoint import EndpointRule

__all__ = [
    "EgressResolver",
    "HttpAuth",
    "ServerlessConfig",
    "ServerlessProvider",
    "ServerlessType",
    "aiohttp_error_kind",
    "map_aiohttp_error",
    "parse_http_url",
]


# --- the serverless type ------------------------------------------------------------


class ServerlessProvider(enum.StrEnum):
    """Where the function runs."""

    HTTP = "http"
    AWS_LAMBDA = "aws_lambda"


class HttpAuth(enum.StrEnum):
    """How an HTTP function authenticates a caller."""

    NONE = "none"
    BEARER = "bearer"
    API_KEY = "api_key"


class ServerlessConfig(ConnectorConfig):
    """Config of a ``serverless`` connector. ``http``: the endpoint is the function URL.
    ``aws_lambda``: ``function_name`` and ``region`` (the endpoint is not used)."""

    provider: ServerlessProvider = Field(
        default=ServerlessProvider.HTTP, description="http (a function URL) or aws_lambda."
    )
    health_path: str = Field(
        default="/health",
        max_length=2048,
        pattern=r"^[^\s]*$",
        description="http: the route the test GETs, relative to the function URL (absolute path allowed).",
    )
    invoke: bool = Field(
        default=False,
        description="http: POST an empty JSON object ({}) to the function URL instead of the health GET. "
        "Opt-in only: an invoke runs the function and may have side effects.",
    )
    auth: HttpAuth = Field(default=HttpAuth.NONE, description="http: none, bearer or api_key.")
    bearer_token: SecretStr | None = Field(default=None, description="http: the bearer token (auth=bearer).")
    api_key: SecretStr | None = Field(default=None, description="http: the API key (auth=api_key).")
    api_key_header: str = Field(
        default="X-API-Key",
        pattern=r"^[A-Za-z0-9-]{1,128}$",
        description="http: the header that carries the API key.",
    )
    tls_verify: bool = Field(default=True, description="Verify the server certificate and name.")
    ca_pem: CaPem = Field(
        default=None, max_length=65536, description="http: CA certificates (PEM text) to trust."
    )
    function_name: str | None = Field(
        default=None, max_length=256, description="aws_lambda: the function's name or ARN."
    )
    region: str | None = Field(default=None, max_length=64, description="aws_lambda: the AWS region.")
    endpoint_url: str | None = Field(
        default=None,
        max_length=2048,
        description="aws_lambda: a Lambda-compatible API URL (LocalStack, moto); default: AWS.",
    )
    access_key_id: str | None = Field(default=None, max_length=256, description="aws_lambda: access key id.")
    secret_access_key: SecretStr | None = Field(default=None, description="aws_lambda: secret access key.")
    session_token: SecretStr | None = Field(
        default=None, description="aws_lambda: session token of temporary credentials."
    )

    @model_validator(mode="after")
    def _provider_fields(self) -> ServerlessConfig:
        if self.password is not None:
            raise ValueError("password is not used by serverless connectors: use bearer_token or api_key")
        if self.auth is HttpAuth.BEARER and self.bearer_token is None:
            raise ValueError("auth=bearer needs bearer_token")
        if self.auth is HttpAuth.API_KEY and self.api_key is None:
            raise ValueError("auth=api_key needs api_key")
        if self.provider is ServerlessProvider.AWS_LAMBDA:
            if not self.function_name or not self.region:
                raise ValueError("aws_lambda needs function_name and region")
            if not self.access_key_id or self.secret_access_key is None:
                # Never fall back to the server's own AWS credentials.
                raise ValueError("aws_lambda needs access_key_id and secret_access_key")
        return self


class ServerlessType(ConnectorType):
    """Serverless functions: HTTP functions and AWS Lambda."""

    name: ClassVar[str] = "serverless"
    description: ClassVar[str] = "Serverless functions: HTTP functions and AWS Lambda."
    endpoint: ClassVar[EndpointRule] = EndpointRule(schemes=("http", "https"))
    config_model: ClassVar[type[ConnectorConfig]] = ServerlessConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (Capability.QUERY,)

    async def prepare(self) -> None:
        """botocore's data files for lambda, read once in a thread (about 0.3-0.4 s)."""
        await aws_session("lambda")

    async def probe(self, ctx: ProbeContext) -> ProbeOutcome:
        """Health GET (or opted-in invoke) of an HTTP function; GetFunction and a DryRun invoke on Lambda."""
        config = ctx.config
        assert isinstance(config, ServerlessConfig)
        if config.provider is ServerlessProvider.AWS_LAMBDA:
            return await _probe_lambda(ctx, config)
        return await _probe_http_function(ctx, config)


async def _probe_http_function(ctx: ProbeContext, config: ServerlessConfig) -> ProbeOutcome:
    headers = {"Accept": "application/json, */*;q=0.5", "User-Agent": "connectord-probe"}
    if config.auth is HttpAuth.BEARER and config.bearer_token is not None:
        headers["Authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"
    elif config.auth is HttpAuth.API_KEY and config.api_key is not None:
        headers[config.api_key_header] = config.api_key.get_secret_value()
    async with ctx.network.http(
        ctx.endpoint or "", ctx.timeout, headers=headers, tls_verify=config.tls_verify, ca_pem=config.ca_pem
    ) as http:
        if config.invoke:
            method, url = "POST", http.url("")
            status, body, ctype = await http.request("POST", "", json_body={}, url=url)
        else:
            # An absolute health path replaces the URL's path; a relative one extends it.
            path = config.health_path
            method = "GET"
            url = http.origin + path if path.startswith("/") else http.url("/" + path)
            status, body, ctype = await http.request("GET", path, url=url)
        target = "the function" if config.invoke else f"the health route {config.health_path}"
        error = status_error(status, target)
        if error is not None:
            error.details.update({"status_code": status, "phases": http.phases})
            raise error
        details: dict[str, Any] = {
            "provider": str(config.provider),
            "method": method,
            "status_code": status,
            "content_type": ctype,
            "response_bytes": len(body),
            "phases": http.phases,
        }
    return ProbeOutcome(details=details)


async def _probe_lambda(ctx: ProbeContext, config: ServerlessConfig) -> ProbeOutcome:
    from aiobotocore.config import AioConfig

    phases: dict[str, float] = {}
    resolver = await checked_resolver(ctx, config.endpoint_url, phases)
    session = await aws_session("lambda")
    client_args: dict[str, Any] = {
        "region_name": config.region,
        "endpoint_url": config.endpoint_url,
        "aws_access_key_id": config.access_key_id,
        "aws_secret_access_key": reveal(config.secret_access_key),
        "aws_session_token": reveal(config.session_token),
        "verify": config.tls_verify,
        "config": AioConfig(**aws_config(ctx.timeout, resolver)),
    }
    service = "AWS Lambda"
    try:
        async with session.create_client("lambda", **client_args) as client:
            with timed(phases, "get_function_ms"):
                found = await client.get_function(FunctionName=config.function_name)
            with timed(phases, "dry_run_ms"):
                dry_run = await client.invoke(FunctionName=config.function_name, InvocationType="DryRun")
    except Exception as exc:
        raise map_botocore_error(exc, service, resolver) from exc
    function = found.get("Configuration", {})
    details: dict[str, Any] = {
        "provider": str(config.provider),
        "function_name": function.get("FunctionName"),
        "runtime": function.get("Runtime"),
        "state": function.get("State"),
        "last_modified": function.get("LastModified"),
        "memory_mb": function.get("MemorySize"),
        "package_type": function.get("PackageType"),
        "dry_run_status": dry_run.get("StatusCode"),
        "phases": phases,
    }
    return ProbeOutcome(details=details)
