"""Building ASGI connection scopes from what squall's HTTP layer knows about a request."""

from __future__ import annotations

import socket
import ssl
from typing import Any, Optional
from urllib.parse import unquote

from squall import httputil

ASGI_SPEC_VERSION = "2.5"

# Header name (as HTTPHeaders stores it) -> the lower-case bytes a scope carries. Bounded,
# so that clients sending arbitrary names cannot grow it.
_SCOPE_NAMES: dict[str, bytes] = {}
_SCOPE_NAMES_LIMIT = 1000

_HTTP_VERSIONS = {"HTTP/1.1": "1.1", "HTTP/1.0": "1.0", "HTTP/2": "2", "HTTP/2.0": "2"}


def asgi_info() -> dict[str, str]:
    """The scope's ``asgi`` entry (a new dict each time: applications may keep it)."""
    return {"version": "3.0", "spec_version": ASGI_SPEC_VERSION}


def http_version(version: str) -> str:
    """ "1.1" for "HTTP/1.1" and so on: the scope takes its version from the connection's
    start line, so an HTTP/2 connection feeding the same delegate says "2"."""
    known = _HTTP_VERSIONS.get(version)
    if known is not None:
        return known
    return version[5:] if version.startswith("HTTP/") else version


def split_target(target: str) -> tuple[str, str]:
    """The path and query of a request target (origin form, absolute form or ``*``)."""
    if target[:1] != "/" and "://" in target:
        # absolute form (RFC 9112 3.2.2): the path starts after the authority
        rest = target.partition("://")[2]
        slash = rest.find("/")
        question = rest.find("?")
        if slash == -1 or (question != -1 and question < slash):
            target = "/" + (rest[question:] if question != -1 else "")
        else:
            target = rest[slash:]
    path, _, query = target.partition("?")
    return path, query


def decode_path(raw: str) -> str:
    """The scope's ``path``: percent-escapes and UTF-8 decoded (invalid bytes replaced)."""
    if "%" not in raw:
        if raw.isascii():
            return raw
        # the parser decoded the head as latin-1; the bytes were UTF-8
        return raw.encode("latin-1").decode("utf-8", "replace")
    return unquote(raw.encode("latin-1").decode("utf-8", "replace"))


def scope_headers(headers: httputil.HTTPHeaders) -> list[tuple[bytes, bytes]]:
    """The request's fields as the scope's list of (lower-case name, value) byte pairs.

    Values of one name keep their order; HTTPHeaders groups a repeated name at its first
    position (the order of different names carries no meaning in HTTP).
    """
    names = _SCOPE_NAMES
    result: list[tuple[bytes, bytes]] = []
    append = result.append
    if type(headers) is httputil.HTTPHeaders:
        # (the name -> values dict directly: this runs for every request)
        for name, values in headers._values.items():
            encoded = names.get(name)
            if encoded is None:
                encoded = _scope_name(name)
            for value in values:
                append((encoded, value.encode("latin-1")))
        return result
    for name, value in headers.get_all():
        encoded = names.get(name)
        if encoded is None:
            encoded = _scope_name(name)
        append((encoded, value.encode("latin-1")))
    return result


def connection_scope_headers(
    stream: Any, headers: httputil.HTTPHeaders
) -> list[tuple[bytes, bytes]]:
    """``scope_headers``, reusing the last request's list when a keep-alive connection
    sent the very same fields again (load generators and browsers mostly do)."""
    if type(headers) is not httputil.HTTPHeaders:
        return scope_headers(headers)
    values = headers._values
    try:
        last_values, last_list = stream._squall_asgi_headers
    except AttributeError:
        last_values = None
    except (TypeError, ValueError):
        last_values = None
    if last_values == values:
        # a copy: applications may change the list they were given
        return list(last_list)
    result = scope_headers(headers)
    try:
        stream._squall_asgi_headers = ({k: list(v) for k, v in values.items()}, result)
        result = list(result)
    except AttributeError:
        pass
    return result


def _scope_name(name: str) -> bytes:
    encoded = name.lower().encode("latin-1")
    if len(_SCOPE_NAMES) < _SCOPE_NAMES_LIMIT:
        _SCOPE_NAMES[name] = encoded
    return encoded


