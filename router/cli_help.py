"""What `stamp-router --help`, `--version` and each subcommand's --help say.

Subcommands are added by several modules (router.cli, router.etcd.cli, ...); finish()
runs over the whole parser once it is built, so each gets its paragraph from DESCRIPTIONS
(or its one-line help) and every option's help shows its default.
"""

from __future__ import annotations

import argparse
from importlib import metadata

from router.build import current

DESCRIPTIONS = {
    "serve": "Run the router: the proxy on listen.http and the admin API on admin.listen. It starts "
             "from the config file (or control.url), or from the last known good config in the state "
             "directory when those cannot be used, and reloads on change. SIGTERM drains; exit 1 when "
             "there is nothing valid to serve.",
    "check": "Validate a router config the way the router does before taking one, its certificate, "
             "key and CA files included (read and checked as serve would). Prints `ok: ...` "
             "and exit 0, or every error on stderr, one a line with its field path, and exit 1. "
             "Warnings (valid, but probably not meant) follow `ok` on stderr.",
    "route": "Explain, offline, what the router would do with a request: which source gives the "
             "tenant, the stamp and why, the backends, or the refusal with its status. --tenant, "
             "--host and --token may be given together: the sources are tried in routing.sources "
             "order and the explanation shows which one won. Exit 0 when the request would be "
             "forwarded, 2 when refused, 1 for a bad config.",
    "demo": "Three demo stamps (small aiohttp apps with SQLite) on loopback and the router in front, "
            "printing an access line per request. Ctrl-C stops everything and removes the "
            "temporary data directory.",
    "dns": "The DNS updater: keeps weighted DNS records for the stamps' public addresses in step "
           "with their health (docs/dns.md).",
    "dns sync": "Read the stamps' health from the router registry, plan the DNS changes, refuse an "
                "unsafe plan unless --force, apply it and read it back; every sync.interval, or once. "
                "Exit 0 ok, 1 error, 2 plan refused.",
    "dns check": "Validate a DNS updater config offline (no registry, no DNS server is contacted): "
                 "exit 0, or 1 with every error and its field path.",
    "migrate": "Move a tenant to another stamp across every router that serves it, through their admin "
               "APIs: pause it everywhere, wait until no router has anything of it in flight, run the hook "
               "once, flip the pin everywhere, release. A router that does not answer before the flip rolls "
               "the move back everywhere; after the flip began, the flip is retried until every router took "
               "it. Exit 0 completed, 1 rolled back or refused, 2 failed (the JSON on stdout says which "
               "routers hold what). Guarantee and limits: docs/operations.md.",
    "schema": "Print the router config's JSON Schema (what config/schema.json holds).",
}


def version_line() -> str:
    try:
        version = metadata.version("stamp-router")
    except metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    return f"stamp-router {version} ({current().describe()})"


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, when it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or "default" in text or default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)".lstrip()


def finish(parser: argparse.ArgumentParser, path: str = "") -> None:
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                full = f"{path} {name}".strip()
                if sub.description is None:
                    sub.description = DESCRIPTIONS.get(full) or helps.get(name)
                finish(sub, full)
