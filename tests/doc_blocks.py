"""Run the shell recipes of README.md and docs/ as a reader would: the code blocks under a
heading, in a fresh folder, with the installed ``connectord`` script on PATH and no
CONNECTORD_* variable but those a test gives."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from tests.cli_server import SCRIPT

ROOT = Path(__file__).resolve().parents[1]


def blocks(doc: Path, title: str, lang: str) -> list[str]:
    """The ``lang`` code blocks under ``## {title}`` of ``doc``; fails if the heading or the
    blocks are gone (a renamed heading would otherwise leave a recipe untested)."""
    text = doc.read_text()
    assert f"\n## {title}\n" in text, f"{doc.name} has no '## {title}' heading: renamed? update its test"
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    found = re.findall(rf"```{lang}\n(.*?)```", section, re.S)
    assert found, f"no {lang} block under '## {title}' in {doc.name}"
    return found


def run_script(
    script: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run a shell script (``bash -euo pipefail``) in its own process group, which is
    stopped afterwards whatever happened (servers a recipe starts with ``&`` included)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORD_")}
    clean["PATH"] = f"{SCRIPT.parent}{os.pathsep}{clean.get('PATH', '')}"
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env={**clean, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
