"""The wheel carries the console's templates and static files (a ``pip install .`` serves it)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "src" / "connectord" / "console"


@pytest.mark.slow
def test_the_wheel_has_every_template_and_static_file(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("connectord-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {
        f"connectord/console/{path.relative_to(CONSOLE).as_posix()}"
        for folder in ("templates", "static")
        for path in (CONSOLE / folder).iterdir()
    }
    assert len(wanted) > 10
    assert wanted <= names, sorted(wanted - names)
