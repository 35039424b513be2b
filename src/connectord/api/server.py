"""``connectord serve``: uvicorn over the app, configured from Settings."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import os
import resource
import shlex
import signal

import uvicorn

from connectord.admin import Admin
from connectord.api.protocol import GuardedHttpProtocol
from connectord.facade import ConnectorsFacade
from connectord.logs import configure_logging
from connectord.settings import Settings

DEMO_TENANT = "demo"


def app_from_env() -> object:
    """The app factory uvicorn's workers call (settings come from the environment)."""
    from connectord.api.app import create_app

    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    return create_app(settings)


def _export(settings: Settings) -> None:
    """Hand the settings to worker processes through CONNECTORD_* variables."""
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        os.environ[f"CONNECTORD_{name.upper()}"] = str(value)
    for name in ("database_url", "secret_key"):
        secret = getattr(settings, name)
        if secret is not None:
            os.environ[f"CONNECTORD_{name.upper()}"] = secret.get_secret_value()


async def ensure_demo_tenant(settings: Settings) -> str:
    """Create the demo tenant if there is no tenant yet; the message to print."""
    async with ConnectorsFacade(settings=settings) as facade:
        admin = Admin(facade)
        tenants = await admin.list_tenants()
        if tenants:
            # The CLI finds this store only through the same settings: spell them out.
            where = (
                "with this server's CONNECTORD_DATABASE_URL and CONNECTORD_SECRET_KEY set, run"
                if settings.uses_postgres
                else f"run\n\n    CONNECTORD_DATA_DIR={shlex.quote(str(settings.data_dir))}"
            )
            name = next((t.name for t in tenants if t.name == DEMO_TENANT), tenants[0].name)
            return (
                f"tenants exist; to make an API key, {where} connectord keys create "
                f"--tenant {shlex.quote(name)}\n\n(or a new tenant: connectord tenants create NAME)"
            )
        tenant, key = await admin.create_tenant(DEMO_TENANT, actor="serve --demo")
        return (
            f"created tenant {tenant.name!r} ({tenant.id}); its API key, shown once:\n\n"
            f"    export CONNECTORD_API_KEY={key.api_key}\n"
        )


def _opens_loopback(allow: list[str]) -> bool:
    loopback = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    nets = [ipaddress.ip_network(c, strict=False) for c in allow]
    return any(n.version == lo.version and n.overlaps(lo) for n in nets for lo in loopback)


def _connection_cap(wanted: int) -> int:
    """``wanted``, or less if the descriptor limit cannot hold it: clients get at most half
    the process's descriptors, the store, the logs and the probes' sockets the rest. At the
    limit accept() fails and every request waits; below it the cap answers 503 at once.
    The soft limit is raised first as far as the hard limit allows (as Go does)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * wanted
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (OSError, ValueError):
            pass  # refused (a sandbox's policy): live within the soft limit
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft // 2))


def _accept_batch() -> int:
    """asyncio accepts up to ``backlog`` connections at a time, before any is turned away:
    a quarter of the descriptors, so a burst does not take them past the limit."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 2048 if soft == resource.RLIM_INFINITY else max(16, min(2048, soft // 4))


def serve(settings: Settings, *, demo: bool = False) -> None:
    """Run the API until interrupted; prints where it listens and how to get a key."""
    settings.check_safe()
    configure_logging(settings.log_format, settings.log_level)
    if demo:
        print(asyncio.run(ensure_demo_tenant(settings)), flush=True)
    store = "PostgreSQL" if settings.uses_postgres else f"SQLite at {settings.sqlite_path}"
    print(f"connectord listening on http://{settings.host}:{settings.port} (API docs: /docs; store: {store})")
    if _opens_loopback(settings.egress_allow):
        print(
            "note: CONNECTORD_EGRESS_ALLOW opens loopback: connector tests may reach this machine's services"
        )
    shared = [str(r) for r in settings.file_roots if "{tenant}" not in str(r)]
    if shared:
        print(
            f"note: CONNECTORD_FILE_ROOTS {', '.join(shared)} are shared by every tenant; "
            "put {tenant} in a root to give each tenant its own"
        )
    cap = _connection_cap(settings.max_connections)
    if cap < settings.max_connections:
        print(
            f"note: CONNECTORD_MAX_CONNECTIONS lowered to {cap}, half the descriptor limit "
            f"(ulimit -n {resource.getrlimit(resource.RLIMIT_NOFILE)[0]})"
        )
        settings = settings.model_copy(update={"max_connections": cap})
    print(flush=True)
    _export(settings)
    # uvicorn drains on SIGTERM, then raises the signal again with the handler it found:
    # a handler that does nothing makes that a clean exit (0) instead of death by SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(
        "connectord.api.server:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        # Measured on this 2-core machine at 64 connections: the asyncio loop served a
        # bare FastAPI route at 4,430 req/s with p99 20 ms, uvloop at 4,640 req/s with
        # p99 166 ms (it starves some connections under load). Tails matter more.
        loop="asyncio",
        # httptools with read timeouts and a connection cap (api/protocol.py).
        http=GuardedHttpProtocol,
        timeout_keep_alive=settings.keep_alive_timeout,
        # SIGTERM: stop accepting, let in-flight requests (and the tests they run) finish for
        # this long, then cancel what is left (docs/operations.md).
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout),
        access_log=False,
        log_config=None,
        server_header=False,
        backlog=_accept_batch(),
    )
