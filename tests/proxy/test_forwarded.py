"""router.proxy.forwarded: which peers are trusted, and the client behind them."""

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from router.proxy.forwarded import forwarded_client, trust_check

TRUSTED = trust_check(["10.0.0.0/8", "fd00::/8", "192.0.2.10"])
PEER = "10.0.0.9"


def test_nothing_configured_trusts_nobody():
    assert trust_check([]) is None


def test_trust_covers_networks_single_addresses_and_ipv4_mapped_peers():
    assert TRUSTED("10.1.2.3") and TRUSTED("fd00::7") and TRUSTED("192.0.2.10") and TRUSTED("::ffff:10.0.0.1")
    assert not TRUSTED("192.0.2.11") and not TRUSTED("11.0.0.1") and not TRUSTED("-") and not TRUSTED("lb")


def test_the_client_is_the_first_untrusted_entry_from_the_right():
    assert forwarded_client(b"198.51.100.7", PEER, TRUSTED) == "198.51.100.7"
    assert forwarded_client(b"198.51.100.7, 10.0.0.5", PEER, TRUSTED) == "198.51.100.7"
    # What the client wrote itself, left of what the proxies saw, is not believed.
    assert forwarded_client(b"203.0.113.66, 198.51.100.7,10.0.0.5", PEER, TRUSTED) == "198.51.100.7"


def test_a_chain_of_trusted_proxies_only_gives_its_first_hop():
    assert forwarded_client(b"10.0.0.1, 10.0.0.2", PEER, TRUSTED) == "10.0.0.1"


def test_an_entry_that_is_not_an_address_gives_the_peer():
    assert forwarded_client(b"unknown", PEER, TRUSTED) == PEER
    assert forwarded_client(b"198.51.100.7:5123, 10.0.0.5", PEER, TRUSTED) == PEER
    assert forwarded_client(b"", PEER, TRUSTED) == PEER


def test_ipv6_clients_come_out_in_one_spelling():
    assert forwarded_client(b"2001:DB8:0::1, fd00::1", PEER, TRUSTED) == "2001:db8::1"


untrusted_v4 = st.ip_addresses(v=4).filter(lambda a: not TRUSTED(str(a)))
trusted_v4 = st.ip_addresses(v=4, network="10.0.0.0/8")


@given(spoofed=st.lists(st.ip_addresses(v=4), max_size=3), client=untrusted_v4,
       hops=st.lists(trusted_v4, max_size=4))
def test_whatever_the_client_prepends_the_hops_behind_it_are_seen_through(spoofed, client, hops):
    header = ", ".join(str(a) for a in [*spoofed, client, *hops]).encode()
    assert ipaddress.ip_address(forwarded_client(header, PEER, TRUSTED)) == client
