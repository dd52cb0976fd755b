# C declarations of ends.py for the compiled build (the .py stays the source).
from router.proxy.context cimport ServerContext
from router.proxy.flow cimport FlowControl

cdef class ClientEnd:
    cdef public ServerContext server
    cdef public object transport, client_b, scheme, forwarded
    cdef public bint closed
    cdef public FlowControl flow

    cpdef void exchange_done(self, object ex, bint aborted)


cdef class UpstreamEnd:
    cdef public object transport

    cpdef void serve(self, object ex)
    cpdef void release(self, bint reusable)
