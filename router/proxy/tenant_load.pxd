# C declarations of tenant_load.py for the compiled build (the .py stays the source).
cdef bint _safe(bytes method)

cdef class TenantLoad:
    cdef public dict requests, writes, open_tunnels, tunnels

    cpdef void started(self, str tenant, str stamp, bytes method)
    cpdef void ended(self, str tenant, str stamp, bytes method)
