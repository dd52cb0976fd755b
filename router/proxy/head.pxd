# C declarations of head.py for the compiled build (the .py stays the source).
cimport cython

@cython.locals(kept=list, i=Py_ssize_t)
cdef list _drop_named(list fields, object named)
cpdef list without_named(list fields, bytes connection)
cpdef bytes forwarded_fields(object xff, bytes client, object proto, bytes scheme, bytes usual)
@cython.locals(out=list)
cpdef bytes request_head(bytes method, bytes url, list fields, object host, str default_host, object tenant_line,
                         bytes forwarded, bytes request_id, bint chunked, object content_length, object upgrade)
@cython.locals(kept=list)
cpdef tuple response_connection(list fields, bytes connection, object upgrade, int status)
@cython.locals(out=list)
cpdef bytes response_head(int status, object fields, object length, int relay, object stamp_line,
                          object failover_line, bint close, bint http10)
