# C declarations of upstream.py for the compiled build (the .py stays the source).
from router.proxy.exchange cimport Exchange
from router.proxy.flow cimport FlowControl
from router.proxy.ends cimport UpstreamEnd

cdef class BackendPool

# Response field names -> how the relay treats them (typed: one C dict lookup a field).
cdef dict _SPECIAL, _EXACT
cdef bint _READ_WHOLE_HEADS

cdef class UpstreamConnection(UpstreamEnd):
    cdef public BackendPool pool
    cdef public object parser, fast, each_field, tunnel
    cdef public Exchange exchange
    cdef public bint reused, got_bytes, reset_parser, closed, at_message_start, head_read
    cdef public double idle_since
    cdef public FlowControl flow
    # the response being parsed
    cdef public list lines
    cdef public object length, connection, upgrade, trailers
    cdef public bint chunked, in_body, close_asked

    cdef bint read_fields(self, bytes data)
    cdef void clear_fields(self)
    cpdef void serve(self, object ex)
    cpdef void release(self, bint reusable)
    cpdef void write(self, object data)
    cpdef void close(self)


cdef class BackendPool:
    cdef public str address
    cdef public object host, port, idle, connections, loop, tls, server_name
    cdef public Py_ssize_t outstanding, max_idle
    cdef public bint retired

    cpdef void begin(self)
    cpdef void end(self)
    cpdef UpstreamConnection take(self)
    cpdef void put(self, UpstreamConnection conn)
    cpdef void forget(self, UpstreamConnection conn)
