"""Webhooks: what the outbox costs a connector write, and how fast the worker drains it.

1. Writes: ``register_connector`` N times on SQLite (or PostgreSQL with ``--database-url``)
   with no webhook, then with one webhook subscribed to ``connector.created`` (each write
   then also inserts its event and one delivery, in the same transaction). Prints writes/s
   and the cost per write of the outbox.
2. Delivery: one :class:`DeliveryWorker` drains those N deliveries to a loopback receiver
   (aiohttp, answers 204, in this process), each a signed POST over a fresh,
   egress-checked connection. Prints deliveries/s and the CPU per delivery.

    .venv/bin/python bench/webhooks.py                 # N=2,000 on SQLite
    .venv/bin/python bench/webhooks.py --n 5000 --database-url postgresql://postgres@127.0.0.1/bench \\
        --secret-key "$(python -c 'import base64,os;print(base64.b64encode(os.urandom(32)).decode())')"
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from aiohttp import web

from connectord.facade import ConnectorsFacade
from connectord.notify.delivery import DeliveryWorker
from connectord.settings import Settings


async def _receiver() -> tuple[web.AppRunner, str, list[int]]:
    count = [0]

    async def take(request: web.Request) -> web.Response:
        await request.read()
        count[0] += 1
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/hooks", count


async def _writes(facade: ConnectorsFacade, tenant: str, n: int, prefix: str) -> float:
    start = time.perf_counter()
    for i in range(n):
        await facade.register_connector(tenant, f"{prefix}-{i}", "custom", endpoint="127.0.0.1:9")
    return time.perf_counter() - start


async def main(args: argparse.Namespace) -> None:
    extra = {"database_url": args.database_url, "secret_key": args.secret_key} if args.database_url else {}
    settings = Settings(data_dir=tempfile.mkdtemp(), egress_allow=["127.0.0.0/8"], **extra)
    runner, url, received = await _receiver()
    async with ConnectorsFacade(settings=settings) as facade:
        tenant = f"bench-{time.time_ns()}"
        bare = await _writes(facade, tenant, args.n, "plain")
        hook, _ = await facade.create_webhook(tenant, url, ["connector.created"])
        hooked = await _writes(facade, tenant, args.n, "hooked")
        print(f"writes, no webhook:   {args.n / bare:8.0f}/s  ({bare / args.n * 1e6:6.0f} us each)")
        print(
            f"writes, one webhook:  {args.n / hooked:8.0f}/s  ({hooked / args.n * 1e6:6.0f} us each, "
            f"+{(hooked - bare) / args.n * 1e6:.0f} us for the event and its delivery)"
        )

        worker = DeliveryWorker(facade)
        cpu, start = time.process_time(), time.perf_counter()
        while received[0] < args.n:
            if await worker.run_once() == 0:
                await asyncio.sleep(0.01)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        page = await facade.webhook_deliveries(hook.id, tenant, limit=1)
        assert page.items[0].status == "delivered"
        print(
            f"deliveries:           {args.n / wall:8.0f}/s  ({cpu / args.n * 1e6:6.0f} us CPU each, "
            f"receiver included; {args.n} in {wall:.1f} s)"
        )
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--database-url")
    parser.add_argument("--secret-key")
    asyncio.run(main(parser.parse_args()))
