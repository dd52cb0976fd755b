# C declarations of health_view.py for the compiled build (the .py stays the source).
cdef class HealthView:
    cdef public dict _routable

    cpdef tuple healthy_backends(self, object stamp)
