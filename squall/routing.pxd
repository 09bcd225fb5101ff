# Types for the compiled build of routing.py (setup.py); the .py stays the source.
cimport squall.httputil as httputil


cdef class _RoutingDelegate(httputil.HTTPMessageDelegate):
    cdef public object server_conn
    cdef public object request_conn
    cdef public object delegate
    cdef public object router
