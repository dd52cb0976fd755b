# C declarations of downstream.py for the compiled build (the .py stays the source).
from router.proxy.exchange cimport Exchange
from router.proxy.flow cimport FlowControl
from router.proxy.ends cimport ClientEnd
cimport cython

# The lifecycle's deadline kinds and events as C ints (their values are lifecycle.py's).
cdef int _KEEP, _NONE, _HEADER, _BEGUN, _HEAD_READ, _ANSWERED_ALL

cdef class ClientConnection(ClientEnd):
    cdef public object parser, client_ip, queue, tunnel, early, settings
    cdef public dict interest, spelled
    cdef public Exchange cur
    cdef public Py_ssize_t head_bytes, max_head
    cdef public int phase
    cdef public double deadline
    cdef public bint upgraded, eof, trusted

    @cython.locals(phase=int, deadline=int)
    cpdef void _move(self, int event, object settings)
    cpdef void exchange_done(self, object ex, bint aborted)
    # Typed, so the queued exchange's fields and start() are C.
    @cython.locals(ex=Exchange)
    cdef void _start_first(self) except *
    cpdef void pause_reading(self, int reason=*)
    cpdef void resume_reading(self, int reason=*)


cdef class ProxiedConnection(ClientConnection):
    cdef public object preamble
