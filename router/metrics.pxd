# C declarations of metrics.py for the compiled build (the .py stays the source).
# Only StampStats is typed: ProxyMetrics is a prometheus_client Collector (a Python class).
cimport cython

cdef Py_ssize_t _NBUCKETS

cdef class StampStats:
    cdef public list codes, buckets
    cdef public double duration_sum
    cdef public Py_ssize_t retries

    @cython.locals(i=Py_ssize_t, bound=double)
    cpdef void observe(self, int status, double seconds)
