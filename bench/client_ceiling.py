"""What this machine allows a probe client at all (not a test).

Sends N GET requests, C at once, each on a fresh connection, to a minimal
asyncio HTTP server in another process on loopback, first with aiohttp (the
http probe's client) and then with bare asyncio streams (no HTTP library):
the ceiling any recorded-test rate in bench/probes.py stands under.

    .venv/bin/python bench/client_ceiling.py [--n 5000] [--concurrency 200]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time

SERVER = r"""
import asyncio, sys

class Answer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if b"\r\n\r\n" in data:
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            self.transport.close()

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Answer, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await server.serve_forever()

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def measure(port: int, n: int, concurrency: int) -> None:
    import aiohttp

    await asyncio.sleep(1)  # the server process starts
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0)) as session:

        async def with_aiohttp() -> None:
            async with gate, session.get(f"http://127.0.0.1:{port}/") as response:
                await response.read()

        start = time.perf_counter()
        await asyncio.gather(*(with_aiohttp() for _ in range(n)))
        print(f"aiohttp, fresh connection each:  {n / (time.perf_counter() - start):7.0f} requests/s")

    async def with_streams() -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            await reader.read()
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(with_streams() for _ in range(n)))
    print(f"asyncio streams, no HTTP library: {n / (time.perf_counter() - start):7.0f} requests/s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        asyncio.run(measure(port, args.n, args.concurrency))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
