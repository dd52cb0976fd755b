# C declarations of framing.py for the compiled build (the .py stays the source).
cpdef object response_framing(int status, bint head_request, bint chunked, bint has_length, bint http10)
cpdef bint ends_at_head(int status, bint head_request, object length)
