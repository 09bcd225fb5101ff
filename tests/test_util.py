import datetime
import gzip
import random
import re
import sys
import warnings
import zlib

import pytest

from squall.util import (
    ArgReplacer,
    Configurable,
    GzipDecompressor,
    ObjectDict,
    _websocket_mask_python,
    errno_from_exception,
    exec_in,
    import_object,
    raise_exc_info,
    re_unescape,
    timedelta_to_seconds,
)


def decompress_all(data: bytes, read_size: int, max_length: int) -> bytes:
    decompressor = GzipDecompressor()
    output = bytearray()
    for start in range(0, len(data), read_size):
        chunk = data[start : start + read_size]
        while chunk:
            piece = decompressor.decompress(chunk, max_length)
            assert len(piece) <= max_length
            output += piece
            chunk = decompressor.unconsumed_tail
    output += decompressor.flush()
    return bytes(output)


@pytest.mark.parametrize("read_size", [1, 13, 4096])
@pytest.mark.parametrize("max_length", [1, 100, 65536])
def test_gzip_decompressor_joins_concatenated_members(read_size, max_length):
    members = [random.Random(1).randbytes(3000), b"", b"abc" * 500]
    data = b"".join(gzip.compress(m) for m in members)
    assert decompress_all(data, read_size, max_length) == b"".join(members)


def test_gzip_decompressor_rejects_truncated_trailing_and_foreign_data():
    whole = gzip.compress(b"hello world")
    for bad in [whole[:-1], whole + b"junk", zlib.compress(b"hello"), b"<html>"]:
        with pytest.raises(zlib.error):
            decompress_all(bad, 1024, 1024)


def test_gzip_decompressor_flush_refuses_unconsumed_input():
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = compressor.compress(b"\0" * (4 * 1024 * 1024)) + compressor.flush()
    decompressor = GzipDecompressor()
    assert len(decompressor.decompress(bomb, 1024)) == 1024
    assert decompressor.unconsumed_tail
    with pytest.raises(ValueError):
        decompressor.flush()


def test_gzip_decompressor_empty_stream_and_deprecated_unbounded_call():
    assert GzipDecompressor().flush() == b""
    decompressor = GzipDecompressor()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert decompressor.decompress(gzip.compress(b"a") + gzip.compress(b"b")) == b"ab"
    assert [w.category for w in caught] == [DeprecationWarning]


class Base(Configurable):
    @classmethod
    def configurable_base(cls):
        return Base

    @classmethod
    def configurable_default(cls):
        return ImplA


class ImplA(Base):
    def initialize(self, value=None):
        self.value = value


class ImplB(Base):
    def initialize(self, value=None, extra=None):
        self.value = value
        self.extra = extra


@pytest.fixture
def restore_base():
    saved = Base._save_configuration()
    yield
    Base._restore_configuration(saved)


def test_configurable_builds_default_and_configured_subclass(restore_base):
    assert isinstance(Base(), ImplA)
    Base.configure(ImplB, extra=5)
    built = Base(value=1)
    assert isinstance(built, ImplB)
    assert (built.value, built.extra) == (1, 5)
    # Subclasses stay directly constructible, without the configured kwargs.
    assert ImplB().extra is None
    Base.configure(f"{__name__}.ImplA")
    assert isinstance(Base(), ImplA)


def test_configurable_rejects_unrelated_class(restore_base):
    with pytest.raises(ValueError):
        Base.configure(dict)  # type: ignore[arg-type]


def test_object_dict_attribute_access():
    d = ObjectDict(a=1)
    d.b = 2
    assert (d.a, d["b"]) == (1, 2)
    with pytest.raises(AttributeError):
        _ = d.missing


def test_import_object_module_and_member():
    import squall.escape

    assert import_object("squall.escape") is squall.escape
    assert import_object("squall.escape.utf8") is squall.escape.utf8
    with pytest.raises(ImportError):
        import_object("squall.escape.no_such_name")


def test_raise_exc_info_keeps_exception_object():
    class TwoArgs(Exception):
        def __init__(self, a, b):
            super().__init__()

    try:
        raise TwoArgs(1, 2)
    except TwoArgs:
        info = sys.exc_info()
    with pytest.raises(TwoArgs) as caught:
        raise_exc_info(info)
    assert caught.value is info[1]


def test_exec_in_does_not_inherit_future_flags():
    namespace: dict = {}
    exec_in("def f(x: int) -> int:\n    return x\nresult = f.__annotations__", namespace)
    assert namespace["result"] == {"x": int, "return": int}


def test_re_unescape_round_trips_and_rejects_classes():
    for text in ["/favicon.ico", "a.b*c", "!$@#%;"]:
        assert re_unescape(re.escape(text)) == text
    for bad in ["\\d", "\\b", "\\Z"]:
        with pytest.raises(ValueError):
            re_unescape(bad)


def test_arg_replacer_positional_keyword_and_missing():
    def func(x, y, callback=None, z=None):
        pass

    replacer = ArgReplacer(func, "callback")
    assert replacer.replace("new", (1, 2), {}) == (None, (1, 2), {"callback": "new"})
    assert replacer.replace("new", (1, 2, "old"), {}) == ("old", [1, 2, "new"], {})
    assert replacer.get_old_value((1,), {"callback": "kw"}) == "kw"


def test_small_helpers():
    assert timedelta_to_seconds(datetime.timedelta(minutes=2)) == 120.0
    assert errno_from_exception(OSError(5, "x")) == 5
    assert errno_from_exception(Exception()) is None


def test_websocket_mask_python_matches_bytewise_xor():
    mask = b"\x01\x02\x03\x04"
    data = bytes(range(37))
    expected = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    assert _websocket_mask_python(mask, data) == expected
    assert _websocket_mask_python(mask, b"") == b""


def test_websocket_mask_python_requires_four_byte_mask():
    for mask in (b"", b"abc", b"abcde"):
        with pytest.raises(ValueError):
            _websocket_mask_python(mask, b"data")


def test_speedups_websocket_mask_matches_the_plain_python_version() -> None:
    from squall.speedups import websocket_mask
    from squall.util import _websocket_mask_python

    for data in (b"", b"a", b"abc", b"abcd", b"hello, websocket", bytes(range(256)) * 3):
        assert websocket_mask(b"\x01\x02\xfe\xff", data) == _websocket_mask_python(
            b"\x01\x02\xfe\xff", data
        )
