# Types for the compiled build of _web/application.py (setup.py); the .py stays the source.
cimport squall.httputil as httputil


cdef class _HandlerDelegate(httputil.HTTPMessageDelegate):
    cdef public object application
    cdef public object request
    cdef public object handler_class
    cdef public object handler_kwargs
    cdef public object path_args
    cdef public object path_kwargs
    cdef public object chunks
    cdef public object stream_request_body
    cdef public object handler
