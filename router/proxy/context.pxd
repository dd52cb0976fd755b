# C declarations of context.py for the compiled build (the .py stays the source).
from router.metrics cimport RequestCounters
from router.state cimport RouterState
from router.proxy.overload cimport MemoryGuard
from router.proxy.tenant_load cimport TenantLoad

cdef class ServerContext:
    cdef public RouterState state
    cdef public object loop, clock, access_log, pools, holds, tenant_rate
    cdef public RequestCounters metrics
    cdef public TenantLoad tenant_load
    cdef public MemoryGuard guard
    cdef public bint draining
    cdef public Py_ssize_t retrying
    cdef readonly str _rid_prefix
    cdef Py_ssize_t _rid, _rr

    cpdef bytes next_request_id(self)
    cpdef Py_ssize_t next_rr(self)
    cpdef bint retry_allowed(self, double budget)
    cpdef void retry_began(self)
    cpdef void retry_ended(self)
