# C declarations of flow.py for the compiled build (the .py stays the source).
cdef class FlowControl:
    cdef public int reasons
    cdef public bint write_paused

    cpdef bint pause(self, int reason)
    cpdef bint resume(self, int reason)
    cpdef void writing_paused(self)
    cpdef void writing_resumed(self)
