"""Who the client is behind the proxies in front: listen.trusted_proxies.

A peer in trusted_proxies is a load balancer of the operator's, so its X-Forwarded-Proto
is kept and the client is read from X-Forwarded-For: walking the list from the right,
each entry was appended by the hop after it, and the first one that is not a trusted
proxy is the client as the outermost trusted proxy saw it. Entries left of it were
written by the client itself and prove nothing.
"""

from __future__ import annotations

import ipaddress
from typing import Callable

from router.config.addresses import parse_network

Trusted = Callable[[str], bool]


def trust_check(cidrs: list[str]) -> Trusted | None:
    """A predicate over peer addresses; None when nothing is trusted. The proxy asks it once
    per connection (and again after a reload), and per request only to find a client."""
    if not cidrs:
        return None
    nets = tuple(parse_network(c) for c in cidrs)

    def trusted(ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:                # "-": no peer address; or not an address at all
            return False
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped       # a dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d
        return any(addr in net for net in nets)

    return trusted


def forwarded_client(xff: bytes, peer: str, trusted: Trusted) -> str:
    """The client address behind a trusted peer, from its X-Forwarded-For. `peer` when the
    entry found is not an IP address (a trusted proxy writes one; anything else is not
    worth believing), or when there is no entry."""
    entries = xff.decode("latin-1").split(",")
    for entry in reversed(entries):
        entry = entry.strip()
        if not trusted(entry):
            break
    else:
        entry = entries[0].strip()        # trusted all the way: the first hop is the client
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        return peer
