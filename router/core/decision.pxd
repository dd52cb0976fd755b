# C declarations of decision.py for the compiled build (the .py stays the source).
cimport cython

# Read-only from Python: a Decision is a value (decide() builds it, nothing changes it).
cdef class Decision:
    cdef readonly object tenant, source, stamp, reason, error, message, placed, placed_by, mode
    cdef readonly object retry_after, www_authenticate
    cdef readonly tuple backends, considered


@cython.locals(d=Decision)
cpdef Decision forward(object tenant, object source, object stamp, object reason, tuple backends, object mode,
                       tuple considered)
