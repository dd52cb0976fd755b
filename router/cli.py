"""The command line: `stamp-router serve | check | route | demo | dns | etcd | migrate | schema`."""

from __future__ import annotations

import argparse
import os
import sys
import time

import orjson

from router.errors import ConfigError


def _print_json(value) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _load(path: str):
    """The validated config, or None after printing every error (one a line, path first)."""
    from router.config import load_config
    try:
        return load_config(path)
    except ConfigError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return None


def _dns_config_hint(path: str) -> str | None:
    """`check` on a DNS updater config would list every router key as missing or unknown."""
    import tomllib
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except (OSError, ValueError):
        return None
    if "stamps" not in doc and {"provider", "records"} <= doc.keys():
        return f"{path} is a DNS updater config, not a router config: check it with `stamp-router dns check {path}`"
    return None


def cmd_check(args) -> int:
    hint = _dns_config_hint(args.config)
    if hint is not None:
        print(hint, file=sys.stderr)
        return 1
    valid = _load(args.config)
    if valid is None:
        return 1
    # The certificate, key and CA files too, as serve reads them: a pair that would not
    # serve is an error here, not at the first start.
    from router.tls.runtime import TlsRuntime
    try:
        TlsRuntime().prepare(valid)
    except ConfigError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return 1
    cfg = valid.config
    print(f"ok: {args.config}: version {valid.version}, {len(cfg.stamps)} stamps, {len(valid.pins)} pins")
    _print_warnings(valid)
    return 0


def _print_warnings(valid) -> None:
    from router.config.warnings import config_warnings
    from router.errors import format_error
    for path, message in config_warnings(valid):
        print(f"warning: {format_error(path, message)}", file=sys.stderr)


def cmd_route(args) -> int:
    from router.core import ALL_HEALTHY, Facts, build_snapshot, decide
    valid = _load(args.config)
    if valid is None:
        return 1
    extra = {}
    if "jwt" in valid.config.routing.sources or args.token:
        from router.jwt_offline import offline_jwt_sources
        extra = offline_jwt_sources(valid)
    snap = build_snapshot(valid, loaded_at=time.time(), extra_sources=extra)
    facts = Facts.of(method=args.method, host=args.host, tenant=args.tenant, token=args.token,
                     country=args.country, client=args.client)
    decision = decide(facts, snap, ALL_HEALTHY, time.time(), explain=True)
    _print_json(decision.as_dict())
    return 0 if decision.ok else 2


def cmd_schema(args) -> int:
    from router.config import json_schema
    sys.stdout.write(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n")
    return 0


def cmd_serve(args) -> int:
    from router.server import serve
    if args.state_dir:
        # An environment variable, so that every part of this process (and any process it
        # starts) finds the same directory; it overrides control.state_dir.
        from router.control.candidate import STATE_DIR_ENV
        os.environ[STATE_DIR_ENV] = os.path.abspath(args.state_dir)
    return serve(args.config, takeover=args.takeover)


def cmd_demo(args) -> int:
    from router.demo.run import run_demo
    return run_demo(args)


def cmd_dns(args) -> int:
    from router.dns.cli import run as dns_run
    return dns_run(args)


def cmd_dns_check(args) -> int:
    from router.dns.config import load_dns_config
    try:
        cfg = load_dns_config(args.config)
    except ConfigError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return 1
    print(f"ok: {args.config}: provider {cfg.provider.kind}, zone {cfg.provider.zone}, "
          f"{len(cfg.records)} record{'s' if len(cfg.records) != 1 else ''}, owner {cfg.sync.owner_id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from router.cli_help import version_line
    parser = argparse.ArgumentParser(prog="stamp-router", description=__doc__)
    parser.add_argument("--version", action="version", version=version_line(),
                        help="print the version and which build runs, then exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the router and its admin API")
    p.add_argument("-c", "--config", required=True, help="the router config file (TOML, or JSON if it ends in .json)")
    p.add_argument("--state-dir", help="where the last known good config is kept, over control.state_dir "
                   "(also STAMP_ROUTER_STATE_DIR); found even when the config file cannot be read")
    p.add_argument("--takeover", action="store_true",
                   help="take the listening sockets of the router running on this config's state directory "
                        "(an upgrade without a refused connection); it drains once this one serves")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check", help="validate a config: exit 0, or 1 with every error on stderr")
    p.add_argument("config", help="the router config file")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("route", help="explain the routing decision for a request, offline")
    p.add_argument("-c", "--config", required=True, help="the router config file")
    p.add_argument("--tenant", help="the tenant header's value (routing.tenant_header)")
    p.add_argument("--host", help="the Host header's value")
    p.add_argument("--token", help="a JWT, as sent in Authorization: Bearer")
    p.add_argument("--country", help="geo header value (for anonymous requests)")
    p.add_argument("--client", default="127.0.0.1", help="client address (for geo placement)")
    p.add_argument("--method", default="GET", help="the request method (a read-only pin refuses writes)")
    p.set_defaults(func=cmd_route)

    p = sub.add_parser("demo", help="three local demo stamps with the router in front")
    p.add_argument("--port", type=int, default=8080, help="router port")
    p.add_argument("--admin-port", type=int, default=9901, help="admin API port")
    p.add_argument("--base-port", type=int, default=18101, help="first demo stamp port")
    p.add_argument("--data-dir", default=None, help="where the stamps keep their SQLite files and the router "
                   "its state, kept on exit (default: a temporary directory, removed on exit)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("dns", help="the DNS updater")
    dsub = p.add_subparsers(dest="dns_command", required=True)
    q = dsub.add_parser("sync", help="keep weighted DNS records in step with stamp health")
    q.add_argument("-c", "--config", required=True, help="the DNS updater config file (TOML)")
    q.add_argument("--once", action="store_true", help="one pass, then exit")
    q.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    q.add_argument("--force", action="store_true", help="apply a plan over max_change_fraction")
    q.set_defaults(func=cmd_dns)
    q = dsub.add_parser("check", help="validate a DNS updater config offline")
    q.add_argument("config", help="the DNS updater config file (TOML)")
    q.set_defaults(func=cmd_dns_check)

    from router.etcd.cli import add_parser as add_etcd
    add_etcd(sub)
    from router.migrate import add_parser as add_migrate
    add_migrate(sub)

    p = sub.add_parser("schema", help="print the config's JSON Schema")
    p.set_defaults(func=cmd_schema)
    from router.cli_help import finish
    finish(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
