"""`stamp-router etcd import FILE` and `stamp-router etcd export`.

Where etcd is: `-c ROUTER_CONFIG` takes `[control.etcd]` from a router's config (TLS and
auth included), or `--endpoints URL[,URL...]` and `--prefix`. Exit codes: 0 done (or, with
--dry-run, planned); 1 an error (invalid file, etcd unreachable or refusing a write).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from typing import TYPE_CHECKING

import orjson

from router.errors import ConfigError
from router.etcd.limits import MAX_TXN_BYTES, MAX_TXN_OPS

if TYPE_CHECKING:
    from router.config.schema import Etcd



def add_parser(sub) -> None:
    p = sub.add_parser("etcd", help="move a config and its pins into and out of etcd")
    esub = p.add_subparsers(dest="etcd_command", required=True)
    q = esub.add_parser("import", help="make etcd hold FILE's config and pins (only the difference is written)")
    q.add_argument("file", help="a router config (TOML or JSON), with its tenants_file if it names one")
    _connection(q)
    q.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    q.add_argument("--max-txn-ops", type=int, default=MAX_TXN_OPS, help="operations per transaction "
                   "(etcd's --max-txn-ops; default %(default)s)")
    q.add_argument("--max-txn-bytes", type=int, default=MAX_TXN_BYTES, help="keys and values per "
                   "transaction, under etcd's --max-request-bytes (default %(default)s)")
    q.set_defaults(func=run_import)
    q = esub.add_parser("export", help="print etcd's config and pins as one JSON config document")
    _connection(q)
    q.add_argument("-o", "--output", help="write here instead of stdout")
    q.add_argument("--tenants-file", help="write the pins to this JSON file, named by the document's tenants_file")
    q.set_defaults(func=run_export)


def _connection(q) -> None:
    q.add_argument("-c", "--config", help="a router config whose [control.etcd] says where etcd is")
    q.add_argument("--endpoints", help="etcd client URLs, comma-separated (instead of -c)")
    q.add_argument("--prefix", help="key prefix (default: the config's, or /stamp-router)")


def _settings(args) -> tuple[Etcd, callable]:
    from router.config.schema import Etcd
    from router.control.candidate import read_bootstrap
    if args.config:
        bootstrap = read_bootstrap(args.config)
        if bootstrap.control.etcd is None:
            raise ConfigError([("control.etcd", f"{args.config} has no [control.etcd]")])
        settings = bootstrap.control.etcd
        resolve = bootstrap.resolve
    elif args.endpoints:
        settings = Etcd(endpoints=[e.strip() for e in args.endpoints.split(",") if e.strip()])
        resolve = os.path.abspath
    else:
        raise ConfigError([("", "say where etcd is: -c ROUTER_CONFIG or --endpoints URL")])
    if args.prefix:
        settings = settings.model_copy(update={"prefix": args.prefix})
    return settings, resolve


def run_import(args) -> int:
    from router.config.load import load_config, read_config_file
    from router.etcd.transfer import config_document
    try:
        valid = load_config(args.file)
        document = config_document(args.file, read_config_file(args.file))
        settings, resolve = _settings(args)
    except ConfigError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return 1
    return asyncio.run(_import(args, settings, resolve, valid, document))


async def _import(args, settings: Etcd, resolve, valid, document: bytes) -> int:
    from router.etcd.layout import Layout, client_for
    from router.etcd.errors import EtcdError
    from router.etcd.transfer import apply_import, plan_import, read_prefix
    layout = Layout(settings.prefix)
    client = client_for(settings, resolve)
    started = time.monotonic()
    try:
        revision, current = await read_prefix(client, layout)
        plan = plan_import(layout, document, valid, current, revision)
        summary = plan.summary()
        summary["transactions"] = len(plan.batches(args.max_txn_ops, args.max_txn_bytes))
        if args.dry_run:
            print(orjson.dumps({"dry_run": True, **summary}).decode())
            return 0
        await apply_import(client, plan, max_ops=args.max_txn_ops, max_bytes=args.max_txn_bytes,
                           progress=lambda done, total: print(f"{done}/{total} transactions", file=sys.stderr))
        summary["seconds"] = round(time.monotonic() - started, 3)
        print(orjson.dumps(summary).decode())
        return 0
    except EtcdError as exc:
        print(f"etcd {settings.prefix}: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.close()


def run_export(args) -> int:
    try:
        settings, resolve = _settings(args)
    except ConfigError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return 1
    return asyncio.run(_export(args, settings, resolve))


async def _export(args, settings: Etcd, resolve) -> int:
    from router.etcd.layout import Layout, client_for
    from router.etcd.errors import EtcdError
    from router.etcd.transfer import export
    client = client_for(settings, resolve)
    try:
        revision, data = await export(client, Layout(settings.prefix))
    except (EtcdError, ValueError) as exc:
        print(f"etcd {settings.prefix}: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.close()
    if args.tenants_file:
        doc = orjson.loads(data)
        with open(args.tenants_file, "wb") as fh:
            fh.write(orjson.dumps(doc.pop("tenants")))
        doc["tenants_file"] = os.path.relpath(os.path.abspath(args.tenants_file),
                                              os.path.dirname(os.path.abspath(args.output or ".")) if args.output else ".")
        data = orjson.dumps(doc)
    if args.output:
        with open(args.output, "wb") as fh:
            fh.write(data)
    else:
        sys.stdout.buffer.write(data + b"\n")
    print(f"exported revision {revision}", file=sys.stderr)
    return 0