def connection_addresses(
    request_conn: Any,
) -> tuple[Optional[tuple[str, int]], Optional[tuple[Any, Any]]]:
    """``addresses``, remembered on the stream for the next request of the connection."""
    stream = getattr(request_conn, "stream", None)
    context = getattr(request_conn, "context", None)
    remote_ip = getattr(context, "remote_ip", None)
    try:
        cached = stream._squall_asgi_addresses  # type: ignore[union-attr]
    except AttributeError:
        cached = None
    if cached is not None and cached[0] == remote_ip:
        return cached[1]  # type: ignore[no-any-return]
    found = addresses(request_conn)
    try:
        stream._squall_asgi_addresses = (remote_ip, found)  # type: ignore[union-attr]
    except AttributeError:
        pass
    return found


def addresses(request_conn: Any) -> tuple[Optional[tuple[str, int]], Optional[tuple[Any, Any]]]:
    """The scope's ``client`` and ``server`` for the connection a request came on."""
    context = getattr(request_conn, "context", None)
    client: Optional[tuple[str, int]] = None
    family = getattr(context, "address_family", None)
    if family in (socket.AF_INET, socket.AF_INET6):
        address = context.address  # type: ignore[union-attr]
        remote_ip = context.remote_ip  # type: ignore[union-attr]
        if isinstance(address, tuple) and address and address[0] == remote_ip:
            client = (remote_ip, int(address[1]))
        else:
            # a trusted proxy named the client (xheaders): its port is not known
            client = (remote_ip, 0)
    stream = getattr(request_conn, "stream", None)
    return client, _server_address(stream)


def _server_address(stream: Any) -> Optional[tuple[Any, Any]]:
    if stream is None:
        return None
    try:
        # asked once per connection, not per request (a system call)
        return stream._squall_asgi_sockname  # type: ignore[no-any-return]
    except AttributeError:
        pass
    server: Optional[tuple[Any, Any]] = None
    sock = getattr(stream, "socket", None)
    try:
        name = sock.getsockname() if sock is not None else None
    except OSError:
        name = None
    if isinstance(name, tuple) and len(name) >= 2:
        server = (name[0], int(name[1]))
    elif isinstance(name, (str, bytes)) and name:
        server = (name.decode() if isinstance(name, bytes) else name, None)
    try:
        stream._squall_asgi_sockname = server
    except AttributeError:
        pass
    return server


def is_tls(request_conn: Any) -> bool:
    context = getattr(request_conn, "context", None)
    stream = getattr(request_conn, "stream", None)
    return getattr(context, "protocol", "http") == "https" and _ssl_view(stream) is not None


def _ssl_view(stream: Any) -> Any:
    sock = getattr(stream, "socket", None)
    if sock is None or not hasattr(sock, "cipher"):
        return None
    return sock


_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
_cipher_ids: Optional[dict[str, int]] = None


def _cipher_id(name: str) -> Optional[int]:
    global _cipher_ids
    if _cipher_ids is None:
        # OpenSSL's cipher ids end in the two bytes IANA assigned (0x03001301 is 0x1301)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.set_ciphers("ALL:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        _cipher_ids = {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}
    return _cipher_ids.get(name)


# RFC 4514 attribute type names for what Python's getpeercert() reports
_RDN_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}


def _rfc4514_escape(value: str) -> str:
    out = []
    for index, char in enumerate(value):
        if (
            char in ',+"\\<>;'
            or (char == "#" and index == 0)
            or (char == " " and index in (0, len(value) - 1))
        ):
            out.append("\\" + char)
        elif char == "\x00":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)


def _distinguished_name(subject: Any) -> Optional[str]:
    if not subject:
        return None
    rdns = []
    # RFC 4514 writes the sequence of RDNs last first
    for rdn in reversed(subject):
        parts = [f"{_RDN_NAMES.get(key, key)}={_rfc4514_escape(str(value))}" for key, value in rdn]
        rdns.append("+".join(parts))
    return ",".join(rdns)


def tls_extension(request_conn: Any, server_cert: Optional[str]) -> Optional[dict[str, Any]]:
    """The ``tls`` extension of a scope (None for a plain connection)."""
    view = _ssl_view(getattr(request_conn, "stream", None))
    if view is None:
        return None
    try:
        cipher = view.cipher()
        version = view.version()
        der = view.getpeercert(binary_form=True)
        parsed = view.getpeercert() if der else None
    except (ValueError, OSError):
        return None
    chain = [ssl.DER_cert_to_PEM_cert(der)] if der else []
    return {
        "server_cert": server_cert,
        "client_cert_chain": chain,
        # the parsed form exists only for certificates the server verified
        "client_cert_name": _distinguished_name(parsed.get("subject")) if parsed else None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(version) if version else None,
        "cipher_suite": _cipher_id(cipher[0]) if cipher else None,
    }
