"""Signed values and XSRF tokens (pure functions, no sockets)."""

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squall._web.signing import decode_xsrf_token, encode_xsrf_token
from squall.web import (
    _create_signature_v1,
    _create_signature_v2,
    create_signed_value,
    decode_signed_value,
    get_signature_key_version,
)

SECRET = "It's a secret to everybody"
NOW = 1300000000


def clock():
    return NOW


def test_known_values_v1_and_v2():
    v1 = create_signed_value(SECRET, "key", "value", version=1, clock=clock)
    assert v1 == b"dmFsdWU=|1300000000|31c934969f53e48164c50768b40cbd7e2daaaa4f"
    v2 = create_signed_value(SECRET, "key", "value", clock=clock)
    assert v2 == (
        b"2|1:0|10:1300000000|3:key|8:dmFsdWU=|"
        b"3d4e60b996ff9c5d5788e333a0cba6f238a22c6c0f94788870e1a9ecd482e152"
    )
    assert decode_signed_value(SECRET, "key", v1, clock=clock) == b"value"
    assert decode_signed_value(SECRET, "key", v2, clock=clock) == b"value"
    assert decode_signed_value(SECRET, "key", v1, clock=clock, min_version=2) is None


def test_signature_helpers_match_formats():
    assert _create_signature_v1(SECRET, "key", b"dmFsdWU=", b"1300000000") == (
        b"31c934969f53e48164c50768b40cbd7e2daaaa4f"
    )
    prefix = b"2|1:0|10:1300000000|3:key|8:dmFsdWU=|"
    assert _create_signature_v2(SECRET, prefix).startswith(b"3d4e60b9")


@pytest.mark.parametrize(
    "value",
    [
        b"2|1:1|10:1300000000|3:key|8:dmFsdWU=|3d4e60b996ff9c5d5788e333a0cba6f238a22c6c0f94788870e1a9ecd482e152",
        b"2|1:0|10:130000000|3:key|8:dmFsdWU=|3d4e60b996ff9c5d5788e333a0cba6f238a22c6c0f94788870e1a9ecd482e152",
        b"2|1:0|10:1300000000|3:key|8:dmFsdWU=|3d4e60b996ff9c5d5788e333a0cba6f238a22c6c0f94788870e1a9ecd482e15",
        b"2|1:0|10:1300000000|3:key|8:dmFsdWU=|",
        b"2|1:0|10:1300000000|3:key|8:dmFsdWU=",
        b"2|",
        b"",
        b"|||",
        b"dmFsdWU=|1300000000|0000",
    ],
)
def test_tampered_or_truncated_values_rejected(value, caplog):
    with caplog.at_level(logging.WARNING):
        assert decode_signed_value(SECRET, "key", value, clock=clock) is None


def test_wrong_name_or_secret_rejected():
    signed = create_signed_value(SECRET, "key", "value", clock=clock)
    assert decode_signed_value(SECRET, "other", signed, clock=clock) is None
    assert decode_signed_value("another", "key", signed, clock=clock) is None


def test_expiry_and_future_timestamps(caplog):
    old = create_signed_value(SECRET, "key", "v", clock=lambda: NOW - 32 * 86400)
    assert decode_signed_value(SECRET, "key", old, clock=clock) is None
    assert decode_signed_value(SECRET, "key", old, clock=clock, max_age_days=40) == b"v"
    future_v1 = create_signed_value(SECRET, "key", "v", version=1, clock=lambda: NOW + 40 * 86400)
    with caplog.at_level(logging.WARNING):
        assert decode_signed_value(SECRET, "key", future_v1, clock=clock) is None
    assert any("future" in record.getMessage() for record in caplog.records)


def test_binary_values_round_trip():
    for version in (1, 2):
        signed = create_signed_value(SECRET, "k", b"\x00\xe9\xff", version=version, clock=clock)
        assert decode_signed_value(SECRET, "k", signed, clock=clock) == b"\x00\xe9\xff"


def test_key_versions():
    keys = {0: "zero", 1: "one"}
    signed = create_signed_value(keys, "k", "v", key_version=1, clock=clock)
    assert get_signature_key_version(signed) == 1
    assert decode_signed_value(keys, "k", signed, clock=clock) == b"v"
    assert decode_signed_value({0: "zero"}, "k", signed, clock=clock) is None
    with pytest.raises(ValueError):
        create_signed_value(keys, "k", "v", clock=clock)
    assert get_signature_key_version(b"garbage") is None


def test_malformed_timestamp_rejected():
    prefix = b"2|1:0|1:a|1:k|0:|"
    assert decode_signed_value(b"s", "k", prefix + _create_signature_v2(b"s", prefix)) is None
    sig = _create_signature_v1(b"s", "k", b"dg==", b"x1")
    assert decode_signed_value(b"s", "k", b"dg==|x1|" + sig) is None


def test_xsrf_token_encoding():
    token = bytes(range(16))
    v2 = encode_xsrf_token(2, token, 123)
    assert v2 != encode_xsrf_token(2, token, 123)  # a fresh mask every time
    assert decode_xsrf_token(v2) == (2, token, 123.0)
    v1 = encode_xsrf_token(1, token, 0)
    assert decode_xsrf_token(v1)[:2] == (1, token)
    assert decode_xsrf_token("xoxo")[:2] == (1, b"xoxo")
    for bad in ("3|", "2|zz|00|1", "2|00|00", "2||00|1", "2|00|00|x"):
        assert decode_xsrf_token(bad) == (None, None, None), bad


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoding_arbitrary_bytes_never_raises(data):
    result = decode_signed_value(SECRET, "key", data, clock=clock)
    assert result is None or isinstance(result, bytes)
    version, token, timestamp = decode_xsrf_token(data)
    assert (token is None) == (version is None)
    assert get_signature_key_version(data) is None or isinstance(
        get_signature_key_version(data), int
    )


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789|:abcdefXYZ=", max_size=120))
def test_decoding_near_valid_shapes_never_raises(text):
    result = decode_signed_value({0: "a", 1: "b"}, "key", text, clock=clock)
    assert result is None or isinstance(result, bytes)
    assert len(decode_xsrf_token(text)) == 3
