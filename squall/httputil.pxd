# Types for the compiled build of httputil.py (setup.py); the .py stays the source.
# HTTPConnection is an extension type there so that HTTP1Connection can be one.

cdef class HTTPConnection:
    pass

# The base of the routing and handler delegates, which are extension types there too.
cdef class HTTPMessageDelegate:
    pass
