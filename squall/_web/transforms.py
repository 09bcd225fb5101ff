"""Output transforms: rewrite a response's status, headers and body on the way out."""

from __future__ import annotations

import zlib
from typing import Any, Optional, Tuple

from squall import httputil

# What transform_first_chunk hands on: the (maybe changed) status, headers and body piece.
_Head = Tuple[int, httputil.HTTPHeaders, bytes]

# zlib writes the gzip container (RFC 1952) rather than a bare zlib stream with this.
_GZIP_WBITS = 16 + zlib.MAX_WBITS


class OutputTransform:
    """Base transform; passes everything through unchanged.

    One instance exists per request. ``transform_first_chunk`` sees the status and
    headers along with the first piece of body, ``transform_chunk`` every later piece;
    ``finishing`` is true for the last.
    """

    def __init__(self, request: httputil.HTTPServerRequest) -> None:
        pass

    def transform_first_chunk(
        self, status_code: int, headers: httputil.HTTPHeaders, chunk: bytes, finishing: bool
    ) -> _Head:
        return status_code, headers, chunk

    def transform_chunk(self, chunk: bytes, finishing: bool) -> bytes:
        return chunk


class GZipContentEncoding(OutputTransform):
    """Gzips text-like responses for clients that accept it (the ``compress_response``
    setting). Small complete responses are left alone: compressing them costs more than
    it saves."""

    # Compressible types besides text/* (Tornado's documented list).
    CONTENT_TYPES = set(
        "application/javascript application/x-javascript application/xml"
        " application/atom+xml application/json application/xhtml+xml image/svg+xml".split()
    )
    GZIP_LEVEL = 6
    MIN_LENGTH = 1024

    def __init__(self, request: httputil.HTTPServerRequest) -> None:
        self._gzipping = "gzip" in request.headers.get("Accept-Encoding", "")
        self._compressor: Optional[Any] = None

    def _compressible_type(self, ctype: str) -> bool:
        return ctype.startswith("text/") or ctype in self.CONTENT_TYPES

    def _worth_compressing(
        self, status_code: int, headers: httputil.HTTPHeaders, chunk: bytes, finishing: bool
    ) -> bool:
        if status_code in (204, 304) or "Content-Encoding" in headers:
            return False  # no body, or one that is encoded already
        if finishing and len(chunk) < self.MIN_LENGTH:
            return False
        media_type = headers.get("Content-Type", "").partition(";")[0].strip()
        return self._compressible_type(media_type)

    def transform_first_chunk(
        self, status_code: int, headers: httputil.HTTPHeaders, chunk: bytes, finishing: bool
    ) -> _Head:
        # Caches must keep the compressed and plain forms apart, whichever is sent.
        vary = headers.get("Vary")
        headers["Vary"] = vary + ", Accept-Encoding" if vary else "Accept-Encoding"
        self._gzipping = self._gzipping and self._worth_compressing(
            status_code, headers, chunk, finishing
        )
        if not self._gzipping:
            return status_code, headers, chunk
        headers["Content-Encoding"] = "gzip"
        self._compressor = zlib.compressobj(self.GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
        body = self.transform_chunk(chunk, finishing)
        if "Content-Length" in headers:
            if finishing:
                headers["Content-Length"] = str(len(body))  # all of it, compressed at once
            else:
                del headers["Content-Length"]  # unknown until the end: the body goes chunked
        return status_code, headers, body

    def transform_chunk(self, chunk: bytes, finishing: bool) -> bytes:
        compressor = self._compressor
        if not self._gzipping or compressor is None:
            return chunk
        body = compressor.compress(chunk)
        # A sync flush makes every piece decodable as it arrives; the last one closes the
        # stream with the gzip trailer.
        return body + (compressor.flush() if finishing else compressor.flush(zlib.Z_SYNC_FLUSH))
