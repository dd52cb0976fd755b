# C declarations of exchange.py for the compiled build (the .py stays the source).
# downstream.py and upstream.py use this module's type, so a typed reference back to
# their classes would need them at this module's import time (a cycle). The connections
# are declared as their bases in router.proxy.ends, and the server as its per-request
# part, router.proxy.context.ServerContext: neither imports them. `pool` stays an object.
cimport cython
from router.core.decide cimport decide
from router.core.decision cimport Decision
from router.proxy.context cimport ServerContext
from router.metrics cimport RequestCounters, StampStats
from router.proxy.ends cimport ClientEnd, UpstreamEnd

cdef class Exchange:
    cdef public ServerContext server
    cdef public ClientEnd conn
    cdef public object snap, settings, connect_task, out
    cdef public Decision decision
    cdef public double t0, up_deadline, t_up
    cdef public list lines
    # request head
    cdef public bytes url, method_b, head
    cdef public object host_b, tenant_header, authorization_b, request_id, xff, xf_proto, conn_header
    cdef public object upgrade, content_length, geo_b, trailers
    cdef public bint chunked, http10, head_done, keep_alive, req_done
    # carrying out
    cdef public object pool
    cdef public object backend, tried, pending, replay
    cdef public UpstreamEnd upstream
    cdef public Py_ssize_t pending_bytes, replay_bytes, body_in, bytes_out, read_sent, resp_head_bytes
    cdef public bint replay_ok, retried
    # response
    cdef public int status, framing
    cdef public bint resp_started, close_after, finished, read_started, until_close
    cdef public object fail_kind, fail_message

    cpdef void add_url(self, bytes url)
    cpdef void add_field(self, int kind, bytes name, bytes value, bint trusted) except *
    cpdef void add_trailer(self, bytes name, bytes value)
    cpdef void head_complete(self, object parser) except *
    cpdef bytes answer_id(self)
    cpdef void on_body(self, bytes chunk)
    cpdef void on_request_done(self)
    cdef void _send_body(self, bytes data)
    @cython.locals(server=ServerContext, d=Decision)
    cpdef void start(self)
    @cython.locals(conn=ClientEnd)
    cpdef bytes _build_head(self, Decision d)
    cpdef void dispatch(self, bint force_new)
    cpdef void _attach(self, UpstreamEnd conn)
    cpdef void _detach(self, UpstreamEnd conn, bint reusable)
    cpdef void read_begins(self)
    cpdef void read_ends(self)
    cpdef void response_head(self, int status, object lines, object length, bint chunked)
    cpdef void _cw(self, bytes data)
    cpdef void flush(self)
    cpdef void response_body(self, bytes body)
    cpdef void response_complete(self, UpstreamEnd conn, bint reusable, object trailers)
    @cython.locals(server=ServerContext, metrics=RequestCounters, stats=StampStats, d=Decision)
    cpdef void finish(self, int status, bint aborted=*)
