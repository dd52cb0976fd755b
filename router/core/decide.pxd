# C declarations of decide.py for the compiled build (the .py stays the source).
# The exchange calls decide() as C (exchange.pxd cimports it): one call per request.
from router.core.decision cimport Decision, forward

cpdef Decision decide(object facts, object snap, object health, double now, bint explain=*)
