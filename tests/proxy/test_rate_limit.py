"""limits.tenant_rate against the real process: a tenant over its rate is answered 429
before any backend sees it, other tenants are not, and a reload keeps the buckets unless
the limit itself changed."""

import json

from tests.control.support import write_by_rename, write_doc
from tests.support.router_proc import stamp
from tests.support.servers import wait_until

ACME = {"X-Tenant-ID": "acme"}


def test_a_tenant_over_its_rate_gets_429_and_the_others_go_on(backends, router_proc):
    (eu1,) = backends("eu-1")
    # 0.01 requests/s: no token comes back while the test runs, however slow the machine.
    router = router_proc({"limits": {"tenant_rate": 0.01, "tenant_burst": 3}, "control": {"watch_interval": 0.1},
                          "routing": {"sources": ["header"]}, "stamps": [stamp("eu-1", [eu1.address])],
                          "tenants": {"acme": "eu-1", "globex": "eu-1"}})
    assert [router.request("GET", "/r", headers=ACME)[0] for _ in range(3)] == [200, 200, 200]
    status, headers, body = router.request("GET", "/r", headers=ACME)
    assert status == 429 and json.loads(body)["kind"] == "rate_limited"
    assert 90 <= int(headers["retry-after"]) <= 100 and headers["x-stamp"] == "eu-1"
    assert len(eu1.hits("/r")) == 3                        # the refused one reached no backend
    assert router.request("GET", "/r", headers={"X-Tenant-ID": "globex"})[0] == 200
    assert router.metric("stamp_router_rate_limited_total", stamp="eu-1") == 1
    assert router.metric("stamp_router_requests_total", stamp="eu-1", code="4xx") == 1

    def reload(n: int, limits: dict) -> None:
        write_doc(router, write_by_rename, {"limits": limits, "tenants": {"acme": "eu-1", "globex": "eu-1", f"t{n}": "eu-1"}})
        wait_until(lambda: router.metric("stamp_router_config_reloads_total", source="file", result="success") == n,
                   message=f"reload {n}")

    reload(1, {"tenant_rate": 0.01, "tenant_burst": 3})   # same limit: acme's bucket is still empty
    assert router.request("GET", "/r", headers=ACME)[0] == 429
    reload(2, {"tenant_rate": 0.01, "tenant_burst": 4})   # a new limit starts every bucket full
    assert router.request("GET", "/r", headers=ACME)[0] == 200
    reload(3, {})                                          # no limit
    assert {router.request("GET", "/r", headers=ACME)[0] for _ in range(10)} == {200}
