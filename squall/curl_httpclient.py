"""An ``AsyncHTTPClient`` on libcurl, through pycurl.

Enable it with ``AsyncHTTPClient.configure("squall.curl_httpclient.CurlAsyncHTTPClient")``.
pycurl is optional: this module imports without it, and building a client then raises an
``ImportError`` that says what to install. libcurl does its own connection reuse, follows
redirects itself, and supports digest authentication and proxy authentication modes the
simple client lacks; it does not take ``ssl_options`` or ``body_producer``.
"""

from __future__ import annotations

import collections
import functools
import inspect
import logging
import re
import time
from collections.abc import Callable
from io import BytesIO
from typing import Any

from squall import httputil, version
from squall.escape import native_str, utf8
from squall.gen import is_coroutine_function
from squall.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from squall.ioloop import IOLoop, PeriodicCallback
from squall.log import app_log

__all__ = ["CurlAsyncHTTPClient", "CurlError"]

curl_log = logging.getLogger("squall.curl_httpclient")

# A header line holding CR or LF would let a value smuggle in another header or request.
CR_OR_LF_RE = re.compile(b"\r|\n")

_DEFAULT_USER_AGENT = f"Squall/{version} (pycurl)"

_pycurl: Any = None


def _load_pycurl() -> Any:
    global _pycurl
    if _pycurl is None:
        try:
            import pycurl
        except ImportError as error:
            raise ImportError(
                "squall.curl_httpclient needs pycurl, which is not installed; "
                "install it (pip install pycurl) or use the default SimpleAsyncHTTPClient"
            ) from error
        _pycurl = pycurl
    return _pycurl


