"""End to end: in a network namespace with only ``lo``, a connector to a private
and to a link-local (cloud metadata) address is refused by the egress policy.

The facade runs inside the namespace (``ip netns exec``), so even a broken
policy could not send a packet off the machine: there is no route but
loopback. Skipped, with the reason, where a namespace cannot be made (not
root, no iproute2).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import asyncio, json, tempfile
from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.settings import Settings

TARGETS = {
    "private": "http://10.1.2.3/",
    "link_local": "http://169.254.169.254/latest/meta-data",
}

async def main():
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=data_dir, egress_allow=[])
        async with ConnectorsFacade(settings=settings) as facade:
            tenant, _ = await Admin(facade).create_tenant("netns")
            results = {}
            for name, url in TARGETS.items():
                info = await facade.register_connector(
                    tenant.id, name, "http", endpoint=url, config={"timeout": 3}
                )
                result = await facade.test_connector(info.id, tenant.id)
                results[name] = result.to_dict()
    print(json.dumps(results))

asyncio.run(main())
"""


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def namespace() -> Iterator[str]:
    """A fresh namespace with only ``lo`` (up); deleted afterwards."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (the `ip` command) is not installed")
    name = f"cdtest-{secrets.token_hex(4)}"
    made = _ip("netns", "add", name)
    if made.returncode != 0:
        pytest.skip(f"`ip netns add` failed (root and iproute2 are needed): {made.stderr.strip()}")
    try:
        up = _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        assert up.returncode == 0, up.stderr
        yield name
    finally:
        _ip("netns", "delete", name)


def test_private_and_link_local_are_refused_in_a_loopback_only_namespace(namespace: str) -> None:
    links = _ip("netns", "exec", namespace, "ip", "-o", "link", "show")
    names = [line.split(":")[1].strip() for line in links.stdout.splitlines()]
    assert names == ["lo"], f"the namespace must have only lo, it has {names}"  # else never run the script

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORD_")}
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(results) == {"private", "link_local"}
    for name, result in results.items():
        assert result["success"] is False, name
        assert result["details"]["error_kind"] == "egress_denied", (name, result)
        assert "egress policy" in result["error"]
    assert "10.1.2.3" in results["private"]["error"]
    assert "169.254.169.254" in results["link_local"]["error"]
