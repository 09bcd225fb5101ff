"""Signed values (the payload of signed cookies) and XSRF token encoding.

Two formats exist. Version 1 is ``base64(value)|timestamp|hmac_sha1_hex`` where the HMAC
covers the name, the encoded value and the timestamp run together. Version 2 is a sequence
of length-prefixed fields, ``2|1:<key version>|<n>:<timestamp>|<n>:<name>|<n>:<base64 value>|``
followed by an HMAC-SHA256 of everything before it; the length prefixes stop anyone from
moving bytes between fields, and the key version lets an application rotate secrets.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time
from typing import Callable, Dict, Union

from squall.log import gen_log

DEFAULT_SIGNED_VALUE_VERSION = 2
DEFAULT_SIGNED_VALUE_MIN_VERSION = 1
MIN_SUPPORTED_SIGNED_VALUE_VERSION = 1
MAX_SUPPORTED_SIGNED_VALUE_VERSION = 2

_CookieSecretTypes = Union[str, bytes, Dict[int, str], Dict[int, bytes]]
_Clock = Callable[[], float]  # seconds since the epoch, like time.time

# Values older than this (in days) are refused whatever max_age_days says, and a timestamp
# this far in the future betrays tampering.
_FUTURE_TOLERANCE_SECONDS = 31 * 86400


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def _create_signature_v1(secret: str | bytes, *parts: str | bytes) -> bytes:
    """Hex HMAC-SHA1 over the parts run together (the version 1 signature)."""
    mac = hmac.new(_as_bytes(secret), digestmod=hashlib.sha1)
    for part in parts:
        mac.update(_as_bytes(part))
    return mac.hexdigest().encode("ascii")


def _create_signature_v2(secret: str | bytes, payload: str | bytes) -> bytes:
    """Hex HMAC-SHA256 of ``payload`` (the version 2 signature)."""
    mac = hmac.new(_as_bytes(secret), digestmod=hashlib.sha256)
    mac.update(_as_bytes(payload))
    return mac.hexdigest().encode("ascii")


def _length_prefixed(field: bytes) -> bytes:
    return str(len(field)).encode("ascii") + b":" + field


def create_signed_value(
    secret: _CookieSecretTypes,
    name: str,
    value: str | bytes,
    version: int | None = None,
    clock: _Clock | None = None,
    key_version: int | None = None,
) -> bytes:
    """Sign ``value`` under ``name`` with a timestamp so it can be checked later."""
    now = (clock or time.time)()
    if version is None:
        version = DEFAULT_SIGNED_VALUE_VERSION
    timestamp = str(int(now)).encode("ascii")
    encoded = base64.b64encode(_as_bytes(value))
    if version == 1:
        if isinstance(secret, dict):
            raise ValueError("version 1 signed values do not support key versions")
        signature = _create_signature_v1(secret, name, encoded, timestamp)
        return b"|".join([encoded, timestamp, signature])
    if version == 2:
        if isinstance(secret, dict):
            if key_version is None:
                raise ValueError("key_version is required when the secret is a dict")
            key: str | bytes = secret[key_version]
        else:
            key = secret
        payload = b"".join(
            [
                b"2|",
                _length_prefixed(str(key_version or 0).encode("ascii")),
                b"|",
                _length_prefixed(timestamp),
                b"|",
                _length_prefixed(_as_bytes(name)),
                b"|",
                _length_prefixed(encoded),
                b"|",
            ]
        )
        return payload + _create_signature_v2(key, payload)
    raise ValueError(f"Unsupported version {version}")


# A version 1 value begins with base64 text, which may itself be all digits; base64 comes
# in blocks of four characters, so a leading number below 1000 can only be a version tag.
_VERSION_PREFIX = re.compile(rb"^([1-9][0-9]{0,2})\|")


def _get_version(value: bytes) -> int:
    match = _VERSION_PREFIX.match(value)
    if match is None:
        return 1
    return int(match.group(1))


def decode_signed_value(
    secret: _CookieSecretTypes,
    name: str,
    value: None | str | bytes,
    max_age_days: float = 31,
    clock: _Clock | None = None,
    min_version: int | None = None,
) -> bytes | None:
    """Return the original value if the signature, name and age check out, else None."""
    clock = clock or time.time
    min_version = DEFAULT_SIGNED_VALUE_MIN_VERSION if min_version is None else min_version
    if min_version > 2:
        raise ValueError(f"Unsupported min_version {min_version}")
    if not value:
        return None
    value = _as_bytes(value)
    version = _get_version(value)
    if version < min_version:
        return None
    if version == 1:
        if isinstance(secret, dict):
            return None
        return _decode_signed_value_v1(secret, name, value, max_age_days, clock)
    if version == 2:
        return _decode_signed_value_v2(secret, name, value, max_age_days, clock)
    return None


def _parse_timestamp(raw: bytes) -> int | None:
    # int() accepts signs, spaces and underscores; a timestamp is plain digits only.
    if not raw.isdigit():
        return None
    return int(raw)


def _decode_signed_value_v1(
    secret: str | bytes, name: str, value: bytes, max_age_days: float, clock: _Clock
) -> bytes | None:
    parts = value.split(b"|")
    if len(parts) != 3:
        return None
    encoded, raw_timestamp, signature = parts
    expected = _create_signature_v1(secret, name, encoded, raw_timestamp)
    if not hmac.compare_digest(signature, expected):
        gen_log.warning("Invalid cookie signature %r", value[:64])
        return None
    timestamp = _parse_timestamp(raw_timestamp)
    if timestamp is None:
        return None
    now = clock()
    if timestamp < now - max_age_days * 86400:
        gen_log.warning("Expired cookie %r", value[:64])
        return None
    if timestamp > now + _FUTURE_TOLERANCE_SECONDS:
        # Digits moved from the payload into the timestamp keep the same signature (the
        # parts are simply run together), so a far-future timestamp means tampering.
        gen_log.warning("Cookie timestamp in future; possible tampering %r", value[:64])
        return None
    if raw_timestamp.startswith(b"0"):
        gen_log.warning("Tampered cookie %r", value[:64])
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _decode_fields_v2(value: bytes) -> tuple[int, bytes, bytes, bytes, bytes]:
    """Split a version 2 value into (key version, timestamp, name, value, signature);
    raises ValueError when a length prefix or separator is wrong."""

    def take_field(position: int) -> tuple[bytes, int]:
        colon = value.index(b":", position)
        length_text = value[position:colon]
        if not length_text.isdigit():
            raise ValueError("bad field length")
        length = int(length_text)
        start = colon + 1
        end = start + length
        if value[end : end + 1] != b"|":
            raise ValueError("field length does not match")
        return value[start:end], end + 1

    position = 2  # after "2|"
    key_version_field, position = take_field(position)
    timestamp, position = take_field(position)
    name_field, position = take_field(position)
    value_field, position = take_field(position)
    if not key_version_field.isdigit():
        raise ValueError("bad key version")
    return int(key_version_field), timestamp, name_field, value_field, value[position:]


def _decode_signed_value_v2(
    secret: _CookieSecretTypes, name: str, value: bytes, max_age_days: float, clock: _Clock
) -> bytes | None:
    try:
        key_version, raw_timestamp, name_field, value_field, signature = _decode_fields_v2(value)
    except ValueError:
        return None
    signed_part = value[: len(value) - len(signature)]
    if isinstance(secret, dict):
        if key_version not in secret:
            return None
        key: str | bytes = secret[key_version]
    else:
        key = secret
    expected = _create_signature_v2(key, signed_part)
    if not hmac.compare_digest(signature, expected):
        return None
    if name_field != _as_bytes(name):
        return None
    timestamp = _parse_timestamp(raw_timestamp)
    if timestamp is None:
        return None
    if timestamp < clock() - max_age_days * 86400:
        return None
    try:
        return base64.b64decode(value_field, validate=True)
    except (binascii.Error, ValueError):
        return None


def get_signature_key_version(value: str | bytes) -> int | None:
    """Return the key version a signed value was made with (None for version 1)."""
    value = _as_bytes(value)
    if _get_version(value) < 2:
        return None
    try:
        return _decode_fields_v2(value)[0]
    except ValueError:
        return None


# XSRF tokens ---------------------------------------------------------------------------


def _xor_mask(mask: bytes, data: bytes) -> bytes:
    repeated = (mask * (len(data) // len(mask) + 1))[: len(data)]
    return (int.from_bytes(repeated, "big") ^ int.from_bytes(data, "big")).to_bytes(
        len(data), "big"
    )


def new_xsrf_secret() -> bytes:
    return os.urandom(16)


def encode_xsrf_token(version: int, token: bytes, timestamp: float) -> bytes:
    """Encode a raw token for output. Version 2 masks it with fresh random bytes each
    time, so the page never shows the same bytes twice (this defeats BREACH)."""
    if version == 1:
        return binascii.b2a_hex(token)
    if version == 2:
        mask = os.urandom(4)
        return b"|".join(
            [
                b"2",
                binascii.b2a_hex(mask),
                binascii.b2a_hex(_xor_mask(mask, token)),
                str(int(timestamp)).encode("ascii"),
            ]
        )
    raise ValueError(f"unknown xsrf cookie version {version}")


_HEX_TOKEN = re.compile(rb"^[0-9a-fA-F]+$")


def decode_xsrf_token(
    cookie: str | bytes,
) -> tuple[int | None, bytes | None, float | None]:
    """Return (version, raw token, timestamp) from an encoded token, or Nones."""
    try:
        data = _as_bytes(cookie)
        if data.startswith(b"2|"):
            fields = data.split(b"|")
            if len(fields) != 4:
                return None, None, None
            _, mask_hex, masked_hex, timestamp_text = fields
            mask = binascii.a2b_hex(mask_hex)
            masked = binascii.a2b_hex(masked_hex)
            if not mask or not masked or not timestamp_text.isdigit():
                return None, None, None
            return 2, _xor_mask(mask, masked), float(int(timestamp_text))
        if b"|" in data or not data:
            return None, None, None
        # Version 1: the cookie is the token itself, hex when it looks like hex.
        token = binascii.a2b_hex(data) if len(data) % 2 == 0 and _HEX_TOKEN.match(data) else data
        return 1, token, float(int(time.time()))
    except (binascii.Error, ValueError, UnicodeError):
        return None, None, None
