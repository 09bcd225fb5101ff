# Types for the compiled build of _http1parser.py (see setup.py); the .py stays the source.
cimport cython

cdef int _S_HEAD, _S_BODY_START, _S_LENGTH, _S_CHUNK_SIZE, _S_CHUNK_DATA, _S_CHUNK_END
cdef int _S_TRAILERS, _S_UNTIL_CLOSE, _S_DONE, _S_BROKEN
cdef int _NO_BODY, _LENGTH, _CHUNKED, _UNTIL_CLOSE


@cython.final
cdef class HTTP1Parser:
    cdef public bint is_client
    cdef public object max_header_size
    cdef public object max_body_size
    cdef public object chunk_size
    cdef public object _buffer
    cdef public Py_ssize_t _pos
    cdef public Py_ssize_t _scan
    cdef public int _state
    cdef public bint _eof
    cdef public int _framing
    cdef public object _remaining
    cdef public object _body_size
    cdef public str _request_method
    cdef public bint _informational
    cdef public Py_ssize_t messages
    cdef public object _direct
    cdef public str _valid_host

    cpdef void feed(self, data)
    cpdef next_event(self)
    cpdef void start_next_message(self)
    cdef tuple _finish_message(self)
    cdef void _compact(self)
    @cython.locals(pos=Py_ssize_t, size=Py_ssize_t, byte=int, scan=Py_ssize_t,
                   end_crlf=Py_ssize_t, end_lf=Py_ssize_t, head_end=Py_ssize_t,
                   body_start=Py_ssize_t, line_end=Py_ssize_t, head=str)
    cdef _parse_head(self)
    cdef int _request_framing(self, start_line, headers) except -1
    cdef int _request_body_framing(self, start_line, headers) except -1
    cdef int _response_framing(self, start_line, headers) except -1
    cdef int _body_framing(self, headers, bint allow_until_close) except -1
    cdef _start_body(self)
    @cython.locals(pos=Py_ssize_t, available=Py_ssize_t, count=Py_ssize_t, end=Py_ssize_t)
    cdef _take(self, limit)
    cdef _read_length_body(self)
    cdef _read_until_close(self)
    cdef _read_chunk_size(self)
    cdef _read_chunk_data(self)
    cdef _read_chunk_end(self)
    cdef _read_trailers(self)
