"""The README's quickstarts run as written: the library, the CLI, the SDK and the REST API (curl),
each as a reader would run it (the installed script on PATH, no CONNECTORD_* set, a fresh folder),
the last two against a real ``connectord serve`` the quickstart starts itself.

A renamed or missing heading fails these tests (it would otherwise leave a quickstart untested).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.cli_server import free_port
from tests.doc_blocks import ROOT, blocks, run_script

README = ROOT / "README.md"
QUICKSTARTS = ("Library quickstart", "CLI quickstart", "SDK quickstart", "REST quickstart")


def _blocks(title: str, lang: str) -> list[str]:
    return blocks(README, title, lang)


def test_every_quickstart_heading_is_there() -> None:
    """One place that names the headings the tests below depend on."""
    headings = re.findall(r"^## (.+)$", README.read_text(), re.M)
    assert [h for h in headings if h.endswith("quickstart")] == list(QUICKSTARTS)


def test_library_quickstart_runs_as_written(tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text("\n".join(_blocks("Library quickstart", "python")))
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "['password']" in done.stdout
    assert done.stdout.splitlines()[1].startswith("True ")
    assert "s3cret" not in done.stdout + done.stderr


def test_readme_cli_quickstart_runs_as_written(tmp_path: Path) -> None:
    script = "\n".join(_blocks("CLI quickstart", "sh")).replace("8000", str(free_port()))
    done = run_script(script, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ web  ok in" in done.stdout
    assert "1 ok, 1 failed" in done.stdout
    assert "exit code 1" in done.stdout
    assert "Nothing to change: 2 unchanged." in done.stdout
    assert "${API_AUTH_TOKEN}" in (tmp_path / "connectors.yaml").read_text()
    assert "s3cret-token" not in done.stdout + done.stderr + (tmp_path / "connectors.yaml").read_text()


def test_readme_sdk_quickstart_runs_as_written(tmp_path: Path) -> None:
    shell, python = _blocks("SDK quickstart", "sh"), _blocks("SDK quickstart", "python")
    assert len(shell) == 2
    assert len(python) == 1
    script = f"{shell[0]}python3 - <<'QUICKSTART'\n{python[0]}QUICKSTART\n{shell[1]}"
    done = run_script(script.replace("8080", str(free_port())), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr + (tmp_path / "serve.log").read_text()
    lines = done.stdout.splitlines()
    assert lines[0].startswith("True ")
    assert lines[0].endswith(" 200")
    assert lines[1] == "self connected 2"
    assert lines[2].startswith("refused: ")


def test_readme_rest_quickstart_runs_as_written(tmp_path: Path) -> None:
    script = "\n".join(_blocks("REST quickstart", "sh"))
    done = run_script(script.replace("8080", str(free_port())), tmp_path)
    log = (tmp_path / "serve.log").read_text() if (tmp_path / "serve.log").exists() else ""
    assert done.returncode == 0, done.stdout + done.stderr + log
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    # The outputs the README shows in its comments, one per curl that prints.
    shown = [json.loads(c) for c in re.findall(r"^# (\{.*\})$", script, re.M)]
    assert (
        printed
        == shown
        == [
            {"name": "self", "connector_type": "http", "status": "registered"},
            {"success": True, "status_code": 200},
        ]
    )


def test_readme_receiving_webhooks_runs_as_written(tmp_path: Path) -> None:
    """The receiver verifies the delivery's signature with the reference package and prints it."""
    shell, python = _blocks("Receiving webhooks", "sh"), _blocks("Receiving webhooks", "python")
    assert len(shell) == 2
    assert len(python) == 1
    script = f"{shell[0]}python3 - <<'RECEIVER'\n{python[0]}RECEIVER\n{shell[1]}"
    script = script.replace("8080", str(free_port())).replace("8090", str(free_port()))
    done = run_script(script, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr + (tmp_path / "serve.log").read_text()
    assert done.stdout.splitlines() == ["connector.created orders"]


def test_readme_proxy_example_runs_as_written(tmp_path: Path) -> None:
    """The service reads the registry through the proxy with the connector's read key, and
    the key appears nowhere in what it gets or prints."""
    shell, python = (
        _blocks("A service using a connector through the proxy", "sh"),
        _blocks("A service using a connector through the proxy", "python"),
    )
    assert len(shell) == 2
    assert len(python) == 1
    script = f"{shell[0]}python3 - <<'EXAMPLE'\n{python[0]}EXAMPLE\n{shell[1]}"
    done = run_script(script.replace("8080", str(free_port())), tmp_path)
    log = tmp_path / "serve.log"
    assert done.returncode == 0, done.stdout + done.stderr + (log.read_text() if log.exists() else "")
    assert done.stdout.splitlines() == ["200 ['registry-api']", "True False"]
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_readme_gateway_example_runs_as_written(tmp_path: Path) -> None:
    """The agent lists the MCP server's tool through the gateway, prefixed, and calls it."""
    title = "An agent using the MCP gateway"
    shell, python = _blocks(title, "sh"), _blocks(title, "python")
    assert len(shell) == 3
    assert len(python) == 2
    script = (
        f"{shell[0]}cat > weather.py <<'SERVER'\n{python[0]}SERVER\n{shell[1]}"
        f"python3 - <<'AGENT'\n{python[1]}AGENT\n{shell[2]}"
    )
    script = script.replace("8080", str(free_port())).replace("8001", str(free_port()))
    done = run_script(script, tmp_path)
    log = "".join(p.read_text() for p in (tmp_path / "serve.log", tmp_path / "weather.log") if p.exists())
    assert done.returncode == 0, done.stdout + done.stderr + log
    assert done.stdout.splitlines()[-2:] == ["['weather__forecast']", "sunny in Lyon"]
