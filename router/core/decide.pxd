# C declarations of decide.py for the compiled build (the .py stays the source).
# The exchange calls decide() as C (exchange.pxd cimports it): one call per request.
cimport cython
from router.core.decision cimport Decision, forward
from router.core.health_view cimport HealthView
from router.core.sources cimport TenantSource

@cython.locals(src=TenantSource)
cpdef Decision decide(object facts, object snap, HealthView health, double now, bint explain=*)
