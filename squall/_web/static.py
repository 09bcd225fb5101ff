"""StaticFileHandler: serves files from a directory, with caching headers and ranges.

Every path is checked twice before anything is read: the joined path must lie in the root
(no ``..`` escape), and its real path, after symlinks, must lie in the root or in an
``allowed_symlink_directory``. Only regular files are served.

Subclasses change where files come from through the same hooks for serving and for
``static_url``: ``get_absolute_path``, ``validate_absolute_path``, ``get_content`` and
friends on one side, ``make_static_url``, ``get_version`` and ``get_content_version`` on
the other; nothing here reads ``static_path`` behind their back.
"""

from __future__ import annotations

import collections
import datetime
import email.utils
import hashlib
import mimetypes
import os
import re
import stat
import threading
import urllib.parse
from typing import Any, Dict, Generator, Iterable, List, Optional, Tuple, Union

from squall._web.errors import HTTPError
from squall._web.handler import RequestHandler
from squall._web.handlers import _is_protocol_relative
from squall.log import gen_log

# One byte range (RFC 9110, section 14.1.2): "first-last", "first-" or "-suffix length".
# (A bare number with no dash counts as "first-", as Tornado reads it.)
_BYTE_RANGE = re.compile(r"\s*bytes\s*=\s*([0-9]*)\s*(?:-\s*([0-9]*)\s*)?\Z")

_READ_SIZE = 64 * 1024
_UTC = datetime.timezone.utc


def _parse_request_range(range_header: str) -> Optional[Tuple[Optional[int], Optional[int]]]:
    """Parse a ``Range: bytes=a-b`` header into a slice (start, end) with an exclusive
    end; a suffix range ``bytes=-n`` gives (-n, None). None for anything unusable."""
    match = _BYTE_RANGE.match(range_header)
    if match is None:
        return None
    first, last = (int(digits) if digits else None for digits in match.groups())
    if last is None:
        return first, None
    if first is not None:
        return first, last + 1
    # "-0" asks for no bytes at all, which no file can satisfy; the end says so.
    return (-last, None) if last else (None, 0)


def _fit_range(
    requested: Tuple[Optional[int], Optional[int]], size: int
) -> Optional[Tuple[Optional[int], Optional[int]]]:
    """The (start, end) to read for a parsed range on a file of ``size`` bytes: a suffix
    made absolute, an end past the file cut to it. None when no byte of the file is in
    the range (it is then unsatisfiable, RFC 9110 section 15.5.17)."""
    start, end = requested
    if start is not None and start < 0:
        start = max(size + start, 0)
    if end is not None:
        if end == 0 or (start is not None and start >= end):
            return None
        end = min(end, size)
    if start is not None and start >= size:
        return None
    return start, end


def _inside(path: str, directory: str) -> bool:
    directory = directory if directory.endswith(os.path.sep) else directory + os.path.sep
    return (path + os.path.sep).startswith(directory)


def _as_utc(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_UTC)


def _parse_http_date(text: Optional[str]) -> Optional[datetime.datetime]:
    if text is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return None if parsed is None else _as_utc(parsed)


def _pieces(content: Union[bytes, Iterable[bytes]]) -> Iterable[bytes]:
    # get_content may return the whole content at once or an iterable of chunks.
    return (content,) if isinstance(content, bytes) else content


def _close(content: Any) -> None:
    # Stopping early leaves a generator suspended inside its open file; close it now
    # rather than whenever it is collected.
    close = getattr(content, "close", None)
    if close is not None:
        close()


