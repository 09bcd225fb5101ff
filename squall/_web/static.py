"""StaticFileHandler: serves files from a directory, with caching headers and ranges.

Every path is checked twice before anything is read: the joined path must lie in the root
(no ``..`` escape), and its real path, after symlinks, must lie in the root or in an
``allowed_symlink_directory``. Only regular files are served.
"""

from __future__ import annotations

import collections
import datetime
import email.utils
import hashlib
import mimetypes
import os
import stat
import threading
import urllib.parse
from typing import Any, Dict, Generator, List, Optional, Tuple, Union

from squall._web.errors import HTTPError
from squall._web.handler import RequestHandler
from squall._web.handlers import _is_protocol_relative
from squall.log import gen_log


def _parse_request_range(range_header: str) -> Optional[Tuple[Optional[int], Optional[int]]]:
    """Parse a ``Range: bytes=a-b`` header into a slice (start, end) with an exclusive
    end; a suffix range ``bytes=-n`` gives (-n, None). None for anything unusable."""
    unit, _, value = range_header.partition("=")
    if unit.strip() != "bytes":
        return None
    start_text, dash, end_text = value.strip().partition("-")
    start_text, end_text = start_text.strip(), end_text.strip()
    try:
        start = int(start_text) if start_text else None
        end = int(end_text) if end_text else None
    except ValueError:
        return None
    if (start is not None and start < 0) or (end is not None and end < 0):
        return None
    if end is not None:
        if start is None:
            if end != 0:
                start = -end
                end = None
        else:
            end += 1
    return start, end


def _content_range(start: Optional[int], end: Optional[int], total: int) -> str:
    first = start or 0
    last = (end or total) - 1
    return f"bytes {first}-{last}/{total}"


