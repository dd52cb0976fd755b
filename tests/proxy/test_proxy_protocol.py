"""router.proxy.proxy_protocol: PROXY protocol v1 and v2 headers, sans IO."""

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.proxy.proxy_protocol import V2_SIGNATURE, ProxyHeaderError, parse

REQUEST = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def v2(command: int = 1, family: int = 0x11, body: bytes | None = None, tlvs: bytes = b"") -> bytes:
    if body is None:
        body = ipaddress.ip_address("198.51.100.7").packed + ipaddress.ip_address("10.0.0.1").packed + \
            struct.pack("!HH", 51234, 443)
    body += tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


SSL_CLIENT = b"\x20\x00\x05\x01\x00\x00\x00\x00"        # PP2_TYPE_SSL, client used TLS, verified
SSL_NOT = b"\x20\x00\x05\x00\x00\x00\x00\x00"           # PP2_TYPE_SSL without PP2_CLIENT_SSL
AWS_VPCE = b"\xea\x00\x06\x01vpce1"                        # PP2_TYPE_AWS: skipped


@pytest.mark.parametrize("header, address, tls", [
    (b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\n", "198.51.100.7", False),
    (b"PROXY TCP6 2001:DB8::7 2001:db8::1 51234 443\r\n", "2001:db8::7", False),
    (b"PROXY UNKNOWN\r\n", None, False),
    (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None, False),
    (v2(), "198.51.100.7", False),
    (v2(tlvs=SSL_CLIENT), "198.51.100.7", True),
    (v2(tlvs=AWS_VPCE + SSL_CLIENT), "198.51.100.7", True),
    (v2(tlvs=SSL_NOT), "198.51.100.7", False),
    (v2(tlvs=SSL_CLIENT[:5]), "198.51.100.7", False),                  # a torn TLV claims nothing
    (v2(family=0x21, body=ipaddress.ip_address("2001:db8::7").packed + bytes(16) + bytes(4)), "2001:db8::7", False),
    (v2(command=0, body=b""), None, False),                            # LOCAL: the balancer's own check
    (v2(family=0x00, body=b""), None, False),                          # UNSPEC
    (v2(family=0x31, body=bytes(216)), None, False),                   # a UNIX socket
])
def test_a_valid_header_gives_its_length_the_client_and_whether_it_spoke_tls(header, address, tls):
    assert parse(header + REQUEST) == (len(header), address, tls)


@pytest.mark.parametrize("data, problem", [
    (REQUEST, "does not start with a PROXY protocol header"),
    (b"\x16\x03\x01\x02\x00", "does not start with a PROXY protocol header"),   # a TLS hello
    (b"PROXY TCP4 198.51.100.7 10.0.0.1 51234\r\n", "two addresses and two ports"),
    (b"PROXY TCP4 2001:db8::7 10.0.0.1 51234 443\r\n", "does not match its family"),
    (b"PROXY TCP4 198.51.100.777 10.0.0.1 51234 443\r\n", "invalid address"),
    (b"PROXY TCP4 198.51.100.7 10.0.0.1 65536 443\r\n", "invalid port"),
    (b"PROXY TCP4 198.51.100.7 10.0.0.1 0443 443\r\n", "invalid port"),
    (b"PROXY UDP4 198.51.100.7 10.0.0.1 1 2\r\n", "TCP4/TCP6"),
    (b"PROXY TCP4 " + b"1" * 120, "within 107 bytes"),
    (b"PROXX TCP4", "not a PROXY v1 line"),
    (V2_SIGNATURE[:11] + b"X" + b"\x21\x11\x00\x00", "does not start with a PROXY protocol header"),
    (V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12), "unknown version or command"),
    (V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "unknown version or command"),
    (V2_SIGNATURE + b"\x21\x11\x10\x00", "longer than 2048 bytes"),
    (V2_SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12), "too short for its address family"),
])
def test_anything_else_is_refused_with_its_reason(data, problem):
    with pytest.raises(ProxyHeaderError, match=problem):
        parse(data)


@given(header=st.sampled_from([b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\n", b"PROXY UNKNOWN\r\n",
                               v2(), v2(command=0, body=b""), v2(tlvs=bytes(40))]))
def test_every_prefix_of_a_header_asks_for_more(header):
    for cut in range(1, len(header)):
        assert parse(header[:cut]) is None, cut
    assert parse(header)[0] == len(header)
