"""docs/operations.md's recipes run as written: several replicas on PostgreSQL, the key
ring's rotation, API keys made and revoked. Each block is taken from the document (a
renamed heading or a missing block fails), run by bash with the installed script, with
only what cannot run here replaced: the database (one the test creates), ``0.0.0.0``
(loopback instead) and the ports (free ones)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectord.errors import SecretsError
from connectord.facade import ConnectorsFacade
from connectord.secrets import new_ring_entry
from connectord.settings import Settings
from tests.cli_server import free_port, serve
from tests.doc_blocks import ROOT, blocks, run_script

OPERATIONS = ROOT / "docs" / "operations.md"
DOC_DATABASE = "postgresql://connectord@db.internal:5432/connectord"

pytestmark = pytest.mark.postgres


def _on_loopback(script: str, database_url: str) -> tuple[str, dict[str, int]]:
    """The recipe with the test's database, loopback binds and free ports (and the ports)."""
    assert DOC_DATABASE in script
    ports = {doc_port: free_port() for doc_port in (8080, 8081)}
    script = script.replace(DOC_DATABASE, database_url).replace("0.0.0.0", "127.0.0.1")
    for doc_port, port in ports.items():
        script = script.replace(str(doc_port), str(port))
    return script, ports


def _documents(text: str) -> list[Any]:
    """The JSON documents printed one after another (curl adds no newline)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        document, at = decoder.raw_decode(text, at)
        found.append(document)
        while at < len(text) and text[at].isspace():
            at += 1
    return found


def test_the_replicas_recipe_runs_as_written(tmp_path: Path, fresh_pg_url: str) -> None:
    """Two replicas and a worker on one database and one generated ring: both replicas are
    ready, and a key the CLI made on the database works on the other replica."""
    (recipe,) = blocks(OPERATIONS, "Several replicas on PostgreSQL", "sh")
    script, ports = _on_loopback(recipe, fresh_pg_url)
    # The replicas' logs go to files, so the recipe's own output is what the test reads.
    script = script.replace(" &", " >>replicas.log 2>&1 &")
    done = run_script(script, tmp_path)
    log = (tmp_path / "replicas.log").read_text() if (tmp_path / "replicas.log").exists() else ""
    assert done.returncode == 0, done.stdout + done.stderr + log
    ready, created, tenants = _documents(done.stdout)
    assert ready == {"status": "ok"}  # the first replica's /readyz
    # The tenant the CLI made on the database, read on the second replica with its key.
    assert [t["id"] for t in tenants["items"]] == [created["tenant_id"]]
    assert f"127.0.0.1:{ports[8081]}" in log
    assert "Traceback" not in log


async def _secret_states(settings: Settings, connector_id: str, tenant_id: str) -> list[str]:
    async with ConnectorsFacade(settings=settings) as facade:
        return sorted(await facade.secret_states(connector_id, tenant_id))


async def _register(settings: Settings) -> tuple[str, str]:
    async with ConnectorsFacade(settings=settings) as facade:
        info = await facade.register_connector(
            "acme",
            "orders-api",
            "http",
            "http://127.0.0.1:9/",
            {"auth": {"kind": "bearer", "token": "rotation-recipe-token"}},
        )
        return info.id, info.tenant_id


def test_the_key_ring_rotation_recipe_runs_as_written(tmp_path: Path, fresh_pg_url: str) -> None:
    """After the recipe, a process given only the new ring opens every secret, and one
    given only the old ring opens none."""
    old = new_ring_entry("old")
    before = Settings(database_url=fresh_pg_url, secret_key=old, data_dir=tmp_path / "unused")
    connector_id, tenant_id = asyncio.run(_register(before))
    (recipe,) = blocks(OPERATIONS, "Keys: the key ring and API keys", "sh")[:1]
    script = recipe + 'printf %s "$CONNECTORD_SECRET_KEY" > ring.txt\n'
    env = {"CONNECTORD_DATABASE_URL": fresh_pg_url, "CONNECTORD_SECRET_KEY": old}
    done = run_script(script, tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Re-encrypted 1 secret(s)" in done.stdout
    new = (tmp_path / "ring.txt").read_text()
    assert new
    assert old not in new
    assert "," not in new
    after = Settings(database_url=fresh_pg_url, secret_key=new, data_dir=tmp_path / "unused")
    assert asyncio.run(_secret_states(after, connector_id, tenant_id)) == ["auth.token"]
    with pytest.raises(SecretsError):
        asyncio.run(_secret_states(before, connector_id, tenant_id))
    assert "rotation-recipe-token" not in done.stdout + done.stderr


def test_the_api_key_recipe_runs_as_written(tmp_path: Path) -> None:
    """The key the recipe makes works on a running server until the recipe revokes it."""
    recipe = blocks(OPERATIONS, "Keys: the key ring and API keys", "sh")[1]
    create, rest = recipe.split("\n", 1)
    with serve(tmp_path / "data") as server:
        env = {"CONNECTORD_DATA_DIR": str(server.data_dir)}
        made = run_script("connectord tenants create acme >/dev/null\n" + create, tmp_path, env)
        assert made.returncode == 0, made.stdout + made.stderr
        key = json.loads((tmp_path / "ci.json").read_text())
        assert key["scopes"] == ["connectors:read", "connectors:test"]
        auth = {"Authorization": f"Bearer {key['api_key']}"}
        assert httpx.get(f"{server.url}/api/v1/connectors", headers=auth).status_code == 200
        done = run_script(rest, tmp_path, env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "ci" in done.stdout  # the list
        # Revoked by another process (the CLI): refused once the server's cached lookup
        # ends, CONNECTORD_KEY_CACHE_TTL (1 s) after the recipe's revocation at the latest.
        deadline = time.monotonic() + 1.0 + 0.5
        while (refused := httpx.get(f"{server.url}/api/v1/connectors", headers=auth)).status_code == 200:
            assert time.monotonic() < deadline, "the revoked key was still accepted after the bound"
            time.sleep(0.05)
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert key["api_key"] not in done.stdout + done.stderr