def _inside(path: str, directory: str) -> bool:
    directory = directory if directory.endswith(os.path.sep) else directory + os.path.sep
    return (path + os.path.sep).startswith(directory)


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
    # Files larger than this get no version hash, so static_url never reads them whole.
    MAX_VERSION_CONTENT_SIZE = 256 * 1024 * 1024

    _static_hashes: "collections.OrderedDict[str, Optional[str]]" = collections.OrderedDict()
    _lock = threading.Lock()
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
        self.default_filename = default_filename
        self.allowed_symlink_directory = allowed_symlink_directory

    @classmethod
    def reset(cls) -> None:
        """Forget cached version hashes (of this class and its subclasses that share them)."""
        with cls._lock:
            cls._static_hashes = collections.OrderedDict()

    def head(self, path: str) -> Any:  # type: ignore[override]
        return self.get(path, include_body=False)

    async def get(self, path: str, include_body: bool = True) -> None:  # type: ignore[override]
        self.path = self.parse_url_path(path)
        del path
        absolute_path = self.get_absolute_path(self.root, self.path)
        self.absolute_path = self.validate_absolute_path(self.root, absolute_path)
        if self.absolute_path is None:
            return
        self.modified = self.get_modified_time()
        self.set_headers()
        if self.should_return_304():
            self.set_status(304)
            return
        size = self.get_content_size()
        start: Optional[int] = None
        end: Optional[int] = None
        range_header = self.request.headers.get("Range")
        request_range = _parse_request_range(range_header) if range_header else None
        if request_range is not None:
            start, end = request_range
            if start is not None and start < 0:
                start = max(start + size, 0)
            if (
                start is not None and (start >= size or (end is not None and start >= end))
            ) or end == 0:
                # Nothing of the file falls in the range: 416 with the real size.
                self.set_status(416)
                self.set_header("Content-Type", "text/plain")
                self.set_header("Content-Range", f"bytes */{size}")
                return
            if end is not None and end > size:
                end = size
            if size != (end or size) - (start or 0):
                self.set_status(206)
                self.set_header("Content-Range", _content_range(start, end, size))
        if start is not None and end is not None:
            content_length = end - start
        elif end is not None:
            content_length = end
        elif start is not None:
            content_length = size - start
        else:
            content_length = size
        self.set_header("Content-Length", content_length)
        if include_body:
            from squall.iostream import StreamClosedError

            content = self.get_content(self.absolute_path, start, end)
            if isinstance(content, bytes):
                content = [content]
            for chunk in content:
                try:
                    self.write(chunk)
                    await self.flush()
                except StreamClosedError:
                    return
        else:
            assert self.request.method == "HEAD"

    def compute_etag(self) -> Optional[str]:
        assert self.absolute_path is not None
        version_hash = self._get_cached_version(self.absolute_path)
        if not version_hash:
            return None
        return f'"{version_hash}"'

    def set_headers(self) -> None:
        """Set the caching and content headers of the response."""
        self.set_header("Accept-Ranges", "bytes")
        self.set_etag_header()
        if self.modified is not None:
            self.set_header("Last-Modified", self.modified)
        content_type = self.get_content_type()
        if content_type:
            self.set_header("Content-Type", content_type)
        cache_time = self.get_cache_time(self.path, self.modified, content_type)
        if cache_time > 0:
            self.set_header(
                "Expires",
                datetime.datetime.now(datetime.timezone.utc)
                + datetime.timedelta(seconds=cache_time),
            )
            self.set_header("Cache-Control", "max-age=" + str(cache_time))
        self.set_extra_headers(self.path)

    def should_return_304(self) -> bool:
        """Whether the client's cached copy is current (ETag first, then date)."""
        if self.request.headers.get("If-None-Match"):
            return self.check_etag_header()
        since_text = self.request.headers.get("If-Modified-Since")
        if since_text is not None and self.modified is not None:
            try:
                since = email.utils.parsedate_to_datetime(since_text)
            except (TypeError, ValueError, IndexError):
                return False
            if since is None:
                return False
            if since.tzinfo is None:
                since = since.replace(tzinfo=datetime.timezone.utc)
            modified = self.modified
            if modified.tzinfo is None:
                modified = modified.replace(tzinfo=datetime.timezone.utc)
            if since >= modified:
                return True
        return False

    @classmethod
    def get_absolute_path(cls, root: str, path: str) -> str:
        """The file system path for ``path`` under ``root`` (not yet validated)."""
        return os.path.abspath(os.path.join(root, path))

    def _allowed_directories(self, root: str) -> List[str]:
        allowed = self.allowed_symlink_directory
        if allowed is None:
            return [root]
        if isinstance(allowed, str):
            return [allowed]
        return list(allowed)

    def _check_real_path(self, root: str, path: str) -> None:
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError):
            # e.g. an embedded NUL byte: no such file can exist.
            raise HTTPError(404)
        for directory in self._allowed_directories(root):
            if _inside(real, os.path.realpath(directory)):
                return
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
            if start is not None:
                file.seek(start)
            remaining = None if end is None else end - (start or 0)
            while True:
                chunk_size = 64 * 1024
                if remaining is not None and remaining < chunk_size:
                    chunk_size = remaining
                chunk = file.read(chunk_size)
                if chunk:
                    if remaining is not None:
                        remaining -= len(chunk)
                    yield chunk
                else:
                    if remaining is not None:
                        assert remaining == 0
                    return

    @classmethod
    def get_content_version(cls, abspath: str) -> str:
        """The version string of a file (hex SHA-512 of its content)."""
        data = cls.get_content(abspath)
        hasher = hashlib.sha512()
        if isinstance(data, bytes):
            hasher.update(data)
        else:
            for chunk in data:
                hasher.update(chunk)
        return hasher.hexdigest()

    def _stat(self) -> os.stat_result:
        assert self.absolute_path is not None
        if self._stat_result is None:
            self._stat_result = os.stat(self.absolute_path)
        return self._stat_result

    def get_content_size(self) -> int:
        return self._stat().st_size

    def get_modified_time(self) -> Optional[datetime.datetime]:
        """The file's modification time (whole seconds, UTC)."""
        return datetime.datetime.fromtimestamp(int(self._stat().st_mtime), datetime.timezone.utc)

    def get_content_type(self) -> str:
        assert self.absolute_path is not None
        mime_type, encoding = mimetypes.guess_type(self.absolute_path)
        # Compressed files are served as they are, not as what they would decompress to.
        if encoding == "gzip":
            return "application/gzip"
        if encoding is not None:
            return "application/octet-stream"
        if mime_type is not None:
            return mime_type
        return "application/octet-stream"

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
        if not include_version:
            return url
        version_hash = cls.get_version(settings, path)
        if not version_hash:
            return url
        return f"{url}?v={version_hash}"

    def parse_url_path(self, url_path: str) -> str:
        """The relative file path for a URL path."""
        if os.path.sep != "/":
            url_path = url_path.replace("/", os.path.sep)
        return url_path

    @classmethod
    def get_version(cls, settings: Dict[str, Any], path: str) -> Optional[str]:
        """The version hash of a file in ``static_path`` (None if it cannot be read);
        a path outside the directory is a 403 HTTPError."""
        root = os.path.abspath(settings["static_path"])
        abs_path = cls.get_absolute_path(settings["static_path"], path)
        if not _inside(abs_path, root):
            raise HTTPError(403, "%s is not in root static directory", path)
        return cls._get_cached_version(abs_path, root)

    @classmethod
    def _get_cached_version(cls, abs_path: str, root: Optional[str] = None) -> Optional[str]:
        with cls._lock:
            hashes = cls._static_hashes
            if abs_path in hashes:
                hashes.move_to_end(abs_path)
                return hashes[abs_path]
        version: Optional[str] = None
        try:
            try:
                info = os.stat(abs_path)
            except (OSError, ValueError):
                # Subclasses may serve from somewhere other than the file system.
                info = None
            if info is not None:
                if not stat.S_ISREG(info.st_mode):
                    raise ValueError(f"{abs_path} is not a file")
                if info.st_size > cls.MAX_VERSION_CONTENT_SIZE:
                    raise ValueError(
                        f"{abs_path} is larger than {cls.MAX_VERSION_CONTENT_SIZE} bytes"
                    )
                if root is not None and not _inside(
                    os.path.realpath(abs_path), os.path.realpath(root)
                ):
                    raise ValueError(f"{abs_path} is not in root static directory")
            version = cls.get_content_version(abs_path)
        except Exception as error:
            gen_log.error("Could not open static file %r: %s", abs_path, error)
            version = None
        with cls._lock:
            hashes = cls._static_hashes
            hashes[abs_path] = version
            hashes.move_to_end(abs_path)
            while len(hashes) > cls.MAX_CACHED_VERSIONS:
                hashes.popitem(last=False)
        return version
