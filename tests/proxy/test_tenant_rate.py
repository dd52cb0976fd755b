"""router.proxy.tenant_rate: token buckets per tenant, with the clock passed in."""

from hypothesis import given
from hypothesis import strategies as st

from router.proxy.tenant_rate import TenantRate, tenant_rate_for


def test_a_burst_goes_then_the_rate_holds_and_says_how_long_to_wait():
    limiter = TenantRate(rate=2.0, burst=3)
    assert [limiter.take("acme", 10.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("acme", 10.0) == 0.5              # one token at 2/s
    assert limiter.take("acme", 10.25) == 0.25            # half of one came back
    assert limiter.take("acme", 10.5) == 0.0              # a whole one
    assert limiter.take("globex", 10.5) == 0.0            # another tenant has its own bucket
    assert limiter.take("acme", 100.0) == 0.0 and limiter.buckets["acme"][0] == 2.0   # refilled to burst, one taken


def test_retry_after_is_whole_seconds_and_never_early():
    assert [TenantRate.retry_after(w) for w in (0.01, 0.5, 1.0, 1.2, 30.0)] == [1, 1, 1, 2, 30]


@given(rate=st.floats(0.1, 1000.0), burst=st.integers(1, 50),
       gaps=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=200))
def test_never_more_than_the_burst_plus_the_rate_over_any_run(rate, burst, gaps):
    limiter = TenantRate(rate, burst)
    now, admitted = 0.0, 0
    for gap in gaps:
        now += gap
        admitted += limiter.take("acme", now) == 0.0
    assert admitted <= burst + rate * now + 1e-6


def test_a_full_table_forgets_the_refilled_buckets_first_then_the_idlest_half():
    limiter = TenantRate(rate=1.0, burst=2, max_tenants=4)
    for n, tenant in enumerate("abcd"):
        limiter.take(tenant, float(n))
    limiter.take("d", 4.5)                                 # d used again: a, b, c refill by t=5, d not
    limiter.take("e", 5.0)
    assert set(limiter.buckets) == {"d", "e"}
    busy = TenantRate(rate=0.001, burst=2, max_tenants=4)
    for n, tenant in enumerate("abcd"):
        busy.take(tenant, float(n))                        # none refills: all are kept ...
    busy.take("e", 4.0)
    assert set(busy.buckets) == {"c", "d", "e"}            # ... until the idlest half goes


def test_a_reload_keeps_the_buckets_unless_the_limit_changed():
    first = tenant_rate_for(5.0, None, None)
    assert (first.rate, first.burst) == (5.0, 5.0)
    assert tenant_rate_for(5.0, None, first) is first
    assert tenant_rate_for(5.0, 10, first) is not first
    assert tenant_rate_for(0.5, None, None).burst == 1.0
    assert tenant_rate_for(0.0, 10, first) is None
