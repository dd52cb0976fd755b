"""`stamp-router demo` (`make run`): three stamps on loopback and the router in front."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import tomllib
from importlib import resources

import orjson
import uvloop
from aiohttp import web

from router.config import validate_document
from router.demo.stamp_app import build_stamp_app
from router.errors import ConfigError
from router.server import run_config


def demo_document(port: int, admin_port: int, base_port: int) -> dict:
    """The embedded demo config, with the ports asked for on the command line."""
    doc = tomllib.loads(resources.files("router.demo").joinpath("demo.toml").read_text())
    doc["listen"]["http"] = f"127.0.0.1:{port}"
    doc["admin"]["listen"] = f"127.0.0.1:{admin_port}"
    for i, stamp in enumerate(doc["stamps"]):
        stamp["backends"] = [f"127.0.0.1:{base_port + i}"]
    return doc


async def _run(args, data_dir: str) -> int:
    os.makedirs(data_dir, exist_ok=True)
    doc = demo_document(args.port, args.admin_port, args.base_port)
    doc["control"] = {**doc.get("control", {}), "state_dir": os.path.join(data_dir, "state")}
    config_path = os.path.join(data_dir, "router.json")
    try:
        valid = validate_document(doc, source="embedded demo", base_dir=data_dir)
    except ConfigError as exc:
        print(exc)
        return 1
    runners = []
    for stamp in valid.config.stamps:
        runner = web.AppRunner(build_stamp_app(stamp.name, os.path.join(data_dir, f"{stamp.name}.sqlite3")),
                               access_log=None, handle_signals=False)
        await runner.setup()
        host, _, port = stamp.backends[0].rpartition(":")
        await web.TCPSite(runner, host, int(port)).start()
        runners.append(runner)
    with open(config_path, "wb") as fh:
        fh.write(orjson.dumps(doc))
    p, a = args.port, args.admin_port
    print(f"""stamp-router demo: three stamps behind the router (data in {data_dir})
  stamps: {', '.join(f'{s.name} ({s.region}) on {s.backends[0]}' for s in valid.config.stamps)}
  router: http://127.0.0.1:{p}    admin: http://127.0.0.1:{a}

Try:
  curl -s -H 'X-Tenant-ID: acme' http://127.0.0.1:{p}/            # pinned to eu-1
  curl -s http://globex.localhost:{p}/                            # subdomain routing, pinned to us-1
  curl -s http://newco.localhost:{p}/                             # unpinned: placed by hash
  curl -s -i -X POST http://initech.localhost:{p}/                # read-only pin: 403
  curl -s 'http://127.0.0.1:{a}/route?tenant=newco'               # the decision, explained
  curl -s http://127.0.0.1:{a}/stamps                             # stamps and backend health
  curl -s http://127.0.0.1:{a}/metrics | grep stamp_router_requests
Each request the router answers is logged below as a JSON line (client, tenant, stamp,
status, time). Ctrl-C stops everything{' and removes ' + data_dir if not args.data_dir else ''}.
""", flush=True)
    try:
        return await run_config(config_path)
    finally:
        for runner in runners:
            await runner.cleanup()


def run_demo(args) -> int:
    uvloop.install()
    # A directory the demo made is the demo's to remove; one the user named is kept.
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="stamp-router-demo-")
    try:
        return asyncio.run(_run(args, data_dir))
    except KeyboardInterrupt:
        return 0
    finally:
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
