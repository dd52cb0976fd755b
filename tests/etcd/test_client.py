"""The etcd client against a real etcd: reads at one revision, transactions, watches,
compaction and leases, each as a typed result or error."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

from router.etcd.client import (EtcdClient, Tls, compare_lease, compare_mod_revision, delete_op, prefix_end, put_op)
from router.etcd.errors import EtcdAuthError, EtcdCompacted, EtcdLeaseLost, EtcdTooLarge, EtcdUnavailable
from tests.support.etcd import EtcdServer
from tests.support.servers import free_port


def run(coro):
    return asyncio.run(coro)


def test_prefix_end():
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff") == b"\0"


def test_pages_read_at_one_revision(etcd):
    async def main():
        async with EtcdClient([etcd.url]) as c:
            for i in range(25):
                await c.put(f"/p/t/{i:03}".encode(), str(i).encode())
            first = None
            keys = []
            async for revision, page in c.range_pages(b"/p/t/", page=10):
                if first is None:
                    first = revision
                    await c.put(b"/p/t/zzz", b"late")       # after the read's revision
                assert revision == first
                keys += [kv.key for kv in page]
            return keys
    keys = run(main())
    assert keys == [f"/p/t/{i:03}".encode() for i in range(25)]


def test_txn_compare_and_set(etcd):
    async def main():
        async with EtcdClient([etcd.url]) as c:
            rev = await c.put(b"/k", b"1")
            ok = await c.txn([compare_mod_revision(b"/k", "EQUAL", rev)], [put_op(b"/k", b"2")])
            stale = await c.txn([compare_mod_revision(b"/k", "EQUAL", rev)], [put_op(b"/k", b"3")])
            gone = await c.txn([compare_mod_revision(b"/", "LESS", ok.revision + 1, prefix_end(b"/"))],
                               [delete_op(b"/k")])
            return ok, stale, gone, await c.get(b"/k")
    ok, stale, gone, kv = run(main())
    assert ok.succeeded and not stale.succeeded and gone.succeeded and kv is None


def test_watch_in_order_then_compacted(etcd):
    async def main():
        async with EtcdClient([etcd.url]) as c:
            start = await c.put(b"/w/a", b"1")
            await c.put(b"/w/b", b"2")
            await c.delete(b"/w/a")
            seen = []
            async for resp in c.watch(b"/w/", prefix_end(b"/w/"), start):
                seen += [(e.deleted, e.kv.key, e.kv.mod_revision) for e in resp.events]
                if len(seen) == 3:
                    break
            last = await c.put(b"/w/c", b"3")
            await c.compact(last)
            with pytest.raises(EtcdCompacted) as exc:
                async for _ in c.watch(b"/w/", prefix_end(b"/w/"), start):
                    pass
            return start, seen, exc.value.compact_revision, last
    start, seen, compacted, last = run(main())
    assert seen == [(False, b"/w/a", start), (False, b"/w/b", start + 1), (True, b"/w/a", start + 2)]
    assert compacted == last


def test_lease_fences_a_write(etcd):
    async def main():
        async with EtcdClient([etcd.url]) as c:
            lease, ttl = await c.grant(5)
            await c.put(b"/lock", b"me", lease=lease)
            fenced = await c.txn([compare_lease(b"/lock", lease)], [put_op(b"/x", b"1")])
            assert await c.keepalive(lease) > 0
            await c.revoke(lease)
            after = await c.txn([compare_lease(b"/lock", lease)], [put_op(b"/x", b"2")])
            with pytest.raises(EtcdLeaseLost):
                await c.keepalive(lease)
            return ttl, fenced.succeeded, after.succeeded
    assert run(main()) == (5, True, False)


def test_request_over_the_size_limit_is_typed(etcd):
    async def main():
        async with EtcdClient([etcd.url]) as c:
            with pytest.raises(EtcdTooLarge):
                await c.put(b"/big", b"x" * (1600 * 1024))
    run(main())


def test_unreachable_endpoints_are_unavailable_and_the_next_one_answers(etcd):
    dead = f"http://127.0.0.1:{free_port()}"

    async def main():
        async with EtcdClient([dead], timeout=1) as c:
            with pytest.raises(EtcdUnavailable):
                await c.get(b"/k")
        async with EtcdClient([dead, etcd.url], timeout=2) as c:
            await c.put(b"/k", b"v")
            assert (await c.get(b"/k")).value == b"v"
            assert c.endpoint == etcd.url
    run(main())


def test_user_and_password(etcd):
    subprocess.run(["etcdctl", "--endpoints", etcd.url, "user", "add", "root:secret-pw"], check=True,
                   capture_output=True, env={**os.environ, "ETCDCTL_API": "3"})
    subprocess.run(["etcdctl", "--endpoints", etcd.url, "auth", "enable"], check=True, capture_output=True,
                   env={**os.environ, "ETCDCTL_API": "3"})

    async def main():
        async with EtcdClient([etcd.url], user="root", password="secret-pw") as c:
            await c.put(b"/a", b"1")
            assert (await c.get(b"/a")).value == b"1"
            c._token = "expired-token"              # etcd's simple tokens expire: a new one is taken
            assert (await c.get(b"/a")).value == b"1"
        async with EtcdClient([etcd.url], user="root", password="wrong") as c:
            with pytest.raises(EtcdAuthError):
                await c.get(b"/a")
        async with EtcdClient([etcd.url]) as c:
            with pytest.raises(EtcdAuthError):
                await c.get(b"/a")
    run(main())


def _certificates(directory) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test etcd CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    out = {"ca": str(directory / "ca.pem")}
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    # etcd's JSON gateway calls etcd's gRPC server presenting the server certificate, so
    # with --client-cert-auth that certificate must be good for client auth too.
    usages = {"server": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
              "client": [ExtendedKeyUsageOID.CLIENT_AUTH]}
    for name, usage in usages.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.ExtendedKeyUsage(usage), critical=False).sign(ca_key, hashes.SHA256()))
        (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{name}-key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return {**out, "cert": str(directory / "server.pem"), "key": str(directory / "server-key.pem"),
            "client": str(directory / "client.pem"), "client_key": str(directory / "client-key.pem")}


def test_tls_with_a_client_certificate(tmp_path):
    certs = _certificates(tmp_path)
    server = EtcdServer(tmp_path / "etcd", tls=certs).start()
    try:
        async def main():
            async with EtcdClient([server.url], tls=Tls(certs["ca"], certs["client"], certs["client_key"])) as c:
                await c.put(b"/tls", b"yes")
                assert (await c.get(b"/tls")).value == b"yes"
            async with EtcdClient([server.url], tls=Tls(certs["ca"]), timeout=2) as c:
                with pytest.raises(EtcdUnavailable):        # no client certificate: refused
                    await c.get(b"/tls")
            async with EtcdClient([server.url], tls=Tls(None, certs["client"], certs["client_key"]), timeout=2) as c:
                with pytest.raises(EtcdUnavailable):        # etcd's certificate not trusted
                    await c.get(b"/tls")
        run(main())
    finally:
        server.kill()