class CurlError(HTTPClientError):
    """libcurl failed a transfer; ``errno`` is its ``CURLE_*`` code. The HTTP code is 599."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(599, message)
        self.errno = errno


class _CurlStreamingBuffer:
    """Carries body chunks from libcurl's write callback to a ``streaming_callback``.

    libcurl calls the write function from inside ``socket_action``; the user's callback
    runs later on the ``IOLoop``. Holding more than ``max_buffer_size`` bytes pauses the
    transfer (libcurl hands the refused chunk over again after it is resumed), so a body
    that decompresses to far more than was sent is never held in memory all at once.
    """

    max_buffer_size = 1024 * 1024

    def __init__(
        self, client: CurlAsyncHTTPClient, curl: Any, callback: Callable[[bytes], Any]
    ) -> None:
        self._client = client
        self._curl = curl
        self._callback = callback
        # Whether libcurl is held back (paused), or was refused (body too large).
        self.paused = self.body_too_large = False
        # Chunks waiting for the loop, and the byte counts the two limits look at.
        self._pending: list[bytes] = []
        self._pending_size = self._received = 0
        self._flush_scheduled = False

    def write(self, chunk: bytes) -> int:
        size = len(chunk)
        if self._received + size > self._client.max_body_size:
            # A short write makes libcurl fail the transfer; _finish says why.
            self.body_too_large = True
            return 0
        if self._pending and self._pending_size + size > self.max_buffer_size:
            self.paused = True
            return int(_load_pycurl().WRITEFUNC_PAUSE)
        self._received += size
        self._pending.append(chunk)
        self._pending_size += size
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._client.io_loop.add_callback(self.flush)
        return size

    def flush(self) -> None:
        """Hand buffered chunks to the callback, then resume the transfer if it was paused."""
        self._flush_scheduled = False
        pending = self._pending
        self._pending = []
        self._pending_size = 0
        for chunk in pending:
            try:
                self._callback(chunk)
            except Exception:
                app_log.error("Exception in callback %r", self._callback, exc_info=True)
        if self.paused:
            self.paused = False
            pycurl = _load_pycurl()
            try:
                self._curl.pause(pycurl.PAUSE_CONT)
            except pycurl.error:
                # The transfer failed while paused; its completion reports the failure.
                return
            # Older libcurl does not announce that a resumed transfer can make progress.
            self._client._set_timeout(0)


class _BufferedBody:
    """Collects a body in memory for a request without ``streaming_callback``."""

    __slots__ = ("_client", "buffer", "_received", "body_too_large")

    def __init__(self, client: CurlAsyncHTTPClient) -> None:
        self._client = client
        self.buffer = BytesIO()
        self._received = 0
        self.body_too_large = False

    def write(self, chunk: bytes) -> int:
        size = len(chunk)
        self._received += size
        if self._received > self._client.max_body_size:
            self.body_too_large = True
            return 0
        self.buffer.write(chunk)
        return size

    def flush(self) -> None:
        pass


class _Transfer:
    """What the client remembers about a request while libcurl carries it out."""

    __slots__ = (
        "request",
        "callback",
        "headers",
        "reason",
        "body",
        "queue_start_time",
        "curl_start_time",
        "curl_start_ioloop_time",
    )

    def __init__(
        self, request: HTTPRequest, callback: Callable[[HTTPResponse], None],
        queue_start_time: float,
    ) -> None:
        self.request = request
        self.callback = callback
        self.headers = httputil.HTTPHeaders()
        self.reason: str | None = None
        self.body: _CurlStreamingBuffer | _BufferedBody | None = None
        self.queue_start_time = queue_start_time
        self.curl_start_time = time.time()
        self.curl_start_ioloop_time = 0.0


# A request waiting for a curl handle: the request, its callback, and when it was queued.
_QueuedRequest = tuple[HTTPRequest, Callable[[HTTPResponse], None], float]


class CurlAsyncHTTPClient(AsyncHTTPClient):
    """``AsyncHTTPClient`` on libcurl's multi interface, driven by the ``IOLoop``.

    ``max_clients`` curl handles are kept (libcurl pools connections among them); more
    requests wait in a queue. ``max_body_size`` bounds a response body after decoding.
    """

    max_body_size: int

    def initialize(  # type: ignore[override]
        self, max_clients: int = 10, defaults: dict[str, Any] | None = None,
        max_body_size: int = 104857600,
    ) -> None:
        pycurl = _load_pycurl()
        super().initialize(defaults=defaults)
        self.max_body_size = max_body_size
        multi = pycurl.CurlMulti()
        # libcurl drives the loop through these: which sockets to watch, when to call back.
        multi.setopt(pycurl.M_SOCKETFUNCTION, self._handle_socket)
        multi.setopt(pycurl.M_TIMERFUNCTION, self._set_timeout)
        self._multi = multi
        self._curls = [pycurl.Curl() for _ in range(max_clients)]
        self._free_list = list(self._curls)
        self._transfers: dict[Any, _Transfer] = {}
        # Requests waiting for a free handle, oldest first.
        self._requests: collections.deque[_QueuedRequest] = collections.deque()
        # The descriptors libcurl asked us to watch, with the IOLoop events for each.
        self._fds: dict[int, int] = {}
        self._timeout: object | None = None
        # libcurl can fail to ask for a timer after some state changes; a slow periodic
        # nudge keeps a transfer from stalling forever.
        self._force_timeout_callback: PeriodicCallback | None = PeriodicCallback(
            self._handle_force_timeout, 1000
        )
        self._force_timeout_callback.start()

    def close(self) -> None:
        """Stop the client: every curl handle and the multi handle are closed."""
        if self._force_timeout_callback is not None:
            self._force_timeout_callback.stop()
            self._force_timeout_callback = None
        if self._timeout is not None:
            self.io_loop.remove_timeout(self._timeout)
            self._timeout = None
        for fd in list(self._fds):
            self.io_loop.remove_handler(fd)
        self._fds.clear()
        for curl in self._curls:
            curl.close()
        self._curls = []
        self._free_list = []
        self._transfers.clear()
        if self._multi is not None:
            self._multi.close()
            # The multi handle held bound methods of this client.
            self._multi = None
        super().close()

    def fetch_impl(self, request: HTTPRequest, callback: Callable[[HTTPResponse], None]) -> None:
        self._requests.append((request, callback, self.io_loop.time()))
        self._process_queue()
        self._set_timeout(0)

    def handle_callback_exception(self, callback: Callable[..., Any]) -> None:
        """Log an exception raised by a response callback."""
        app_log.error("Exception in callback %r", callback, exc_info=True)

    # -- libcurl's multi interface -------------------------------------------------------

    def _handle_socket(self, event: int, fd: int, multi: Any, data: Any) -> None:
        pycurl = _load_pycurl()
        # libcurl may close a socket and open another with the same number without
        # telling us, so a descriptor is always dropped first and registered afresh.
        if self._fds.pop(fd, None) is not None:
            self.io_loop.remove_handler(fd)
        if event == pycurl.POLL_REMOVE:
            return
        # POLL_IN, POLL_OUT and POLL_INOUT are bits 1 and 2; POLL_NONE is 0.
        events = (IOLoop.READ if event & pycurl.POLL_IN else 0) | (
            IOLoop.WRITE if event & pycurl.POLL_OUT else 0
        )
        self.io_loop.add_handler(fd, self._handle_events, events)
        self._fds[fd] = events

    def _set_timeout(self, msecs: int) -> None:
        previous, self._timeout = self._timeout, None
        if previous is not None:
            self.io_loop.remove_timeout(previous)
        # A negative delay is libcurl's way of saying no timer is needed.
        if msecs >= 0:
            self._timeout = self.io_loop.call_later(msecs / 1000.0, self._handle_timeout)

    def _socket_action(self, fd: int, action: int) -> None:
        pycurl = _load_pycurl()
        multi = self._multi
        if multi is None:
            return
        while True:
            try:
                result, _ = multi.socket_action(fd, action)
            except pycurl.error as error:
                result = error.args[0]
            if result != pycurl.E_CALL_MULTI_PERFORM:
                break
        self._finish_pending_requests()

    def _handle_events(self, fd: int, events: int) -> None:
        pycurl = _load_pycurl()
        action = 0
        if events & IOLoop.READ:
            action |= pycurl.CSELECT_IN
        if events & IOLoop.WRITE:
            action |= pycurl.CSELECT_OUT
        self._socket_action(fd, action)

    def _handle_timeout(self) -> None:
        self._timeout = None
        self._socket_action(_load_pycurl().SOCKET_TIMEOUT, 0)
        # A transfer that became runnable inside socket_action may need another pass
        # that libcurl does not ask for through the timer callback.
        if self._multi is not None:
            new_timeout = self._multi.timeout()
            if new_timeout >= 0:
                self._set_timeout(new_timeout)

    def _handle_force_timeout(self) -> None:
        self._socket_action(_load_pycurl().SOCKET_TIMEOUT, 0)

    def _finish_pending_requests(self) -> None:
        # A response callback may close the client, so the multi handle is looked up anew.
        while self._multi is not None:
            more, succeeded, failed = self._multi.info_read()
            outcomes: list[tuple[Any, int | None, str]] = [(curl, None, "") for curl in succeeded]
            outcomes.extend(failed)
            for curl, curl_error, message in outcomes:
                self._finish(curl, curl_error, message)
            if not more:
                break
        self._process_queue()

    def _process_queue(self) -> None:
        while self._free_list and self._requests:
            curl = self._free_list.pop()
            request, callback, queue_start_time = self._requests.popleft()
            transfer = _Transfer(request, callback, queue_start_time)
            transfer.curl_start_ioloop_time = self.io_loop.time()
            try:
                self._curl_setup_request(curl, transfer)
            except Exception as error:
                # A request libcurl cannot take fails on its own; the handle stays usable.
                curl.reset()
                self._free_list.append(curl)
                callback(HTTPResponse(request=request, code=599, error=error))
                continue
            self._transfers[curl] = transfer
            self._multi.add_handle(curl)

    def _finish(self, curl: Any, curl_error: int | None = None, curl_message: str = "") -> None:
        pycurl = _load_pycurl()
        transfer = self._transfers.pop(curl, None)
        if transfer is None:
            return
        self._multi.remove_handle(curl)
        body = transfer.body
        assert body is not None
        # Chunks still waiting for the IOLoop belong before the response.
        body.flush()
        buffer: BytesIO | None = None
        effective_url: str | None = None
        error: BaseException | None = None
        code = 599
        if body.body_too_large:
            error = CurlError(
                pycurl.E_WRITE_ERROR,
                f"Response body larger than max_body_size ({self.max_body_size} bytes); "
                "decompressed body too large",
            )
        elif curl_error is not None:
            error = CurlError(curl_error, curl_message)
        else:
            code = curl.getinfo(pycurl.HTTP_CODE)
            effective_url = curl.getinfo(pycurl.EFFECTIVE_URL)
            if isinstance(body, _BufferedBody):
                buffer = body.buffer
                buffer.seek(0)
            else:
                buffer = BytesIO()
        time_info = {"queue": transfer.curl_start_ioloop_time - transfer.queue_start_time}
        for name in _CURL_TIMERS:
            time_info[name] = curl.getinfo(getattr(pycurl, name.upper() + "_TIME"))
        # Clear every option (and the callbacks holding this client) while keeping
        # libcurl's connection cache: the next request starts from a clean handle, so no
        # credentials or certificates leak from one request into another.
        curl.reset()
        self._free_list.append(curl)
        response = HTTPResponse(
            request=transfer.request,
            code=code,
            headers=transfer.headers,
            buffer=buffer,
            effective_url=effective_url,
            error=error,
            reason=transfer.reason,
            request_time=self.io_loop.time() - transfer.curl_start_ioloop_time,
            start_time=transfer.curl_start_time,
            time_info=time_info,
        )
        try:
            transfer.callback(response)
        except Exception:
            self.handle_callback_exception(transfer.callback)

    # -- one request -------------------------------------------------------------------

    def _curl_setup_request(self, curl: Any, transfer: _Transfer) -> None:
        pycurl = _load_pycurl()
        request = transfer.request
        for unsupported in ("ssl_options", "body_producer"):
            if getattr(request, unsupported) is not None:
                raise ValueError(f"{unsupported} not supported in curl_httpclient")
        curl.setopt(pycurl.NOSIGNAL, 1)
        if hasattr(pycurl, "PROTOCOLS"):
            protocols = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS
            curl.setopt(pycurl.PROTOCOLS, protocols)
            curl.setopt(pycurl.REDIR_PROTOCOLS, protocols)
        if curl_log.isEnabledFor(logging.DEBUG):
            curl.setopt(pycurl.VERBOSE, 1)
            curl.setopt(pycurl.DEBUGFUNCTION, _curl_debug)
        curl.setopt(pycurl.URL, native_str(request.url))

        headers = httputil.HTTPHeaders(request.headers)
        # libcurl sends "Expect: 100-continue" on its own for large bodies, which stalls
        # servers that never answer it; an empty value turns that off (and "Pragma").
        if request.expect_100_continue:
            headers["Expect"] = "100-continue"
        elif "Expect" not in headers:
            headers["Expect"] = ""
        if "Pragma" not in headers:
            headers["Pragma"] = ""
        lines = []
        for name, value in headers.get_all():
            line = native_str(name).encode("ascii") + b": " + native_str(value).encode("latin-1")
            if CR_OR_LF_RE.search(line):
                raise ValueError(f"Illegal characters in header (CR or LF): {line!r}")
            lines.append(line)
        curl.setopt(pycurl.HTTPHEADER, lines)

        curl.setopt(
            pycurl.HEADERFUNCTION,
            functools.partial(self._curl_header_callback, transfer, request.header_callback),
        )
        streaming_callback = request.streaming_callback
        if streaming_callback is not None:
            if is_coroutine_function(streaming_callback) or inspect.iscoroutinefunction(
                streaming_callback
            ):
                raise TypeError("curl_httpclient does not support a coroutine streaming_callback")
            transfer.body = _CurlStreamingBuffer(self, curl, streaming_callback)
        else:
            transfer.body = _BufferedBody(self)
        curl.setopt(pycurl.WRITEFUNCTION, transfer.body.write)

        curl.setopt(pycurl.FOLLOWLOCATION, bool(request.follow_redirects))
        curl.setopt(pycurl.MAXREDIRS, int(request.max_redirects or 0))
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, int(1000 * (request.connect_timeout or 0)))
        curl.setopt(pycurl.TIMEOUT_MS, int(1000 * (request.request_timeout or 0)))
        curl.setopt(pycurl.USERAGENT, native_str(request.user_agent or _DEFAULT_USER_AGENT))
        if request.decompress_response:
            curl.setopt(pycurl.ENCODING, "gzip,deflate")
        if request.network_interface:
            curl.setopt(pycurl.INTERFACE, request.network_interface)

        if request.proxy_host and request.proxy_port:
            curl.setopt(pycurl.PROXY, request.proxy_host)
            curl.setopt(pycurl.PROXYPORT, int(request.proxy_port))
            if request.proxy_username:
                _set_credentials(
                    curl,
                    pycurl.PROXYAUTH,
                    pycurl.PROXYUSERPWD,
                    "proxy_auth_mode",
                    request.proxy_auth_mode,
                    request.proxy_username,
                    request.proxy_password,
                )
        else:
            # Explicitly none, so that *_proxy environment variables do not apply.
            curl.setopt(pycurl.PROXY, "")

        # VERIFYHOST 2 (the only other value than 0 libcurl accepts) checks the name too.
        verify = 1 if request.validate_cert else 0
        curl.setopt(pycurl.SSL_VERIFYPEER, verify)
        curl.setopt(pycurl.SSL_VERIFYHOST, 2 * verify)
        ipv4_only = request.allow_ipv6 is False
        resolve = pycurl.IPRESOLVE_V4 if ipv4_only else pycurl.IPRESOLVE_WHATEVER
        curl.setopt(pycurl.IPRESOLVE, resolve)
        tls_files = (
            (pycurl.CAINFO, request.ca_certs),
            (pycurl.SSLCERT, request.client_cert),
            (pycurl.SSLKEY, request.client_key),
        )
        for option, path in tls_files:
            if path is not None:
                curl.setopt(option, path)

        self._setup_method_and_body(curl, request)

        if request.auth_username is not None:
            _set_credentials(
                curl,
                pycurl.HTTPAUTH,
                pycurl.USERPWD,
                "auth_mode",
                request.auth_mode,
                request.auth_username,
                request.auth_password,
            )
            curl_log.debug(
                "%s %s (username: %r)", request.method, request.url, request.auth_username
            )
        else:
            curl_log.debug("%s %s", request.method, request.url)

        if request.prepare_curl_callback is not None:
            request.prepare_curl_callback(curl)

    def _setup_method_and_body(self, curl: Any, request: HTTPRequest) -> None:
        pycurl = _load_pycurl()
        method = request.method
        if method == "GET":
            curl.setopt(pycurl.HTTPGET, True)
        elif method == "POST":
            curl.setopt(pycurl.POST, True)
        elif method == "PUT":
            curl.setopt(pycurl.UPLOAD, True)
        elif method == "HEAD":
            curl.setopt(pycurl.NOBODY, True)
        elif request.allow_nonstandard_methods or method in ("DELETE", "OPTIONS", "PATCH"):
            curl.setopt(pycurl.CUSTOMREQUEST, method)
        else:
            raise ValueError(f"Unknown method {method}")

        body_expected = method in ("POST", "PATCH", "PUT")
        body_present = request.body is not None
        if not request.allow_nonstandard_methods and body_expected != body_present:
            raise ValueError(
                "Body must {}be None for method {} (unless allow_nonstandard_methods "
                "is true)".format("not " if body_expected else "", method)
            )
        if body_expected or body_present:
            if method == "GET":
                # libcurl cannot send a GET with a body.
                raise ValueError("Body must be None for GET request")
            body = utf8(request.body or b"")
            source = BytesIO(body)

            def seek(offset: int, origin: int) -> int:
                # libcurl rewinds to resend the body (after a redirect or auth challenge).
                source.seek(offset, origin)
                return int(pycurl.SEEKFUNC_OK)

            curl.setopt(pycurl.READFUNCTION, source.read)
            curl.setopt(pycurl.SEEKFUNCTION, seek)
            if method == "POST":
                curl.setopt(pycurl.POSTFIELDSIZE, len(body))
            else:
                curl.setopt(pycurl.UPLOAD, True)
                curl.setopt(pycurl.INFILESIZE, len(body))

    def _curl_header_callback(
        self,
        transfer: _Transfer,
        header_callback: Callable[[str], None] | None,
        header_line_bytes: bytes,
    ) -> None:
        header_line = header_line_bytes.decode("latin-1")
        if header_callback is not None:
            self.io_loop.add_callback(header_callback, header_line)
        header_line = header_line.strip()
        if header_line.startswith("HTTP/"):
            # A new response (after a redirect or an interim 1xx): start over.
            transfer.headers.clear()
            try:
                transfer.reason = httputil.parse_response_start_line(header_line).reason
            except httputil.HTTPInputError:
                pass
            return
        if not header_line:
            return
        try:
            transfer.headers.parse_line(header_line)
        except httputil.HTTPInputError:
            curl_log.debug("ignoring malformed header line %r", header_line)


# HTTPResponse.time_info's keys besides "queue": each is libcurl's <NAME>_TIME timer.
_CURL_TIMERS = (
    "namelookup", "connect", "appconnect", "pretransfer", "starttransfer", "total", "redirect"
)


def _set_credentials(
    curl: Any,
    scheme_option: int,
    credentials_option: int,
    mode_setting: str,
    mode: str | None,
    username: str,
    password: str | None,
) -> None:
    """Set an auth scheme (basic or digest) and ``user:password`` on ``curl``.

    Shared by server auth and proxy auth, which differ only in the curl options they set.
    """
    pycurl = _load_pycurl()
    if mode is None or mode == "basic":
        curl.setopt(scheme_option, pycurl.HTTPAUTH_BASIC)
    elif mode == "digest":
        curl.setopt(scheme_option, pycurl.HTTPAUTH_DIGEST)
    else:
        raise ValueError(f"Unsupported {mode_setting} {mode}")
    curl.setopt(credentials_option, httputil.encode_username_password(username, password or ""))


def _curl_debug(debug_type: int, debug_msg: bytes) -> None:
    kind = ("I", "<", ">", "<", ">")[debug_type] if debug_type < 5 else "?"
    text = debug_msg.decode("latin-1") if isinstance(debug_msg, bytes) else str(debug_msg)
    if debug_type == 0:
        curl_log.debug("%s", text.strip())
    elif debug_type in (1, 2):
        for line in text.splitlines():
            curl_log.debug("%s %s", kind, line)
    elif debug_type == 4:
        curl_log.debug("%s %r", kind, text)
