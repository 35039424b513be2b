"""The ``connectord`` CLI through its real entry point: typer's runner on the app the console
script calls, a subprocess of the installed script, and a real server for remote mode.

Local-mode tests use a store in a temporary CONNECTORD_DATA_DIR; connector tests connect
to loopback listeners (a bound, listening socket) and to a closed loopback port.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner, Result

from connectord.api.server import ensure_demo_tenant
from connectord.cli import app
from connectord.settings import Settings
from tests.cli_server import CLI_ENV, SCRIPT, free_port, serve

SECRET = "cli-S3cret-value-7e1f"


class Cli:
    """Runs the CLI in-process and keeps every output, to search them for secrets."""

    def __init__(self) -> None:
        self.runner = CliRunner()
        self.seen: list[str] = []

    def __call__(self, *args: str, code: int = 0, input: str | None = None) -> Result:
        result = self.runner.invoke(app, list(args), input=input)
        self.seen.append(result.stdout + result.stderr)
        assert result.exit_code == code, (
            f"connectord {' '.join(args)} -> {result.exit_code}\n{result.stdout}\n{result.stderr}\n"
            f"{result.exception!r}"
        )
        return result

    def json(self, *args: str, code: int = 0, input: str | None = None) -> Any:
        return json.loads(self(*args, "-o", "json", code=code, input=input).stdout)

    def assert_no_secret(self, secret: str = SECRET) -> None:
        leaked = [text for text in self.seen if secret in text]
        assert not leaked, leaked[0]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The CLI on a fresh local store; loopback opened for connector tests."""
    monkeypatch.setenv("CONNECTORD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CONNECTORD_EGRESS_ALLOW", "127.0.0.0/8")
    monkeypatch.setenv("CLI_TEST_SECRET", SECRET)
    for name in CLI_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return Cli()


