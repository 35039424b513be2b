"""Drivers are imported before a test's clock starts, in a thread (issue 10.8: the first mcp
test used to report the SDK's half-second import as latency, and block the loop with it)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from connectord.types.registry import DRIVERS

SCRIPT = """
import asyncio, json, sys, threading
from connectord.facade import ConnectorsFacade
from connectord.settings import Settings

async def main(data_dir):
    async with ConnectorsFacade(settings=Settings(data_dir=data_dir)) as facade:
        before = "mcp.client.sse" in sys.modules
        main_thread = threading.get_ident()
        seen = []
        import builtins
        original = builtins.__import__
        def spy(name, *args, **kwargs):
            if name.startswith("mcp") and name not in sys.modules:
                seen.append(threading.get_ident() == main_thread)
            return original(name, *args, **kwargs)
        builtins.__import__ = spy
        try:
            await facade.runner.load_drivers("mcp")
        finally:
            builtins.__import__ = original
        print(json.dumps({"before": before, "after": "mcp.client.sse" in sys.modules,
                          "on_main_thread": any(seen)}))

asyncio.run(main(sys.argv[1]))
"""


def test_every_preloaded_module_exists() -> None:
    for driver in DRIVERS:
        if all(importlib.util.find_spec(m) is not None for m in driver.modules):
            for module in driver.preload:
                assert importlib.util.find_spec(module) is not None, (driver.provider, module)


def test_load_drivers_imports_in_a_thread(tmp_path: object) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120, check=True
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"before": False, "after": True, "on_main_thread": False}
