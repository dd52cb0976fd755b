# C declarations of overload.py for the compiled build (the .py stays the source).
cdef class MemoryGuard:
    cdef public object server, memory, pressure, _trim
    cdef public bint _warned_unmeasured, _replacing
    cdef public double _open_at
    cdef readonly bint shedding
