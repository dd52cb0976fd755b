# C declarations of metrics.py for the compiled build (the .py stays the source).
# ProxyMetrics is a prometheus_client Collector (a Python class): only its per-request
# part, RequestCounters, and StampStats are typed.
cimport cython

cdef Py_ssize_t _NBUCKETS

cdef class StampStats:
    cdef public list codes, buckets
    cdef public double duration_sum
    cdef public Py_ssize_t retries

    @cython.locals(i=Py_ssize_t, bound=double)
    cpdef void observe(self, int status, double seconds)


cdef class RequestCounters:
    cdef public dict stamps
    cdef public Py_ssize_t in_flight

    cpdef StampStats stamp(self, object name)
    cpdef void request_began(self)
    cpdef void request_ended(self)
