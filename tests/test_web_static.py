"""StaticFileHandler: caching headers, ranges, versioned URLs and refusing escapes."""

import hashlib
import logging
import os

import pytest

from squall.web import Application, HTTPError, RequestHandler, StaticFileHandler

CONTENT = b"User-agent: *\nDisallow: /\n"


@pytest.fixture
def static_dir(tmp_path):
    root = tmp_path / "static"
    root.mkdir()
    (root / "robots.txt").write_bytes(CONTENT)
    (root / "style.css").write_bytes(b"body {}")
    (root / "dir").mkdir()
    (root / "dir" / "index.html").write_bytes(b"index page")
    (tmp_path / "secret.txt").write_bytes(b"secret")
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    os.symlink(root / "robots.txt", root / "inner-link.txt")
    StaticFileHandler.reset()
    yield root
    StaticFileHandler.reset()


class StaticUrlHandler(RequestHandler):
    def get(self, path):
        self.write(self.static_url(path, include_version=self.get_argument("v", "1") == "1"))


@pytest.fixture
def app(static_dir):
    return Application(
        [
            (r"/url/(.*)", StaticUrlHandler),
            (
                r"/index/(.*)",
                StaticFileHandler,
                {"path": str(static_dir), "default_filename": "index.html"},
            ),
        ],
        static_path=str(static_dir),
    )


CONTENT_HASH = hashlib.sha512(CONTENT).hexdigest()


async def test_serves_file_with_cache_headers(fetch):
    response = await fetch("/static/robots.txt")
    assert response.code == 200
    assert response.body == CONTENT
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers["Etag"] == f'"{CONTENT_HASH}"'
    assert response.headers["Accept-Ranges"] == "bytes"
    assert "Last-Modified" in response.headers
    assert "Cache-Control" not in response.headers
    assert (await fetch("/robots.txt")).body == CONTENT


async def test_versioned_url_is_cacheable(fetch):
    response = await fetch("/static/robots.txt?v=abc")
    assert response.headers["Cache-Control"] == "max-age=315360000"
    assert "Expires" in response.headers


async def test_static_url_includes_hash(fetch):
    assert (await fetch("/url/robots.txt")).body.decode() == "/static/robots.txt?v=" + CONTENT_HASH
    assert (await fetch("/url/robots.txt?v=0")).body == b"/static/robots.txt"


async def test_conditional_requests(fetch):
    first = await fetch("/static/robots.txt")
    by_etag = await fetch("/static/robots.txt", headers={"If-None-Match": first.headers["Etag"]})
    assert by_etag.code == 304
    assert "Content-Length" not in by_etag.headers
    by_date = await fetch(
        "/static/robots.txt", headers={"If-Modified-Since": first.headers["Last-Modified"]}
    )
    assert by_date.code == 304
    mismatch = await fetch(
        "/static/robots.txt",
        headers={"If-None-Match": '"other"', "If-Modified-Since": first.headers["Last-Modified"]},
    )
    assert mismatch.code == 200
    invalid = await fetch("/static/robots.txt", headers={"If-Modified-Since": "not a date"})
    assert invalid.code == 200


@pytest.mark.parametrize(
    "header, code, body, content_range",
    [
        ("bytes=0-9", 206, CONTENT[:10], "bytes 0-9/26"),
        ("bytes=-4", 206, CONTENT[-4:], "bytes 22-25/26"),
        ("bytes=22-", 206, CONTENT[22:], "bytes 22-25/26"),
        ("bytes=0-", 200, CONTENT, None),
        ("bytes=0-1000000", 200, CONTENT, None),
        ("bytes=-1000000", 200, CONTENT, None),
        ("nonsense", 200, CONTENT, None),
    ],
)
async def test_ranges(fetch, header, code, body, content_range):
    response = await fetch("/static/robots.txt", headers={"Range": header})
    assert response.code == code
    assert response.body == body
    assert response.headers.get("Content-Range") == content_range
    assert response.headers["Content-Length"] == str(len(body))


@pytest.mark.parametrize("header", ["bytes=26-", "bytes=10-3", "bytes=-0"])
async def test_unsatisfiable_ranges_are_416(fetch, header):
    response = await fetch("/static/robots.txt", headers={"Range": header})
    assert response.code == 416
    assert response.headers["Content-Range"] == "bytes */26"


async def test_head_has_length_but_no_body(fetch):
    response = await fetch("/static/robots.txt", method="HEAD")
    assert response.code == 200
    assert response.body == b""
    assert response.headers["Content-Length"] == "26"


async def test_missing_file_is_404(fetch):
    assert (await fetch("/static/nothing-here")).code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/static/../secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/dir/../../secret.txt",
        "/static/link.txt",
    ],
)
async def test_escape_from_root_refused(fetch, path, caplog):
    with caplog.at_level(logging.WARNING):
        response = await fetch(path)
    assert response.code in (403, 404)
    assert b"secret" not in response.body


@pytest.mark.parametrize("path", ["/static/a%00b", "/static/%00", "/static/dir/%00/x"])
async def test_nul_byte_in_path_is_404(fetch, path):
    assert (await fetch(path)).code == 404


async def test_symlink_inside_root_served(fetch):
    assert (await fetch("/static/inner-link.txt")).body == CONTENT


async def test_directory_without_default_filename_is_403(fetch):
    assert (await fetch("/static/dir/")).code == 403


