"""The probe runner: run a type's probe under its timeout and turn every outcome into
a :class:`TestResult`.

It knows nothing of the store or tenants' rows: it takes a type name, an
endpoint, the public config and the decrypted secrets. The facade calls it for
saved and unsaved connectors alike; a scheduler can call it the same way.
Failures never escape: a probe error, a timeout, a missing driver, an invalid
config and a probe's own bug each become a failed result with an
``error_kind``, with the secrets' values redacted from every message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from connectord.errors import ProbeError, UnknownConnectorTypeError, ValidationError
from connectord.model import ErrorKind, TestResult, utcnow
from connectord.network import EgressPolicy, Network
from connectord.network.files import tenant_roots
from connectord.redaction import Scrubber
from connectord.secret_refs import ReferenceResolver, reference_policy, without_references
from connectord.secrets import SecretTree, leaf_values, overlay
from connectord.settings import Settings
from connectord.types.base import ConnectorConfig, ProbeContext
from connectord.types.registry import TypeRegistry
from connectord.validation import check_config

logger = logging.getLogger("connectord")

#: Called with (connector type, result) after every probe run.
TestObserver = Callable[[str, TestResult], None]


class ProbeRunner:
    """Runs probes with the server's limits (timeouts, egress policy, file roots).

    ``observers`` are called after every run (the metrics hook).
    """

    def __init__(self, registry: TypeRegistry, settings: Settings, egress: EgressPolicy) -> None:
        self.registry = registry
        self.settings = settings
        self.egress = egress
        self.observers: list[TestObserver] = []
        #: Reads secret references when a test runs (``connectord.secret_refs``).
        self.references = ReferenceResolver(
            reference_policy(settings),
            ttl=settings.secret_ref_ttl,
            aws_endpoint_url=settings.secret_ref_aws_endpoint_url,
            aws_region=settings.secret_ref_aws_region,
        )
        self._loaded: set[str] = set()

    async def run(
        self,
        type_name: str,
        endpoint: str | None,
        public: Mapping[str, Any],
        secrets: SecretTree,
        tenant_id: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> tuple[TestResult, list[str] | None]:
        """Test one definition of a tenant: the result (``connector_id`` empty) and, when
        the probe learned them, the capabilities it found. The tenant picks its file roots;
        ``options`` go to the probe (``ProbeContext.options``: a saved connector's OAuth 2.0
        token source, ``connectord.types._http_config.OAUTH_TOKEN``)."""
        try:
            # Secret references (env:, file:, aws-sm:) are read now, outside the test's clock.
            secrets = await self.references.resolve(secrets, tenant_id)
        except ProbeError as exc:
            # A reference names where a secret lives, not the secret: the message may say it.
            secrets = without_references(secrets)
            result, capabilities = _failure(exc.kind, exc.message, time.perf_counter(), utcnow()), None
        else:
            result, capabilities = await self._probe(type_name, endpoint, public, secrets, tenant_id, options)
        # Every result, success or failure, before anyone sees or stores it: a server may
        # echo a credential back into a header the probe reports (docs/security.md). A
        # connector without secrets has nothing to scrub: the walk over the details cost
        # 2-3 % of a scheduled check of one (bench/scheduler.py).
        values = leaf_values(secrets)
        if values:
            scrubber = Scrubber(values)
            result.error = scrubber.text(result.error) if result.error else result.error
            result.details = scrubber.details(result.details)
        for observe in self.observers:
            observe(type_name, result)
        return result, capabilities

    async def load_drivers(self, type_name: str) -> None:
        """Import a type's drivers in a thread and run its :meth:`ConnectorType.prepare`, once:
        the first test's latency then measures the test, not the import (mcp: about half a
        second) or botocore's data files (S3: about 0.4 s), and the loop never waits on them."""
        if type_name not in self._loaded:
            await asyncio.to_thread(self.registry.load_drivers, type_name)
            try:
                ctype = self.registry.get(type_name)
            except UnknownConnectorTypeError:
                return  # the test itself says so
            try:
                await ctype.prepare()
            except Exception:  # noqa: BLE001 - a failed warm-up only leaves the first test slower
                logger.warning("the %s type's preparation failed; its first test does it", type_name)
            self._loaded.add(type_name)

    async def _probe(
        self,
        type_name: str,
        endpoint: str | None,
        public: Mapping[str, Any],
        secrets: SecretTree,
        tenant_id: str | None,
        options: Mapping[str, Any] | None = None,
    ) -> tuple[TestResult, list[str] | None]:
        await self.load_drivers(type_name)
        tested_at = utcnow()
        start = time.perf_counter()
        timeout = self.settings.probe_timeout
        try:
            ctype = self.registry.get(type_name)
            config = check_config(ctype, overlay(public, secrets))
            timeout = min(config.timeout or self.settings.probe_timeout, self.settings.probe_timeout_max)
            async with asyncio.timeout(timeout):  # no extra task, unlike wait_for
                outcome = await ctype.probe(self._context(endpoint, config, timeout, tenant_id, options))
        except ProbeError as exc:
            return _failure(exc.kind, exc.message, start, tested_at, exc.details), None
        except ModuleNotFoundError as exc:  # a driver not installed: name the command that installs it
            missing = self.registry.missing_driver(type_name, exc)
            return _failure(missing.kind, missing.message, start, tested_at), None
        except TimeoutError:
            return _failure(ErrorKind.TIMEOUT, f"no answer within {timeout:g} s", start, tested_at), None
        except ValidationError as exc:
            return _failure(ErrorKind.INVALID_CONFIG, exc.message, start, tested_at), None
        except Exception as exc:  # noqa: BLE001 - a probe bug must not become a 500
            logger.warning(
                "probe of a %s connector failed unexpectedly: %s: %s",
                type_name,
                type(exc).__name__,
                Scrubber(leaf_values(secrets)).text(str(exc)),
            )
            return _failure(
                ErrorKind.INTERNAL,
                f"the {type_name} probe failed unexpectedly ({type(exc).__name__})",
                start,
                tested_at,
            ), None
        latency = round((time.perf_counter() - start) * 1000)
        return TestResult(True, "", latency, None, outcome.details, tested_at), outcome.capabilities

    def _context(
        self,
        endpoint: str | None,
        config: ConnectorConfig,
        timeout: float,
        tenant_id: str | None,
        options: Mapping[str, Any] | None = None,
    ) -> ProbeContext:
        return ProbeContext(
            endpoint=endpoint,
            config=config,
            timeout=timeout,
            network=Network(
                self.egress,
                file_roots=tenant_roots((str(p) for p in self.settings.file_roots), tenant_id),
                file_denied=(str(self.settings.data_dir),),
            ),
            options=dict(options or {}),
        )


def _failure(
    kind: ErrorKind, message: str, start: float, tested_at: datetime, details: Mapping[str, Any] | None = None
) -> TestResult:
    latency = round((time.perf_counter() - start) * 1000)
    return TestResult(False, "", latency, message, {**(details or {}), "error_kind": str(kind)}, tested_at)
