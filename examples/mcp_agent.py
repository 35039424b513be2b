"""An agent's view of connectord's MCP gateway: every MCP server of the tenant, one endpoint.

Run it against a ``connectord serve`` with a key that has the ``connectors:use`` scope::

    CONNECTORD_URL=http://127.0.0.1:8080 CONNECTORD_API_KEY=cdk_... \\
        python examples/mcp_agent.py github__search_issues '{"query": "is:open"}'

It lists the tools (named ``<connector>__<tool>``), then calls the one named on the
command line with the JSON arguments given, and prints its text answer. The agent
holds only its connectord key: the servers' own tokens never leave connectord.
It uses nothing but the official MCP SDK (``pip install mcp``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(tool: str, arguments: dict[str, object]) -> None:
    """List the gateway's tools, then call ``tool`` with ``arguments`` and print its answer."""
    url = os.environ["CONNECTORD_URL"] + "/api/v1/mcp"
    auth = {"Authorization": f"Bearer {os.environ['CONNECTORD_API_KEY']}"}
    async with (
        httpx2.AsyncClient(headers=auth, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as gateway,
    ):
        for listed in (await gateway.list_tools()).tools:
            print(listed.name, "-", listed.description)
        result = await gateway.call_tool(tool, arguments)
        text = " ".join(c.text for c in result.content if c.type == "text")
        print(f"{tool} -> {text}" if not result.is_error else f"{tool} failed: {text}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}))
