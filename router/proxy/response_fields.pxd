# C declarations of response_fields.py for the compiled build (the .py stays the source).
cimport cython
from libc.string cimport memchr

cdef bint _COMPILED
cdef dict _KINDS
cdef bytes _MAY_BE_SPECIAL_START, _MAY_BE_SPECIAL_LENGTH, _OWS
cdef int _H, _ONE, _CR, _COLON

@cython.locals(p="const unsigned char*", found="const unsigned char*")
cdef Py_ssize_t _index(bytes data, int byte, Py_ssize_t start, Py_ssize_t stop)

@cython.locals(size=Py_ssize_t, pos=Py_ssize_t, run=Py_ssize_t, eol=Py_ssize_t,
               colon=Py_ssize_t, name=Py_ssize_t, kind=int, lines=list, close=bint,
               head="const unsigned char*")
cpdef object read_head(bytes data)
