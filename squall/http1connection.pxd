# Types for the compiled build of http1connection.py (setup.py); the .py stays the source.
# The connection objects become extension types with C fields; every method a test, a
# callback or another module reaches stays callable from Python (def or cpdef).
cimport cython

from squall._http1parser cimport HTTP1Parser
cimport squall.httputil as httputil

cdef Py_ssize_t _EVENTS_PER_TURN, _BACKLOG_LIMIT, _PIPELINE_BUFFER_LIMIT


cdef class HTTP1ConnectionParameters:
    cdef public bint no_keep_alive
    cdef public object chunk_size
    cdef public object max_header_size
    cdef public object header_timeout
    cdef public object max_body_size
    cdef public object body_timeout
    cdef public bint decompress


cpdef void _guarded_run(HTTP1Connection connection)


cdef class HTTP1Connection(httputil.HTTPConnection):
    cdef public bint is_client
    cdef public object stream
    cdef public HTTP1ConnectionParameters params
    cdef public object context
    cdef public bint no_keep_alive
    cdef public HTTP1Parser _parser
    cdef public HTTP1ServerConnection _server
    cdef public object _delegate
    cdef public object _max_body_size
    cdef public object _body_timeout
    cdef public object _body_timer
    cdef public object _close_callback
    cdef public object _request_start_line
    cdef public object _request_headers
    cdef public object _response_code
    cdef public bint _headers_written
    cdef public bint _write_finished
    cdef public bint _read_finished
    cdef public bint _chunking_output
    cdef public bint _body_allowed
    cdef public object _expected_content_remaining
    cdef public bint _keep_alive
    cdef public list _pending
    cdef public Py_ssize_t _pending_size
    cdef public bint _end_pending
    cdef public object _waiting
    cdef public bint _scheduled
    cdef public bint _stopped
    cdef public object _read_future
    cdef public int _informational_count
    cdef public bint _expect_continue
    cdef public object _last_write
    cdef public bint _delegate_done
    cdef public bint _backlog_paused

    # (Typed flags: Cython 3.3.1 mis-compiles the and-chain of C and Python booleans there.)
    @cython.locals(body_allowed=bint, has_length=bint, has_coding=bint, chunking=bint,
                   keep_alive=bint, request_version=str, method=str)
    cpdef _server_response_head(self, start_line, headers)
    cpdef _frame_body(self, chunk)
    cpdef _write(self, data)
    @cython.locals(budget=int, kind=int, parser=HTTP1Parser)
    cpdef void _run(self)
    cpdef void _on_head(self, start_line, headers)
    cpdef void _after_head(self)
    cpdef void _on_data(self, data)
    cpdef void _flush_pending(self)
    cpdef void _on_message_end(self)
    cpdef void _after_finish(self)
    cpdef void _cancel_body_timer(self)
    cpdef void _stop(self)
    cpdef void _exchange_done(self)
    cpdef bint _can_keep_alive(self, start_line, headers)


cdef class _IdleSweeper:
    cdef public object loop
    cdef public object timeout
    cdef public dict connections
    cdef public object timer
    cpdef void add(self, connection)
    cpdef void discard(self, connection)


cdef class HTTP1ServerConnection:
    cdef public object stream
    cdef public HTTP1ConnectionParameters params
    cdef public object context
    cdef public object _delegate
    cdef public HTTP1Parser _parser
    cdef public HTTP1Connection _current
    cdef public _IdleSweeper _idle_sweeper
    cdef public object _idle_since
    cdef public object _shutdown_future
    cdef public bint _serving
    cdef public bint _paused

    cpdef HTTP1Connection _new_exchange(self)
    cpdef void _next_request(self)