async def test_default_filename_and_redirect(fetch):
    assert (await fetch("/index/dir/")).body == b"index page"
    response = await fetch("/index/dir", follow_redirects=False)
    assert response.code == 301
    assert response.headers["Location"] == "/index/dir/"


class TestRootPrefix:
    @pytest.fixture
    def app(self, static_dir):
        return Application(
            static_path=str(static_dir),
            static_url_prefix="/",
            static_handler_args={"default_filename": "index.html"},
        )

    @pytest.mark.parametrize("path", ["/%5Cevil.com/../dir", "/\\evil.com/../dir"])
    async def test_no_protocol_relative_redirect(self, fetch, path, caplog):
        with caplog.at_level(logging.WARNING):
            response = await fetch(path, follow_redirects=False)
        assert response.code == 403
        assert "Location" not in response.headers

    async def test_directory_redirect_still_works(self, fetch):
        response = await fetch("/dir", follow_redirects=False)
        assert (response.code, response.headers["Location"]) == (301, "/dir/")


def test_get_version_refuses_traversal(static_dir):
    with pytest.raises(HTTPError) as info:
        StaticFileHandler.get_version({"static_path": str(static_dir)}, "../secret.txt")
    assert info.value.status_code == 403


def test_get_version_of_directory_and_outside_link_is_none(static_dir):
    settings = {"static_path": str(static_dir)}
    assert StaticFileHandler.get_version(settings, "dir") is None
    assert StaticFileHandler.get_version(settings, "link.txt") is None
    assert StaticFileHandler.get_version(settings, "robots.txt") == CONTENT_HASH


def test_version_cache_is_bounded(static_dir):
    class Small(StaticFileHandler):
        MAX_CACHED_VERSIONS = 1

    Small.reset()
    settings = {"static_path": str(static_dir)}
    Small.get_version(settings, "robots.txt")
    Small.get_version(settings, "style.css")
    assert list(Small._static_hashes) == [str(static_dir / "style.css")]


def test_parse_request_range():
    from squall._web.static import _parse_request_range

    assert _parse_request_range("bytes=1-2") == (1, 3)
    assert _parse_request_range("bytes=-3") == (-3, None)
    assert _parse_request_range("bytes=5-") == (5, None)
    assert _parse_request_range("items=1-2") is None
    assert _parse_request_range("bytes=a-b") is None


class SearchPathHandler(StaticFileHandler):
    """Serves each file from the first of several directories that has it: the
    ``static_path`` setting is a list (the way Jupyter's FileFindHandler works)."""

    @classmethod
    def get_absolute_path(cls, root, path):
        for directory in root:
            candidate = os.path.abspath(os.path.join(directory, path))
            if not candidate.startswith(os.path.abspath(directory) + os.sep):
                raise HTTPError(403)
            if os.path.isfile(candidate):
                return candidate
        return os.path.abspath(os.path.join(root[0], path))

    def validate_absolute_path(self, root, absolute_path):
        # The stock checks, against the directory the file was found in.
        for directory in root:
            if absolute_path.startswith(os.path.abspath(directory) + os.sep):
                return super().validate_absolute_path(directory, absolute_path)
        raise HTTPError(403)


class TestSearchPathSubclass:
    """A subclass overriding get_absolute_path decides where files are, for static_url
    (make_static_url, get_version) as much as for serving them."""

    @pytest.fixture
    def directories(self, tmp_path):
        first, second = tmp_path / "first", tmp_path / "second"
        first.mkdir()
        second.mkdir()
        (first / "app.css").write_bytes(b"first css")
        (second / "app.css").write_bytes(b"shadowed css")
        (second / "app.js").write_bytes(b"second js")
        (tmp_path / "secret.txt").write_bytes(b"secret")
        SearchPathHandler.reset()
        yield [str(first), str(second)]
        SearchPathHandler.reset()

    @pytest.fixture
    def app(self, directories):
        from squall.template import DictLoader

        class PageHandler(RequestHandler):
            def get(self):
                self.render("page.html")

        page = '<link href="{{ static_url("app.css") }}"><script src="{{ static_url("app.js") }}">'
        return Application(
            [(r"/page", PageHandler)],
            static_path=directories,
            static_handler_class=SearchPathHandler,
            template_loader=DictLoader({"page.html": page}),
        )

    async def test_static_url_in_a_template(self, fetch):
        response = await fetch("/page")
        assert response.code == 200
        css = hashlib.sha512(b"first css").hexdigest()
        js = hashlib.sha512(b"second js").hexdigest()
        assert response.body.decode() == (
            f'<link href="/static/app.css?v={css}"><script src="/static/app.js?v={js}">'
        )

    async def test_files_served_from_every_directory(self, fetch):
        css = await fetch("/static/app.css")
        assert (css.code, css.body) == (200, b"first css")
        assert css.headers["Etag"] == '"%s"' % hashlib.sha512(b"first css").hexdigest()
        js = await fetch("/static/app.js?v=1")
        assert (js.code, js.body) == (200, b"second js")
        assert js.headers["Cache-Control"] == "max-age=%d" % StaticFileHandler.CACHE_MAX_AGE
        assert (await fetch("/static/missing.txt")).code == 404
        assert (await fetch("/static/..%2Fsecret.txt")).code == 403

    def test_get_version_uses_the_override(self, directories):
        settings = {"static_path": directories}
        expected = hashlib.sha512(b"second js").hexdigest()
        assert SearchPathHandler.get_version(settings, "app.js") == expected
        assert (
            SearchPathHandler.make_static_url(settings, "app.js") == "/static/app.js?v=" + expected
        )
