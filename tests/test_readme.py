"""The README's quickstarts run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _section_code(title: str, lang: str) -> str:
    text = README.read_text()
    section = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(rf"```{lang}\n(.*?)```", section, re.S)
    assert blocks, f"no {lang} block under '## {title}'"
    return "\n".join(blocks)


def test_library_quickstart_runs_as_written(tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(_section_code("Library quickstart", "python"))
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "['password']" in done.stdout
    assert done.stdout.splitlines()[1].startswith("True ")
    assert "s3cret" not in done.stdout + done.stderr
