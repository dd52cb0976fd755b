"""Bodies stream through the router with flow control: 64 MiB each way, memory bounded."""

import hashlib
import http.client
import json

import pytest

from tests.support.router_proc import stamp

SIZE = 64 * 1024 * 1024
MEMORY_BUDGET = 50 * 1024 * 1024


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def pattern_blocks(total: int, block: int = 256 * 1024):
    data = bytes(range(256)) * (block // 256)
    sent = 0
    while sent < total:
        n = min(block, total - sent)
        yield data[:n]
        sent += n


@pytest.fixture
def router(backends, router_proc):
    (eu1,) = backends("eu-1")
    return router_proc({
        "routing": {"sources": ["header"]},
        "stamps": [stamp("eu-1", [eu1.address])],
    })


def test_64mib_upload_and_download_stream_with_bounded_memory(router):
    pid = router.proc.pid
    # Warm the process up (imports, first connections) before taking the baseline.
    assert router.request("GET", "/warm", headers={"X-Tenant-ID": "acme"})[0] == 200
    baseline = rss_bytes(pid)

    expected = hashlib.sha256()
    for block in pattern_blocks(SIZE):
        expected.update(block)
    conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=120)
    conn.request("POST", "/upload", body=pattern_blocks(SIZE),
                 headers={"X-Tenant-ID": "acme", "Content-Length": str(SIZE)})
    resp = conn.getresponse()
    result = json.loads(resp.read())
    assert resp.status == 200
    assert result["bytes"] == SIZE and result["sha256"] == expected.hexdigest()

    # Chunked upload too: the router re-frames it chunk by chunk.
    conn.request("POST", "/upload", body=pattern_blocks(SIZE), encode_chunked=True,
                 headers={"X-Tenant-ID": "acme", "Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    assert json.loads(resp.read())["sha256"] == expected.hexdigest()

    for chunked in ("0", "1"):
        conn.request("GET", f"/download?bytes={SIZE}&chunked={chunked}", headers={"X-Tenant-ID": "acme"})
        resp = conn.getresponse()
        if resp.status != 200:               # say why: the body is the router's error
            raise AssertionError(f"download (chunked={chunked}): {resp.status} {resp.read()[:500]!r}")
        got = hashlib.sha256()
        n = 0
        while True:
            block = resp.read(1024 * 1024)
            if not block:
                break
            got.update(block)
            n += len(block)
        assert n == SIZE
        assert got.hexdigest() == expected.hexdigest()
    conn.close()

    peak = rss_bytes(pid, "VmHWM")
    assert peak - baseline < MEMORY_BUDGET, f"router memory grew by {(peak - baseline) / 2**20:.1f} MiB"


def test_body_over_the_limit_is_413(backends, router_proc):
    (eu1,) = backends("eu-1")
    router = router_proc({
        "routing": {"sources": ["header"]},
        "limits": {"max_body_bytes": "1KiB"},
        "stamps": [stamp("eu-1", [eu1.address])],
    })
    status, headers, body = router.request("POST", "/upload", headers={"X-Tenant-ID": "acme"}, body=b"x" * 2048)
    assert status == 413 and json.loads(body)["kind"] == "body_too_large"
    assert eu1.hits("/upload") == []
    # Chunked bodies have no length up front: the limit applies as they stream.
    conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)
    conn.request("POST", "/upload", body=iter([b"y" * 800, b"y" * 800]), encode_chunked=True,
                 headers={"X-Tenant-ID": "acme", "Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    assert resp.status == 413
    conn.close()
