# C declarations of sources.py for the compiled build (the .py stays the source).
# decide() walks the chain as TenantSource (decide.pxd): resolve() of the sources below
# is a C call; a source defined elsewhere (router.core.jwt_source) extends the base as a
# Python class, and its resolve() is called as Python.
cdef class TenantSource:
    cpdef object resolve(self, object facts, double now)


cdef class SubdomainSource(TenantSource):
    cdef public tuple suffixes
    cdef public object _cache

    cpdef object resolve(self, object facts, double now)


cdef class HeaderSource(TenantSource):
    cdef public object header, origin, pinned

    cpdef object resolve(self, object facts, double now)


cdef class MtlsSource(TenantSource):
    cpdef object resolve(self, object facts, double now)
