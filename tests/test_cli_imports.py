"""What the SDK and the CLI's quick answers import: the SDK stands apart from the server,
and ``connectord --version`` and ``--help`` load no more than typer needs (issue 10 item 6).

Import sets, not timings: each check runs in a fresh interpreter, so nothing an
earlier test imported can hide an import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from connectord.cli.app import LAZY_COMMANDS

#: Heavy or server-side modules a light import must not pull in.
SERVER_SIDE = (
    "connectord.facade",
    "connectord.store",
    "connectord.secrets",
    "connectord.settings",
    "cryptography",
    "sqlalchemy",
    "fastapi",
    "pydantic_settings",
)
#: What the CLI loads before a command runs: its root and the error tree.
CLI_ROOT = {"connectord", "connectord.cli", "connectord.cli.app", "connectord.errors", "connectord.model"}


def _modules_after(code: str) -> set[str]:
    """The modules loaded in a fresh interpreter after ``code``."""
    report = "import json, sys; print(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"], capture_output=True, text=True, timeout=60, check=False
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def _cli(*args: str) -> str:
    return (
        f"import sys\nsys.argv = ['connectord', *{list(args)!r}]\nfrom connectord.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )


def test_the_sdk_imports_nothing_of_the_server() -> None:
    loaded = _modules_after("import connectord.client")
    assert "connectord.client" in loaded
    assert "httpx" in loaded
    assert [m for m in sorted(loaded) if any(m == p or m.startswith(p + ".") for p in SERVER_SIDE)] == []


def test_the_package_root_imports_lazily() -> None:
    loaded = _modules_after("import connectord\nassert connectord.ConnectorInfo")
    assert {m for m in loaded if m.startswith("connectord")} == {"connectord", "connectord.model"}


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_quick_answers_load_only_the_cli_root(flag: str) -> None:
    loaded = _modules_after(_cli(flag))
    assert {m for m in loaded if m.startswith("connectord")} == CLI_ROOT
    for heavy in (*SERVER_SIDE, "connectord.client", "httpx", "pydantic", "asyncio"):
        assert heavy not in loaded, heavy


def test_running_a_command_loads_it() -> None:
    loaded = _modules_after(_cli("keys", "--help"))
    assert "connectord.cli.operate" in loaded


@pytest.mark.parametrize("name", list(LAZY_COMMANDS))
def test_each_summary_is_the_commands_own(name: str) -> None:
    lazy = LAZY_COMMANDS[name]
    real = lazy.load()
    assert real.name == name
    assert lazy.placeholder().get_short_help_str(1000) == real.get_short_help_str(1000)
    assert getattr(real, "rich_help_panel", None) == lazy.panel
