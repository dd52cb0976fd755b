# C declarations of state.py for the compiled build (the .py stays the source).
cdef class RouterState:
    cdef public tuple current
    cdef public object health
    cdef list _on_swap