@pytest.fixture
def listening() -> Iterator[str]:
    """``127.0.0.1:PORT`` of a listening socket: TCP connects succeed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def closed() -> str:
    """``127.0.0.1:PORT`` where nothing listens: connects are refused."""
    return f"127.0.0.1:{free_port()}"


# --- help and basics ------------------------------------------------------------------


def test_help_reads_like_a_tool(cli: Cli) -> None:
    out = cli("--help").stdout
    for word in ("connectors", "types", "audit", "apply", "export", "tenants", "keys", "serve", "secrets"):
        assert f" {word} " in out
    assert "Examples" in out
    assert "Exit codes" in out
    sub = cli("connectors", "--help").stdout
    for word in ("list", "get", "register", "update", "delete", "test", "history"):
        assert f" {word} " in sub
    assert "--secret-env" in cli("connectors", "register", "-h").stdout
    assert "Examples" in cli(code=2).stdout  # no arguments: the help, with the usage-error code


def test_the_installed_script_runs(tmp_path: Path) -> None:
    env = {**os.environ, "CONNECTORD_DATA_DIR": str(tmp_path)}
    env.pop("CONNECTORD_URL", None)
    version = subprocess.run([SCRIPT, "--version"], capture_output=True, text=True, timeout=60, env=env)
    assert version.returncode == 0
    assert version.stdout.startswith("connectord ")
    missing = subprocess.run(
        [SCRIPT, "connectors", "get", "nothing"], capture_output=True, text=True, timeout=60, env=env
    )
    assert missing.returncode == 3
    assert missing.stderr.strip().splitlines() == [
        "error: no connector named 'nothing' (or with that id); see: connectord connectors list"
    ]


# --- connectors, local ----------------------------------------------------------------


def test_register_get_list_update_delete(cli: Cli, listening: str) -> None:
    created = cli.json(
        "connectors", "register", "web", "--connector-type", "custom", "--endpoint", listening,
        "--config", '{"tls": false}', "--metadata", '{"team": "core"}',
        "--secret-env", "password=CLI_TEST_SECRET",
    )  # fmt: skip
    assert created["secret_fields"] == ["password"]
    assert created["config"] == {"tls": False}
    assert cli.json("connectors", "get", "web")["id"] == created["id"]
    assert cli.json("connectors", "get", created["id"])["name"] == "web"
    assert "web" in cli("connectors", "get", "web").stdout
    listed = yaml.safe_load(cli("connectors", "list", "-o", "yaml").stdout)
    assert [c["name"] for c in listed] == ["web"]
    table = cli("connectors", "list").stdout
    assert "web" in table
    assert "registered" in table
    updated = cli.json(
        "connectors", "update", "web", "--name", "web2", "--metadata", '{"team": "edge"}',
        "--status", "disconnected",
    )  # fmt: skip
    assert (updated["name"], updated["metadata"], updated["status"]) == (
        "web2",
        {"team": "edge"},
        "disconnected",
    )
    assert updated["secret_fields"] == ["password"]  # kept: the update did not mention it
    cleared = cli.json("connectors", "update", "web2", "--unset-secret", "password")
    assert cleared["secret_fields"] == []
    assert cleared["config"] == {"tls": False}
    cli("connectors", "update", "web2", "--if-version", "1", "--name", "x", code=4)
    assert cli.json("connectors", "list", "--status", "disconnected")[0]["name"] == "web2"
    assert cli.json("connectors", "list", "--connector-type", "sql") == []
    assert "Deleted" in cli("connectors", "delete", "web2").stderr
    cli("connectors", "get", "web2", code=3)
    cli.assert_no_secret()


def test_secrets_come_from_env_file_or_prompt_never_from_a_flag(cli: Cli, tmp_path: Path) -> None:
    secret_file = tmp_path / "pw.txt"
    secret_file.write_text(SECRET + "\n")
    a = cli.json(
        "connectors",
        "register",
        "a",
        "--connector-type",
        "custom",
        "--secret-file",
        f"password={secret_file}",
    )
    b = cli.json(
        "connectors",
        "register",
        "b",
        "--connector-type",
        "custom",
        "--secret-prompt",
        "password",
        input=SECRET + "\n",
    )
    assert a["secret_fields"] == b["secret_fields"] == ["password"]
    refused = cli(
        "connectors",
        "register",
        "c",
        "--connector-type",
        "custom",
        "--config",
        f'{{"password": "{SECRET}"}}',
        code=2,
    )
    assert "never on the command line" in refused.stderr
    url = cli(
        "connectors",
        "register",
        "d",
        "--connector-type",
        "sql",
        "--endpoint",
        f"postgresql://u:{SECRET}@127.0.0.1/db",
        code=2,
    )
    assert "--secret-prompt password" in url.stderr.replace("\n", " ").replace("│", "")
    clear = cli(
        "connectors",
        "register",
        "e",
        "--connector-type",
        "custom",
        "--secret-env",
        "tls=CLI_TEST_SECRET",
        code=2,
    )
    assert "not a secret field" in clear.stderr
    cli(
        "connectors",
        "register",
        "f",
        "--connector-type",
        "custom",
        "--secret-env",
        "password=NOT_SET_ANYWHERE",
        code=2,
    )
    assert [c["name"] for c in cli.json("connectors", "list")] == ["a", "b"]
    cli.seen = [text for text in cli.seen if "never on the command line" not in text]
    cli.assert_no_secret()


def test_errors_are_one_line_with_documented_codes(cli: Cli) -> None:
    unknown = cli("connectors", "register", "x", "--connector-type", "nope", code=2)
    assert unknown.stderr.startswith("error: unknown connector type 'nope'")
    assert len(unknown.stderr.strip().splitlines()) == 1
    invalid = cli(
        "connectors", "register", "x", "--connector-type", "custom", "--config", '{"tls": "maybe"}', code=2
    )
    assert "config.tls" in invalid.stderr
    cli("connectors", "register", "x", "--connector-type", "custom")
    duplicate = cli("connectors", "register", "x", "--connector-type", "custom", code=4)
    assert duplicate.stderr.startswith("error:")
    cli("connectors", "test", "missing", code=3)
    cli("connectors", "history", "missing", code=3)
    cli("connectors", "test", code=2)  # neither names nor --all
    debug = cli("--debug", "connectors", "get", "missing", code=3)
    assert "Traceback" in debug.stderr
    assert "NotFoundError" in debug.stderr


# --- tests ----------------------------------------------------------------------------


def test_single_tests_report_and_set_the_exit_code(cli: Cli, listening: str, closed: str) -> None:
    cli("connectors", "register", "up", "--connector-type", "custom", "--endpoint", listening)
    cli("connectors", "register", "down", "--connector-type", "custom", "--endpoint", closed)
    both = cli.json(
        "connectors", "register", "up2", "--connector-type", "custom", "--endpoint", listening, "--test"
    )
    assert (both["connector"]["name"], both["test"]["success"]) == ("up2", True)
    ok = cli("connectors", "test", "up").stdout
    assert "✓ up" in ok
    assert "ok in" in ok
    failed = cli("connectors", "test", "up", "down", code=1).stdout
    assert "✗ down" in failed
    assert "refused" in failed
    results = cli.json("connectors", "test", "down", code=1)
    assert results[0]["name"] == "down"
    assert results[0]["details"]["error_kind"] == "refused"
    history = cli.json("connectors", "history", "up")
    assert [r["success"] for r in history] == [True, True]
    assert "ok" in cli("connectors", "history", "up").stdout
    events = cli.json("audit", "--connector", "down")
    assert [e["action"] for e in events] == ["connector.test", "connector.test", "connector.create"]
    assert "connector.test" in cli("audit").stdout


def test_bulk_test_summary_and_exit_code(cli: Cli, listening: str, closed: str) -> None:
    for i in range(4):
        cli("connectors", "register", f"up{i}", "--connector-type", "custom", "--endpoint", listening)
    for i in range(2):
        cli("connectors", "register", f"down{i}", "--connector-type", "custom", "--endpoint", closed)
    cli("connectors", "register", "old", "--connector-type", "custom", "--endpoint", closed)
    cli("connectors", "update", "old", "--status", "deprecated")
    cli("connectors", "register", "web", "--connector-type", "http", "--endpoint", f"http://{closed}/")
    summary = cli("connectors", "test", "--all", "--concurrency", "3", code=1).stdout
    assert "Tested 7 connector(s)" in summary
    assert "4 ok, 3 failed" in summary
    assert "FAILED BY KIND" in summary
    assert "refused" in summary
    assert "✗ down0" in summary
    assert "SLOWEST" in summary
    data = cli.json("connectors", "test", "--all", "--connector-type", "custom", code=1)
    assert (data["tested"], data["ok"], data["failed"]) == (6, 4, 2)
    assert data["failed_by_kind"] == {"refused": 2}
    assert len(data["slowest"]) == 5
    assert {r["name"] for r in data["results"]} == {"up0", "up1", "up2", "up3", "down0", "down1"}
    only_ok = cli.json("connectors", "test", "--status", "connected")
    assert (only_ok["tested"], only_ok["failed"]) == (4, 0)


# --- types, tenants, keys, secrets ----------------------------------------------------


def test_types(cli: Cli) -> None:
    table = cli("types").stdout
    assert "custom" in table
    assert "password" in table
    names = [t["name"] for t in cli.json("types")]
    assert {"custom", "http", "sql", "mcp", "vector", "file", "serverless", "stream"} <= set(names)
    fields = cli("types", "custom").stdout
    assert "tls_verify" in fields
    assert "yes" in fields  # password is secret
    assert cli.json("types", "custom")["config_schema"]["properties"]["password"]
    cli("types", "nope", code=3)


def test_tenants_and_keys(cli: Cli) -> None:
    created = json.loads(cli("tenants", "create", "acme").stdout)
    assert set(created) == {"tenant_id", "key_id", "api_key"}
    assert created["api_key"].startswith("cdk_")
    assert cli("tenants", "create", "beta", "--key-only").stdout.strip().startswith("cdk_")
    cli("tenants", "create", "acme", code=4)
    assert {t["name"] for t in cli.json("tenants", "list")} == {"acme", "beta"}
    key = json.loads(
        cli("keys", "create", "--tenant", "acme", "--name", "ci", "--scope", "connectors:read").stdout
    )
    assert key["scopes"] == ["connectors:read"]
    assert key["tenant_id"] == created["tenant_id"]
    keys = cli.json("keys", "list", "--tenant", "acme")
    assert {k["name"] for k in keys} == {"initial", "ci"}
    assert "ci" in cli("keys", "list", "--tenant", "acme").stdout
    cli("keys", "revoke", key["key_id"], "--tenant", "acme")
    assert next(k for k in cli.json("keys", "list", "--tenant", "acme") if k["name"] == "ci")["revoked_at"]
    cli("keys", "revoke", key["key_id"], "--tenant", "acme", code=3)
    cli("keys", "create", "--tenant", "acme", "--scope", "everything", code=2)
    cli("keys", "list", "--tenant", "nobody", code=3)


def test_the_tenant_option_separates_connectors(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli("connectors", "register", "mine", "--connector-type", "custom")  # the default tenant
    cli("connectors", "list", "--tenant", "acme", code=3)
    cli("tenants", "create", "acme")
    cli("connectors", "register", "theirs", "--connector-type", "custom", "--tenant", "acme")
    monkeypatch.setenv("CONNECTORD_TENANT", "acme")
    assert [c["name"] for c in cli.json("connectors", "list")] == ["theirs"]
    assert [c["name"] for c in cli.json("connectors", "list", "--tenant", "default")] == ["mine"]
    assert {t["name"] for t in cli.json("tenants", "list")} == {"default", "acme"}


def test_secrets_rotate_keeps_secrets_readable(cli: Cli) -> None:
    cli(
        "connectors",
        "register",
        "web",
        "--connector-type",
        "custom",
        "--secret-env",
        "password=CLI_TEST_SECRET",
    )
    report = cli.json("secrets", "rotate", "--new-key")
    assert report["reencrypted"] == 1
    assert len(report["dropped_key_ids"]) == 1
    assert "Re-encrypted 0 secret(s)" in cli("secrets", "rotate").stdout
    # Replacing the config opens the stored secret: it still decrypts under the new key.
    assert cli.json("connectors", "update", "web", "--config", '{"tls": true}')["secret_fields"] == [
        "password"
    ]
    cli.assert_no_secret()


def test_the_old_type_flag_works_with_a_deprecation_note(cli: Cli) -> None:
    registered = cli("connectors", "register", "old", "--type", "custom", "-o", "json")
    assert json.loads(registered.stdout)["connector_type"] == "custom"
    assert "--type is deprecated; use --connector-type" in registered.stderr
    listed = cli("connectors", "list", "--type", "custom", "-o", "json")
    assert [c["name"] for c in json.loads(listed.stdout)] == ["old"]
    assert "deprecated" in listed.stderr
    assert "deprecated" not in cli("connectors", "list", "--connector-type", "custom").stderr
    clash = cli("connectors", "list", "--type", "sql", "--connector-type", "custom", code=2)
    assert "--connector-type only" in clash.stderr
    missing = cli("connectors", "register", "none", code=2)
    assert "--connector-type" in missing.stderr


def test_the_second_start_hint_is_a_command_that_works(tmp_path: Path) -> None:
    """``serve --demo`` on a store with tenants prints a keys-create command; run as printed, from
    another folder and without the server's environment, it makes a key for the demo tenant."""
    settings = Settings(data_dir=tmp_path / "data with space")
    assert "created tenant 'demo'" in asyncio.run(ensure_demo_tenant(settings))
    hint = asyncio.run(ensure_demo_tenant(settings))
    command = next(line.strip() for line in hint.splitlines() if "keys create" in line)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORD_")}
    env.update(PATH=f"{SCRIPT.parent}:{env['PATH']}", HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path))
    done = subprocess.run(
        ["bash", "-c", command + " --key-only"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, (command, done.stderr)
    assert done.stdout.strip(), done.stderr


def test_serve_refuses_a_password_in_a_flag(cli: Cli) -> None:
    refused = cli("serve", "--database-url", f"postgresql://u:{SECRET}@127.0.0.1/db", code=2)
    assert "CONNECTORD_DATABASE_URL" in refused.stderr.replace("\n", " ").replace("│", "")


# --- apply and export -----------------------------------------------------------------

FILE = """\
apiVersion: connectord/v1
connectors:
  - name: web
    connector_type: custom
    endpoint: {endpoint}
    config: {{password: "${{CLI_TEST_SECRET}}"}}
    metadata: {{team: core}}
  - name: other
    type: custom
"""


def test_apply_apply_again_dry_run_prune_and_export_round_trip(
    cli: Cli, tmp_path: Path, listening: str
) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(FILE.format(endpoint=listening))
    dry = cli("apply", "-f", str(path), "--dry-run").stdout
    assert "+ web (custom) create" in dry
    assert "dry run: nothing changed" in dry
    assert cli.json("connectors", "list") == []
    first = cli("apply", "-f", str(path))
    assert "Applied: 2 created." in first.stdout
    assert "note: type: is the old name of connector_type" in first.stderr  # "other" uses type:
    again = cli("apply", "-f", str(path)).stdout
    assert "= web (custom) unchanged" in again
    assert "Nothing to change: 2 unchanged." in again
    path.write_text(FILE.format(endpoint=listening).split("  - name: other")[0])
    kept = cli("apply", "-f", str(path))
    assert "--prune deletes them" in kept.stderr
    pruned = cli("apply", "-f", str(path), "--prune").stdout
    assert "- other (custom) delete" in pruned
    assert [c["name"] for c in cli.json("connectors", "list")] == ["web"]
    exported = tmp_path / "export.yaml"
    cli("export", "-o", str(exported))
    assert "${WEB_PASSWORD}" in exported.read_text()
    assert "connector_type: custom" in exported.read_text()
    assert "Nothing to change: 1 unchanged." in cli("apply", "-f", str(exported)).stdout
    assert "${WEB_PASSWORD}" in cli("export").stdout
    literal = tmp_path / "literal.yaml"
    literal.write_text(path.read_text().replace("${CLI_TEST_SECRET}", SECRET))
    refused = cli("apply", "-f", str(literal), code=2)
    assert "never the value" in refused.stderr
    cli("apply", "-f", str(tmp_path / "missing.yaml"), code=2)
    cli.assert_no_secret()


# --- remote mode: a real server -------------------------------------------------------


@dataclass
class Server:
    """A ``connectord serve`` process on a free loopback port."""

    url: str
    admin_key: str
    data_dir: Path
    log: Path
    tenants: list[str] = field(default_factory=list)

    def tenant_key(self, name: str) -> str:
        """A new tenant on the server and its key."""
        resp = httpx.post(
            f"{self.url}/api/v1/tenants",
            json={"name": name},
            headers={"Authorization": f"Bearer {self.admin_key}"},
        )
        resp.raise_for_status()
        return str(resp.json()["api_key"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server on SQLite with an operator tenant and an admin key made by the CLI itself."""
    with serve(tmp_path_factory.mktemp("server")) as proc:
        yield Server(proc.url, proc.admin_key, proc.data_dir, proc.log)


@pytest.fixture
def remote(cli: Cli, server: Server, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Cli:
    """The CLI pointed at the server with a fresh tenant's key."""
    monkeypatch.setenv("CONNECTORD_URL", server.url)
    monkeypatch.setenv("CONNECTORD_API_KEY", server.tenant_key(f"cli-{request.node.name}"[:60]))
    return cli


def test_remote_connector_commands(remote: Cli, tmp_path: Path, listening: str, closed: str) -> None:
    cli = remote
    created = cli.json(
        "connectors", "register", "web", "--connector-type", "custom", "--endpoint", listening,
        "--secret-env", "password=CLI_TEST_SECRET",
    )  # fmt: skip
    assert created["secret_fields"] == ["password"]
    cli("connectors", "register", "down", "--connector-type", "custom", "--endpoint", closed)
    assert [c["name"] for c in cli.json("connectors", "list")] == ["web", "down"]
    assert cli.json("connectors", "get", "web")["id"] == created["id"]
    assert cli.json("connectors", "update", "web", "--metadata", '{"a": 1}')["metadata"] == {"a": 1}
    cli("connectors", "update", "web", "--if-version", "1", "--name", "x", code=4)
    assert "✓ web" in cli("connectors", "test", "web").stdout
    summary = cli("connectors", "test", "--all", code=1).stdout
    assert "1 ok, 1 failed" in summary
    assert "refused" in summary
    assert len(cli.json("connectors", "history", "web")) == 2
    assert "connector.test" in cli("audit").stdout
    assert "custom" in cli("types").stdout
    exported = tmp_path / "remote.yaml"
    cli("export", "-o", str(exported))
    assert "Nothing to change: 2 unchanged." in cli("apply", "-f", str(exported)).stdout
    exported.write_text(exported.read_text().split("- name: down")[0])
    assert "- down (custom) delete" in cli("apply", "-f", str(exported), "--prune").stdout
    cli("connectors", "delete", "web")
    assert cli.json("connectors", "list") == []
    cli("connectors", "list", "--tenant", "other", code=2)
    cli("secrets", "rotate", code=2)
    cli.assert_no_secret()


def test_remote_tenants_and_keys_need_an_admin_key(remote: Cli, server: Server, tmp_path: Path) -> None:
    cli = remote
    cli("tenants", "list", code=5)  # a tenant key lacks the admin scope
    key_file = tmp_path / "admin.key"
    key_file.write_text(server.admin_key + "\n")
    admin = ("--api-key-file", str(key_file))
    created = json.loads(cli(*admin, "tenants", "create", "remote-acme").stdout)
    assert set(created) == {"tenant_id", "key_id", "api_key"}
    assert "remote-acme" in {
        t["name"] for t in json.loads(cli(*admin, "tenants", "list", "-o", "json").stdout)
    }
    key = json.loads(cli(*admin, "keys", "create", "--tenant", "remote-acme", "--name", "ci").stdout)
    listed = json.loads(cli(*admin, "keys", "list", "--tenant", "remote-acme", "-o", "json").stdout)
    assert {k["name"] for k in listed} == {"initial", "ci"}
    cli(*admin, "keys", "revoke", key["key_id"], "--tenant", created["tenant_id"])
    cli(*admin, "keys", "list", code=2)  # with --url the tenant must be named
    cli.assert_no_secret(server.admin_key)


def test_remote_failures_have_their_exit_codes(
    cli: Cli, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTORD_URL", server.url)
    monkeypatch.setenv("CONNECTORD_API_KEY", "cdk_not-a-key")
    assert cli("connectors", "list", code=5).stderr.startswith("error:")
    monkeypatch.setenv("CONNECTORD_URL", f"http://127.0.0.1:{free_port()}")
    down = cli("connectors", "list", code=6)
    assert "is the server running?" in down.stderr
    cli.assert_no_secret("cdk_not-a-key")