class StaticFileHandler(RequestHandler):
    """Serves static files from the directory given as ``path``.

    Set up automatically by the ``static_path`` setting, or add it to the handlers with a
    pattern that has one group for the file path. ``default_filename`` serves e.g.
    ``index.html`` for directory URLs. Files are served with an ETag (a SHA-512 of the
    content), ``Last-Modified``, support for ``If-None-Match``/``If-Modified-Since`` and
    ``Range``; with ``?v=`` in the URL (as :meth:`make_static_url` builds) they are
    cacheable for ten years.
    """

    CACHE_MAX_AGE = 86400 * 365 * 10
    # Version hashes of up to this many files are kept (least recently used go first).
    MAX_CACHED_VERSIONS = 10000
    # Content larger than this gets no version hash, so static_url never reads it whole.
    MAX_VERSION_CONTENT_SIZE = 256 * 1024 * 1024

    _static_hashes: "collections.OrderedDict[str, Optional[str]]" = collections.OrderedDict()
    _lock = threading.Lock()
    # Class-level defaults: subclasses with an initialize() of their own that does not
    # call this one still get them.
    allowed_symlink_directory: Union[None, str, List[str]] = None
    default_filename: Optional[str] = None
    _stat_result: Optional[os.stat_result] = None

    def initialize(  # type: ignore[override]
        self,
        path: str,
        default_filename: Optional[str] = None,
        allowed_symlink_directory: Union[None, str, List[str]] = None,
    ) -> None:
        self.root = path
        self.allowed_symlink_directory = allowed_symlink_directory
        self.default_filename = default_filename

    @classmethod
    def reset(cls) -> None:
        """Forget cached version hashes (of this class and its subclasses that share them)."""
        with cls._lock:
            cls._static_hashes = collections.OrderedDict()

    def head(self, path: str) -> Any:  # type: ignore[override]
        return self.get(path, include_body=False)

    async def get(self, path: str, include_body: bool = True) -> None:  # type: ignore[override]
        # From here on only self.path, the file path the URL names, is used.
        self.path = self.parse_url_path(path)
        root = self.root
        self.absolute_path = self.validate_absolute_path(
            root, self.get_absolute_path(root, self.path)
        )
        if self.absolute_path is None:
            return  # (validate_absolute_path answered with a redirect)
        self.modified = self.get_modified_time()
        self.set_headers()
        if self.should_return_304():
            self.set_status(304)
            return
        span = self._select_range(self.get_content_size())
        if span is None:
            return  # (416 sent)
        if include_body:
            await self._send_content(*span)
        else:
            assert self.request.method == "HEAD"

    def _select_range(self, size: int) -> Optional[Tuple[Optional[int], Optional[int]]]:
        """Apply the Range header: set status and length headers and return the
        (start, end) to read, or None after answering 416."""
        header = self.request.headers.get("Range")
        # A Range header that cannot be read is ignored: the whole file is sent.
        requested = _parse_request_range(header) if header else None
        span = (None, None) if requested is None else _fit_range(requested, size)
        if span is None:
            self.set_status(416)
            self.set_header("Content-Type", "text/plain")
            self.set_header("Content-Range", f"bytes */{size}")
            return None
        start, end = span
        first, stop = start or 0, size if end is None else end
        if stop - first != size:
            # 206 only for part of the file: some players refuse a 206 for all of it.
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {first}-{stop - 1}/{size}")
        self.set_header("Content-Length", stop - first)
        return span

    async def _send_content(self, start: Optional[int], end: Optional[int]) -> None:
        from squall.iostream import StreamClosedError

        assert self.absolute_path is not None
        content = self.get_content(self.absolute_path, start, end)
        try:
            for piece in _pieces(content):
                self.write(piece)
                await self.flush()  # (one piece in memory at a time)
        except StreamClosedError:
            pass  # the client went away: nothing is left to do
        finally:
            _close(content)

    def compute_etag(self) -> Optional[str]:
        assert self.absolute_path is not None
        version = self._get_cached_version(self.absolute_path)
        return f'"{version}"' if version else None

    def set_headers(self) -> None:
        """Set the caching and content headers of the response."""
        self.set_header("Accept-Ranges", "bytes")
        self.set_etag_header()
        modified = self.modified
        if modified is not None:
            self.set_header("Last-Modified", modified)
        content_type = self.get_content_type()
        if content_type:
            self.set_header("Content-Type", content_type)
        lifetime = self.get_cache_time(self.path, modified, content_type)
        if lifetime > 0:
            now = datetime.datetime.now(_UTC)
            self.set_header("Expires", now + datetime.timedelta(seconds=lifetime))
            self.set_header("Cache-Control", f"max-age={lifetime}")
        self.set_extra_headers(self.path)

    def should_return_304(self) -> bool:
        """Whether the client's cached copy is current (ETag first, then date)."""
        headers = self.request.headers
        if headers.get("If-None-Match"):
            # An entity tag is the stronger validator: with one, dates are not consulted.
            return self.check_etag_header()
        since = _parse_http_date(headers.get("If-Modified-Since"))
        modified = self.modified
        return since is not None and modified is not None and since >= _as_utc(modified)

    @classmethod
    def get_absolute_path(cls, root: str, path: str) -> str:
        """The file system path for ``path`` under ``root``; 403 when ``path`` leads out of
        ``root`` as written (symlinks are checked later, by validate_absolute_path)."""
        absolute = os.path.abspath(os.path.join(root, path))
        if not _inside(absolute, os.path.abspath(root)):
            raise HTTPError(403, "%s is not in root static directory", path)
        return absolute

    def _allowed_directories(self, root: str) -> List[str]:
        allowed = self.allowed_symlink_directory
        if allowed is None:
            return [root]
        return [allowed] if isinstance(allowed, str) else list(allowed)

    def _check_real_path(self, root: str, path: str) -> None:
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError):
            # e.g. an embedded NUL byte: no such file can exist.
            raise HTTPError(404)
        if not any(_inside(real, os.path.realpath(d)) for d in self._allowed_directories(root)):
            raise HTTPError(403, "%s is not in root static directory", self.path)

    def validate_absolute_path(self, root: str, absolute_path: str) -> Optional[str]:
        """Check ``absolute_path`` may be served and return the path to serve; None when a
        redirect was sent instead. 403 outside the root, 404 if missing."""
        root = os.path.abspath(root)
        if not _inside(absolute_path, root):
            raise HTTPError(403, "%s is not in root static directory", self.path)
        # Symlinks are resolved before anything else is asked of the path, so a link
        # pointing out of bounds gets the same answer whether its target exists or not.
        self._check_real_path(root, absolute_path)
        if self.default_filename is not None and os.path.isdir(absolute_path):
            request_path = self.request.path
            if not request_path.endswith("/"):
                if _is_protocol_relative(urllib.parse.unquote(request_path)):
                    raise HTTPError(403, "cannot redirect path with two initial slashes")
                self.redirect(request_path + "/", permanent=True)
                return None
            absolute_path = os.path.join(absolute_path, self.default_filename)
            self._check_real_path(root, absolute_path)
        try:
            result = os.stat(absolute_path)
        except (OSError, ValueError):
            raise HTTPError(404)
        if not stat.S_ISREG(result.st_mode):
            raise HTTPError(403, "%s is not a file", self.path)
        self._stat_result = result
        return absolute_path

    @classmethod
    def get_content(
        cls, abspath: str, start: Optional[int] = None, end: Optional[int] = None
    ) -> Generator[bytes, None, None]:
        """The file's bytes from ``start`` to ``end`` (exclusive), in chunks."""
        with open(abspath, "rb") as file:
            if start:
                file.seek(start)
            left = None if end is None else end - (start or 0)
            while left is None or left > 0:
                piece = file.read(_READ_SIZE if left is None else min(left, _READ_SIZE))
                if not piece:
                    return  # (end of file)
                if left is not None:
                    left -= len(piece)
                yield piece

    @classmethod
    def get_content_version(cls, abspath: str) -> str:
        """The version string of a file (hex SHA-512 of its content); ValueError for
        content larger than ``MAX_VERSION_CONTENT_SIZE``."""
        content = cls.get_content(abspath)
        digest = hashlib.sha512()
        budget = cls.MAX_VERSION_CONTENT_SIZE
        try:
            for piece in _pieces(content):
                budget -= len(piece)
                if budget < 0:
                    raise ValueError(
                        f"{abspath} is larger than {cls.MAX_VERSION_CONTENT_SIZE} bytes"
                    )
                digest.update(piece)
        finally:
            _close(content)
        return digest.hexdigest()

    def _stat(self) -> os.stat_result:
        # validate_absolute_path keeps its stat, so size and time describe the file it
        # checked; an override that does not call it gets a stat of its own here.
        assert self.absolute_path is not None
        if self._stat_result is None:
            self._stat_result = os.stat(self.absolute_path)
        return self._stat_result

    def get_content_size(self) -> int:
        return self._stat().st_size

    def get_modified_time(self) -> Optional[datetime.datetime]:
        """The file's modification time (whole seconds, UTC)."""
        return datetime.datetime.fromtimestamp(int(self._stat().st_mtime), _UTC)

    def get_content_type(self) -> str:
        assert self.absolute_path is not None
        mime_type, encoding = mimetypes.guess_type(self.absolute_path)
        if encoding is None:
            return mime_type or "application/octet-stream"
        # A compressed file is served as it is, not as what it would decompress to; only
        # gzip has a type of its own (RFC 6713).
        return "application/gzip" if encoding == "gzip" else "application/octet-stream"

    def set_extra_headers(self, path: str) -> None:
        """Hook to add headers to static responses."""

    def get_cache_time(
        self, path: str, modified: Optional[datetime.datetime], mime_type: str
    ) -> int:
        """Seconds the client may cache the file: long for versioned URLs, else 0."""
        return self.CACHE_MAX_AGE if "v" in self.request.arguments else 0

    @classmethod
    def make_static_url(
        cls, settings: Dict[str, Any], path: str, include_version: bool = True
    ) -> str:
        """The URL for a static file, with ``?v=<hash>`` when ``include_version``."""
        url = settings.get("static_url_prefix", "/static/") + path
        version = cls.get_version(settings, path) if include_version else None
        return f"{url}?v={version}" if version else url

    def parse_url_path(self, url_path: str) -> str:
        """The relative file path for a URL path."""
        return url_path if os.path.sep == "/" else url_path.replace("/", os.path.sep)

    @classmethod
    def get_version(cls, settings: Dict[str, Any], path: str) -> Optional[str]:
        """The version hash of a static file (None if it cannot be read); a path that
        leads out of the directory is a 403 HTTPError (from get_absolute_path)."""
        root = settings["static_path"]
        absolute = cls.get_absolute_path(root, path)
        # With the stock mapping the file must really lie in the directory (a symlink out
        # of it gets no version); a get_absolute_path of a subclass, which may take any
        # kind of root, answers for what it returns.
        stock = getattr(cls.get_absolute_path, "__func__", None) is _STOCK_GET_ABSOLUTE_PATH
        return cls._get_cached_version(absolute, root if stock else None)

    @classmethod
    def _get_cached_version(cls, abs_path: str, root: Optional[str] = None) -> Optional[str]:
        with cls._lock:
            hashes = cls._static_hashes
            if abs_path in hashes:
                hashes.move_to_end(abs_path)  # (most recently used last)
                return hashes[abs_path]
        # Hashing happens outside the lock: other threads may look up other files.
        version = cls._compute_version(abs_path, root) or None
        with cls._lock:
            hashes = cls._static_hashes
            hashes[abs_path] = version
            hashes.move_to_end(abs_path)
            while len(hashes) > cls.MAX_CACHED_VERSIONS:
                hashes.popitem(last=False)
        return version

    @classmethod
    def _compute_version(cls, abs_path: str, root: Optional[str]) -> Optional[str]:
        try:
            _check_versionable(abs_path, root)
            return cls.get_content_version(abs_path)
        except Exception as error:
            gen_log.error("Could not open static file %r: %s", abs_path, error)
            return None


_STOCK_GET_ABSOLUTE_PATH = StaticFileHandler.get_absolute_path.__func__  # type: ignore[attr-defined]


def _check_versionable(abs_path: str, root: Optional[str]) -> None:
    """Refuse to version what must never be read: anything but a regular file (a FIFO
    would block, a device never end) and, given a root, a file whose real path is not
    inside it."""
    try:
        info = os.stat(abs_path)
    except (OSError, ValueError):
        return  # not a file system path: a subclass's get_content knows where it is
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{abs_path} is not a file")
    if root is not None and not _inside(os.path.realpath(abs_path), os.path.realpath(root)):
        raise ValueError(f"{abs_path} is not in root static directory")
