"""The router process proxies a request to the stamp its tenant is pinned to."""

import json

from tests.support.router_proc import stamp


def test_pinned_tenant_reaches_its_stamp(backends, router_proc):
    eu1, eu2 = backends("eu-1", "eu-2")
    router = router_proc({
        "routing": {"sources": ["header"], "unpinned": "reject"},
        "stamps": [stamp("eu-1", [eu1.address]), stamp("eu-2", [eu2.address])],
        "tenants": {"acme": "eu-2"},
    })
    status, headers, body = router.request("GET", "/hello", headers={"X-Tenant-ID": "acme"})
    assert status == 200
    assert json.loads(body)["stamp"] == "eu-2"
    assert headers["x-stamp"] == "eu-2"
    assert eu2.hits()[0]["headers"]["X-Tenant-ID"] == "acme"
    assert eu1.hits() == []
    assert router.stop() == 0
