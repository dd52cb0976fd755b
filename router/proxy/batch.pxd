# C declarations of batch.py for the compiled build (the .py stays the source).
cdef class WriteBatch:
    cdef public object loop
    cdef public list waiting
    cdef object __weakref__

    cpdef void add(self, BatchedTransport transport)
    cpdef void flush(self)


cdef class BatchedTransport:
    cdef public object transport
    cdef public WriteBatch batch
    cdef public list held
    cdef public Py_ssize_t held_bytes

    cpdef void write(self, object data)
    cpdef void flush(self)
