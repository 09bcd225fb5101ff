"""Sans-IO WebSocket framing and permessage-deflate, tested without sockets."""

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squall._websocket_frames import (
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_PING,
    OPCODE_PONG,
    OPCODE_TEXT,
    RSV1,
    DeflateParameters,
    MessageReader,
    MessageWriter,
    ProtocolError,
    _DecompressTooLargeError,
    _PerMessageDeflateCompressor,
    _PerMessageDeflateDecompressor,
    client_accept_deflate,
    client_deflate_offer,
    compute_accept_value,
    decode_close_payload,
    encode_close_payload,
    is_valid_key,
    mask_payload,
    new_key,
    parse_extension_header,
    server_negotiate_deflate,
)


def server_reader(**kwargs):
    kwargs.setdefault("max_message_size", 1 << 20)
    return MessageReader(expect_masked=True, **kwargs)


def client_writer(**kwargs):
    return MessageWriter(mask_outgoing=True, **kwargs)


def read_all(reader):
    messages = []
    for _ in range(10_000):
        message = reader.next_message()
        if message is None:
            return messages
        messages.append(message)
    raise AssertionError("reader never ran dry")


def masked(first, payload, key=b"\x01\x02\x03\x04"):
    """A client frame built by hand, for frames MessageWriter refuses to make."""
    length = len(payload)
    if length < 126:
        head = bytes((first, 0x80 | length))
    elif length < 0x10000:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    return head + key + mask_payload(key, payload)


def assert_fails(reader, data, code):
    reader.feed(data)
    with pytest.raises(ProtocolError) as info:
        read_all(reader)
    assert info.value.code == code
    return info.value


class TestMasking:
    def test_known_vectors(self):
        assert mask_payload(b"abcd", b"") == b""
        assert mask_payload(b"abcd", b"b") == b"\x03"
        assert mask_payload(b"abcd", b"54321") == b"TVPVP"
        assert mask_payload(b"ZXCV", b"98765432") == b"c`t`olpd"
        assert mask_payload(b"\x00\x01\x02\x03", b"\xff\xfb\xfd\xfc\xfe\xfa") == (
            b"\xff\xfa\xff\xff\xfe\xfb"
        )

    def test_rejects_masks_that_are_not_four_bytes(self):
        for mask in (b"", b"a", b"abc", b"abcde"):
            with pytest.raises(ValueError):
                mask_payload(mask, b"data")

    def test_large_payload_matches_bytewise_definition(self):
        data = bytes(range(256)) * 4099
        key = b"\x9a\x01\xff\x37"
        expected = bytes(byte ^ key[index % 4] for index, byte in enumerate(data))
        assert mask_payload(key, data) == expected

    @given(st.binary(min_size=4, max_size=4), st.binary(max_size=300))
    def test_masking_twice_gives_the_data_back(self, key, data):
        once = mask_payload(key, data)
        assert len(once) == len(data)
        assert mask_payload(key, once) == data


class TestHandshakeHelpers:
    def test_accept_value_from_rfc_6455(self):
        assert compute_accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert compute_accept_value(b"dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    def test_key_validation(self):
        assert is_valid_key("dGhlIHNhbXBsZSBub25jZQ==")
        assert is_valid_key(new_key())
        for bad in ("", "abc", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ=!", "é" * 24):
            assert not is_valid_key(bad)
        # Valid base64 of the wrong length.
        assert not is_valid_key("dGhlIHNhbXBsZSBub25jZXM=")

    def test_new_keys_differ(self):
        assert len({new_key() for _ in range(20)}) == 20


class TestClosePayload:
    def test_round_trip(self):
        payload = encode_close_payload(1001, "bye é")
        assert payload[:2] == b"\x03\xe9"
        assert decode_close_payload(payload) == (1001, "bye é")

    def test_empty(self):
        assert encode_close_payload(None, None) == b""
        assert decode_close_payload(b"") == (None, None)

    def test_reason_without_code_means_normal(self):
        assert decode_close_payload(encode_close_payload(None, "x")) == (1000, "x")

    def test_long_reason_is_cut_on_a_character_boundary(self):
        payload = encode_close_payload(1000, "é" * 100)
        assert len(payload) <= 125
        code, reason = decode_close_payload(payload)
        assert code == 1000 and set(reason) == {"é"}

    def test_unsendable_codes_refused(self):
        for code in (0, 999, 1004, 1005, 1006, 1015, 2000, 5000):
            with pytest.raises(ValueError):
                encode_close_payload(code, None)

    def test_bad_payloads(self):
        with pytest.raises(ProtocolError) as info:
            decode_close_payload(b"\x03")
        assert info.value.code == 1002
        for code in (999, 1004, 1005, 1006, 1016, 2999, 5000):
            with pytest.raises(ProtocolError) as info:
                decode_close_payload(struct.pack("!H", code))
            assert info.value.code == 1002
        with pytest.raises(ProtocolError) as info:
            decode_close_payload(b"\x03\xe8\xff\xfe")
        assert info.value.code == 1007
        assert decode_close_payload(struct.pack("!H", 4000)) == (4000, "")


class TestWriter:
    def test_rfc_examples_unmasked(self):
        writer = MessageWriter(mask_outgoing=False)
        assert writer.message(b"Hello", binary=False) == b"\x81\x05Hello"
        assert writer.frame(False, OPCODE_TEXT, b"Hel") == b"\x01\x03Hel"
        assert writer.frame(True, 0, b"lo") == b"\x80\x02lo"
        assert writer.ping(b"Hello") == b"\x89\x05Hello"
        assert writer.message(b"\0" * 256, binary=True)[:4] == b"\x82\x7e\x01\x00"
        assert writer.message(b"\0" * 65536, binary=True)[:10] == (
            b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"
        )

    def test_length_boundaries(self):
        writer = MessageWriter(mask_outgoing=False)
        for length, header in ((125, 2), (126, 4), (65535, 4), (65536, 10)):
            frame = writer.message(b"x" * length, binary=True)
            assert len(frame) == header + length
        assert writer.wire_bytes == 125 + 126 + 65535 + 65536 + 2 + 4 + 4 + 10
        assert writer.message_bytes == 125 + 126 + 65535 + 65536

    def test_client_frames_are_masked_with_fresh_keys(self):
        writer = client_writer()
        first = writer.message(b"Hello", binary=False)
        second = writer.message(b"Hello", binary=False)
        assert first[0] == 0x81 and first[1] == 0x85
        assert mask_payload(first[2:6], first[6:]) == b"Hello"
        assert first[2:6] != second[2:6]
        # Enough frames to use up a batch of keys.
        for _ in range(MessageWriter._KEY_BATCH // 4 + 2):
            frame = writer.message(b"ab", binary=True)
            assert mask_payload(frame[2:6], frame[6:]) == b"ab"

    def test_control_frame_limits(self):
        writer = MessageWriter(mask_outgoing=False)
        with pytest.raises(ValueError):
            writer.ping(b"x" * 126)
        with pytest.raises(ValueError):
            writer.frame(False, OPCODE_PING, b"")
        assert writer.close(1000, "ok") == b"\x88\x04\x03\xe8ok"
        assert writer.close() == b"\x88\x00"


class TestReader:
    def test_text_and_binary(self):
        writer = client_writer()
        reader = server_reader()
        reader.feed(writer.message("héllo".encode(), binary=False))
        reader.feed(writer.message(b"\x00\xff", binary=True))
        assert read_all(reader) == [(OPCODE_TEXT, "héllo"), (OPCODE_BINARY, b"\x00\xff")]
        assert reader.message_bytes == len("héllo".encode()) + 2
        assert reader.wire_bytes == writer.wire_bytes
        assert reader.buffered() == 0

    def test_server_frames_to_client(self):
        writer = MessageWriter(mask_outgoing=False)
        reader = MessageReader(expect_masked=False, max_message_size=100)
        reader.feed(writer.message(b"hi", binary=False))
        assert reader.next_message() == (OPCODE_TEXT, "hi")

    def test_byte_at_a_time(self):
        writer = client_writer()
        data = b"".join(
            [
                writer.message(b"a" * 70_000, binary=True),
                writer.ping(b"p"),
                writer.message(b"b" * 300, binary=False),
            ]
        )
        reader = server_reader()
        messages = []
        for index in range(len(data)):
            reader.feed(data[index : index + 1])
            messages.extend(read_all(reader))
        assert messages == [
            (OPCODE_BINARY, b"a" * 70_000),
            (OPCODE_PING, b"p"),
            (OPCODE_TEXT, "b" * 300),
        ]

    def test_many_frames_in_one_chunk(self):
        writer = client_writer()
        reader = server_reader()
        reader.feed(b"".join(writer.message(b"%d" % i, binary=True) for i in range(500)))
        assert [payload for _, payload in read_all(reader)] == [b"%d" % i for i in range(500)]

    def test_fragmented_message_with_interleaved_control_frames(self):
        writer = client_writer()
        reader = server_reader()
        reader.feed(writer.frame(False, OPCODE_TEXT, "hé".encode()[:2]))
        assert reader.next_message() is None
        reader.feed(writer.ping(b"1"))
        assert reader.next_message() == (OPCODE_PING, b"1")
        reader.feed(writer.frame(False, 0, "hé".encode()[2:] + b" "))
        reader.feed(writer.pong(b"2"))
        reader.feed(writer.frame(True, 0, b"there"))
        assert read_all(reader) == [(OPCODE_PONG, b"2"), (OPCODE_TEXT, "hé there")]
        # The reader is ready for a new message afterwards.
        reader.feed(writer.frame(False, OPCODE_BINARY, b"x"))
        reader.feed(writer.frame(True, 0, b"y"))
        assert read_all(reader) == [(OPCODE_BINARY, b"xy")]

    def test_empty_fragments(self):
        writer = client_writer()
        reader = server_reader()
        reader.feed(writer.frame(False, OPCODE_TEXT, b""))
        reader.feed(writer.frame(False, 0, b""))
        reader.feed(writer.frame(True, 0, b""))
        assert read_all(reader) == [(OPCODE_TEXT, "")]

    def test_close_frame(self):
        writer = client_writer()
        reader = server_reader()
        reader.feed(writer.close(1001, "bye"))
        opcode, payload = reader.next_message()
        assert opcode == OPCODE_CLOSE
        assert decode_close_payload(payload) == (1001, "bye")

    def test_unmasked_client_frame(self):
        assert_fails(server_reader(), b"\x81\x02hi", 1002)

    def test_masked_server_frame(self):
        reader = MessageReader(expect_masked=False, max_message_size=100)
        assert_fails(reader, client_writer().message(b"hi", binary=False), 1002)

    @pytest.mark.parametrize("bits", [0x40, 0x20, 0x10, 0x60])
    def test_reserved_bits(self, bits):
        assert_fails(server_reader(), masked(0x81 | bits, b"hi"), 1002)

    @pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    def test_reserved_opcodes(self, opcode):
        assert_fails(server_reader(), masked(0x80 | opcode, b""), 1002)

    def test_fragmented_control_frame(self):
        assert_fails(server_reader(), masked(OPCODE_PING, b"x"), 1002)

    def test_long_control_frame(self):
        assert_fails(server_reader(), masked(0x80 | OPCODE_PING, b"x" * 126), 1002)

    def test_continuation_without_start(self):
        assert_fails(server_reader(), masked(0x80, b"x"), 1002)

    def test_new_message_inside_fragmented_one(self):
        reader = server_reader()
        reader.feed(masked(OPCODE_TEXT, b"a"))
        assert reader.next_message() is None
        assert_fails(reader, masked(0x80 | OPCODE_TEXT, b"b"), 1002)

    def test_invalid_close_payload(self):
        assert_fails(server_reader(), masked(0x88, b"\x03"), 1002)
        assert_fails(server_reader(), masked(0x88, b"\x03\xed"), 1002)  # 1005
        assert_fails(server_reader(), masked(0x88, b"\x03\xe8\xc3"), 1007)

    def test_invalid_utf8(self):
        assert_fails(server_reader(), masked(0x81, b"\xc3\x28"), 1007)
        assert_fails(server_reader(), masked(0x81, "é".encode()[:1]), 1007)

    def test_invalid_utf8_fails_at_the_first_bad_fragment(self):
        reader = server_reader()
        assert_fails(reader, masked(OPCODE_TEXT, b"ok \xff"), 1007)

    def test_utf8_character_split_across_fragments(self):
        reader = server_reader()
        encoded = "€".encode()
        reader.feed(masked(OPCODE_TEXT, encoded[:1]))
        reader.feed(masked(0, encoded[1:2]))
        reader.feed(masked(0x80, encoded[2:]))
        assert read_all(reader) == [(OPCODE_TEXT, "€")]

    def test_truncated_character_at_end_of_fragmented_message(self):
        reader = server_reader()
        reader.feed(masked(OPCODE_TEXT, b"a"))
        assert_fails(reader, masked(0x80, "€".encode()[:2]), 1007)

    def test_oversized_frame_refused_from_its_header(self):
        reader = server_reader(max_message_size=1000)
        # Only the header of a 2 GB frame: refused before any payload is buffered.
        header = struct.pack("!BBQ", 0x82, 0xFF, 2 << 30) + b"\0\0\0\0"
        error = assert_fails(reader, header, 1009)
        assert error.reason == "message too big"

    def test_size_limit_is_inclusive(self):
        reader = server_reader(max_message_size=10)
        reader.feed(masked(0x82, b"x" * 10))
        assert read_all(reader) == [(OPCODE_BINARY, b"x" * 10)]
        assert_fails(reader, masked(0x82, b"x" * 11), 1009)

    def test_oversized_fragmented_message(self):
        reader = server_reader(max_message_size=10)
        reader.feed(masked(OPCODE_BINARY, b"x" * 6))
        assert reader.next_message() is None
        assert_fails(reader, masked(0x80, b"x" * 5), 1009)

    def test_length_with_high_bit(self):
        header = struct.pack("!BBQ", 0x82, 0xFF, 1 << 63) + b"\0\0\0\0"
        assert_fails(MessageReader(expect_masked=True), header, 1002)

    def test_compressed_frame_without_negotiation(self):
        data = _PerMessageDeflateCompressor(True, None).compress(b"hello")
        assert_fails(server_reader(), masked(0xC1, data), 1002)

    def test_compression_bit_on_continuation(self):
        reader = server_reader(decompressor=_PerMessageDeflateDecompressor(True, None, 100))
        compressed = _PerMessageDeflateCompressor(True, None).compress(b"hello")
        reader.feed(masked(0x40 | OPCODE_TEXT, compressed[:2]))
        assert reader.next_message() is None
        assert_fails(reader, masked(0xC0, compressed[2:]), 1002)

    def test_compression_bit_on_control_frame(self):
        reader = server_reader(decompressor=_PerMessageDeflateDecompressor(True, None, 100))
        assert_fails(reader, masked(0xC9, b""), 1002)

    def test_garbage_compressed_data(self):
        reader = server_reader(decompressor=_PerMessageDeflateDecompressor(True, None, 100))
        assert_fails(reader, masked(0xC2, b"\xff\xff\xff\xff"), 1007)


class TestDeflate:
    def test_rfc_7692_examples(self):
        # Section 7.2.3.1/7.2.3.2: "Hello" twice with context takeover, as sent unmasked.
        reader = MessageReader(
            expect_masked=False,
            max_message_size=100,
            decompressor=_PerMessageDeflateDecompressor(True, None, 100),
        )
        reader.feed(b"\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00")
        reader.feed(b"\xc1\x05\xf2\x00\x11\x00\x00")
        # Section 7.2.3.1: the same message in two fragments.
        reader.feed(b"\x41\x03\xf2\x48\xcd")
        reader.feed(b"\x80\x04\xc9\xc9\x07\x00")
        assert read_all(reader) == [(OPCODE_TEXT, "Hello")] * 3

    def test_message_ending_with_a_final_block(self):
        decompressor = _PerMessageDeflateDecompressor(True, None, 100)
        # Section 7.2.3.4: BFINAL set; the next message starts a new stream.
        assert decompressor.decompress(b"\xf3\x48\xcd\xc9\xc9\x07\x00") == b"Hello"
        assert decompressor.decompress(b"\xf3\x48\xcd\xc9\xc9\x07\x00") == b"Hello"

    def test_compressed_messages_are_smaller_with_context_takeover(self):
        writer = MessageWriter(
            mask_outgoing=False, compressor=_PerMessageDeflateCompressor(True, None)
        )
        first = writer.message(b"Hello world. Testing 123 123", binary=False)
        second = writer.message(b"Hello world. Testing 123 123", binary=False)
        assert first[0] == 0x80 | RSV1 | OPCODE_TEXT
        assert len(second) < len(first)

    def test_bomb_stopped_at_the_limit(self):
        limit = 1 << 20
        compressed = _PerMessageDeflateCompressor(True, None).compress(b"\0" * (16 * limit))
        assert len(compressed) < limit // 10
        decompressor = _PerMessageDeflateDecompressor(True, None, limit)
        with pytest.raises(_DecompressTooLargeError):
            decompressor.decompress(compressed)
        reader = server_reader(
            max_message_size=limit,
            decompressor=_PerMessageDeflateDecompressor(True, None, limit),
        )
        error = assert_fails(reader, masked(0xC2, compressed), 1009)
        assert error.reason == "message too big"

    def test_bomb_spread_over_fragments(self):
        limit = 4096
        compressed = _PerMessageDeflateCompressor(True, None).compress(b"a" * (limit * 8))
        reader = server_reader(
            max_message_size=limit,
            decompressor=_PerMessageDeflateDecompressor(True, None, limit),
        )
        middle = len(compressed) // 2
        reader.feed(masked(0x40 | OPCODE_BINARY, compressed[:middle]))
        with pytest.raises(ProtocolError) as info:
            read_all(reader)
            reader.feed(masked(0x80, compressed[middle:]))
            read_all(reader)
        assert info.value.code == 1009

    def test_exact_limit_after_inflating(self):
        compressed = _PerMessageDeflateCompressor(True, None).compress(b"z" * 500)
        assert _PerMessageDeflateDecompressor(True, None, 500).decompress(compressed) == (
            b"z" * 500
        )
        with pytest.raises(_DecompressTooLargeError):
            _PerMessageDeflateDecompressor(True, None, 499).decompress(compressed)

    def test_rejects_eight_bit_compression_window(self):
        with pytest.raises(ValueError):
            _PerMessageDeflateCompressor(True, 8)
        with pytest.raises(ValueError):
            _PerMessageDeflateCompressor(True, 16)

    def test_compression_options_level_and_memory(self):
        compressor = _PerMessageDeflateCompressor(
            True, None, {"compression_level": 9, "mem_level": 9}
        )
        data = b"abc" * 1000
        assert (
            _PerMessageDeflateDecompressor(True, None, None).decompress(compressor.compress(data))
            == data
        )

    @settings(max_examples=60, deadline=None)
    @given(
        st.booleans(),
        st.integers(min_value=9, max_value=zlib.MAX_WBITS),
        st.lists(st.binary(max_size=2000), max_size=5),
    )
    def test_round_trip(self, persistent, wbits, messages):
        compressor = _PerMessageDeflateCompressor(persistent, wbits)
        decompressor = _PerMessageDeflateDecompressor(persistent, wbits, 1 << 20)
        for message in messages:
            assert decompressor.decompress(compressor.compress(message)) == message

    @settings(max_examples=60, deadline=None)
    @given(st.binary(max_size=2000), st.integers(min_value=1, max_value=2000))
    def test_size_limit_property(self, message, limit):
        compressed = _PerMessageDeflateCompressor(False, None).compress(message)
        decompressor = _PerMessageDeflateDecompressor(False, None, limit)
        if len(message) <= limit:
            assert decompressor.decompress(compressed) == message
        else:
            with pytest.raises(_DecompressTooLargeError):
                decompressor.decompress(compressed)

    def test_no_context_takeover_messages_stand_alone(self):
        compressor = _PerMessageDeflateCompressor(False, None)
        first = compressor.compress(b"repeat repeat repeat")
        second = compressor.compress(b"repeat repeat repeat")
        # Each message inflates on its own, with no window from the one before.
        assert first == second
        fresh = _PerMessageDeflateDecompressor(False, None, 100)
        assert fresh.decompress(second) == b"repeat repeat repeat"


class TestNegotiation:
    def test_parse_extension_header(self):
        assert parse_extension_header(
            'permessage-deflate; client_max_window_bits; server_max_window_bits="10", x-foo'
        ) == [
            (
                "permessage-deflate",
                [("client_max_window_bits", None), ("server_max_window_bits", "10")],
            ),
            ("x-foo", []),
        ]
        assert parse_extension_header("") == []
        assert parse_extension_header('a; p="x,y;z"') == [("a", [("p", "x,y;z")])]

    def test_disabled_or_not_offered(self):
        assert server_negotiate_deflate("permessage-deflate", None) is None
        assert server_negotiate_deflate(None, {}) is None
        assert server_negotiate_deflate("x-webkit-deflate-frame", {}) is None

    def test_plain_offer(self):
        response, agreed = server_negotiate_deflate("permessage-deflate", {})
        assert response == "permessage-deflate"
        assert (agreed.compress_persistent, agreed.compress_wbits) == (True, 15)
        assert (agreed.decompress_persistent, agreed.decompress_wbits) == (True, 15)

    def test_offer_with_client_window_bits_without_value(self):
        response, agreed = server_negotiate_deflate(
            "permessage-deflate; client_max_window_bits", {}
        )
        assert response == "permessage-deflate"
        response, agreed = server_negotiate_deflate(
            "permessage-deflate; client_max_window_bits", {"client_max_window_bits": 10}
        )
        assert response == "permessage-deflate; client_max_window_bits=10"
        assert agreed.decompress_wbits == 10

    def test_window_bits_and_context_takeover_offer(self):
        response, agreed = server_negotiate_deflate(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
            " server_max_window_bits=10; client_max_window_bits=12",
            {},
        )
        params = dict(parse_extension_header(response)[0][1])
        assert "server_no_context_takeover" in params
        assert params["server_max_window_bits"] == "10"
        assert params["client_max_window_bits"] == "12"
        assert agreed.compress_persistent is False and agreed.compress_wbits == 10
        assert agreed.decompress_wbits == 12

    def test_server_options_restrict_further(self):
        response, agreed = server_negotiate_deflate(
            "permessage-deflate; client_max_window_bits=12",
            {
                "server_no_context_takeover": True,
                "client_no_context_takeover": True,
                "server_max_window_bits": 9,
                "client_max_window_bits": 11,
            },
        )
        assert response == (
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9;"
            " client_no_context_takeover; client_max_window_bits=11"
        )
        assert agreed.compress_persistent is False and agreed.compress_wbits == 9
        assert agreed.decompress_persistent is False and agreed.decompress_wbits == 11

    def test_bad_offers_are_skipped(self):
        for header in (
            "permessage-deflate; bogus",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        ):
            assert server_negotiate_deflate(header, {}) is None, header
        response, _ = server_negotiate_deflate(
            "permessage-deflate; bogus, permessage-deflate; server_max_window_bits=11", {}
        )
        assert response == "permessage-deflate; server_max_window_bits=11"

    def test_client_offer(self):
        assert client_deflate_offer({}) == "permessage-deflate; client_max_window_bits"
        assert client_deflate_offer(
            {
                "server_no_context_takeover": True,
                "client_no_context_takeover": True,
                "server_max_window_bits": 10,
                "client_max_window_bits": 11,
            }
        ) == (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
            " server_max_window_bits=10; client_max_window_bits=11"
        )

    def test_client_accepts_responses(self):
        agreed = client_accept_deflate("permessage-deflate", {})
        assert (agreed.compress_persistent, agreed.compress_wbits) == (True, 15)
        agreed = client_accept_deflate(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
            " server_max_window_bits=9; client_max_window_bits=10",
            {},
        )
        assert (agreed.compress_persistent, agreed.compress_wbits) == (False, 10)
        assert (agreed.decompress_persistent, agreed.decompress_wbits) == (False, 9)

    def test_client_refuses_bad_responses(self):
        for header, options in (
            ("x-foo", {}),
            ("permessage-deflate, permessage-deflate", {}),
            ("permessage-deflate; bogus", {}),
            ("permessage-deflate; client_max_window_bits=8", {}),
            ("permessage-deflate; client_max_window_bits=12", {"client_max_window_bits": 10}),
            ("permessage-deflate", {"server_no_context_takeover": True}),
            ("permessage-deflate", {"server_max_window_bits": 10}),
        ):
            with pytest.raises(ValueError):
                client_accept_deflate(header, options)

    @pytest.mark.parametrize(
        "client_options, server_options",
        [
            ({}, {}),
            ({"client_no_context_takeover": True}, {}),
            ({"server_no_context_takeover": True}, {}),
            ({"server_max_window_bits": 9, "client_max_window_bits": 9}, {}),
            ({}, {"client_max_window_bits": 9, "server_max_window_bits": 10}),
            ({}, {"client_no_context_takeover": True, "server_no_context_takeover": True}),
        ],
    )
    def test_both_ends_agree(self, client_options, server_options):
        response, server_side = server_negotiate_deflate(
            client_deflate_offer(client_options), server_options
        )
        client_side = client_accept_deflate(response, client_options)
        assert isinstance(client_side, DeflateParameters)
        messages = [b"the same words again " * 20, b"and again " * 50, b"x" * 3000]
        directions = (
            (client_side.compressor(None), server_side.decompressor(1 << 20, None)),
            (server_side.compressor(None), client_side.decompressor(1 << 20, None)),
        )
        for compressor, decompressor in directions:
            for message in messages:
                assert decompressor.decompress(compressor.compress(message)) == message


def test_many_tiny_fragments_cost_bytes_not_objects():
    import tracemalloc

    reader = server_reader(max_message_size=1 << 20)
    frames = [masked(OPCODE_BINARY, b"a")]
    frames += [masked(0, b"a")] * 19_998
    frames.append(masked(0x80, b"a"))
    data = b"".join(frames)
    tracemalloc.start()
    try:
        reader.feed(data)
        assert read_all(reader) == [(OPCODE_BINARY, b"a" * 20_000)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Beyond the input itself, about one byte per fragment (a list of pieces would need
    # dozens of bytes each).
    assert peak < len(data) + 400_000


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.booleans(), st.booleans())
def test_arbitrary_bytes_give_messages_or_a_protocol_error(data, expect_masked, deflate):
    # Whatever a peer sends, the reader answers with messages, "need more bytes" or a
    # ProtocolError carrying a close code, never another exception.
    reader = MessageReader(
        expect_masked=expect_masked,
        max_message_size=1000,
        decompressor=_PerMessageDeflateDecompressor(True, None, 1000) if deflate else None,
    )
    reader.feed(data)
    try:
        read_all(reader)
    except ProtocolError as error:
        assert error.code in (1002, 1007, 1009)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("text"), st.text(max_size=300)),
            st.tuples(st.just("binary"), st.binary(max_size=300)),
            st.tuples(st.just("ping"), st.binary(max_size=125)),
        ),
        max_size=8,
    ),
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20),
    st.booleans(),
    st.integers(min_value=1, max_value=4),
)
def test_messages_survive_any_split_and_fragmentation(items, cuts, deflate, pieces):
    writer = MessageWriter(
        mask_outgoing=True,
        compressor=_PerMessageDeflateCompressor(True, None) if deflate else None,
    )
    reader = server_reader(
        decompressor=_PerMessageDeflateDecompressor(True, None, 1 << 20) if deflate else None
    )
    expected = []
    chunks = []
    for kind, value in items:
        if kind == "ping":
            chunks.append(writer.ping(value))
            expected.append((OPCODE_PING, value))
            continue
        payload = value.encode() if kind == "text" else value
        opcode = OPCODE_TEXT if kind == "text" else OPCODE_BINARY
        if deflate:
            chunks.append(writer.message(payload, binary=kind == "binary"))
        else:
            # Split the message into fragments, with a ping in the middle of it.
            size = max(1, len(payload) // pieces)
            parts = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
            for index, part in enumerate(parts):
                last = index == len(parts) - 1
                chunks.append(writer.frame(last, opcode if index == 0 else 0, part))
                if index == 0 and not last:
                    chunks.append(writer.ping(b"mid"))
                    expected.append((OPCODE_PING, b"mid"))
        expected.append((opcode, value))
    data = b"".join(chunks)
    messages = []
    position = 0
    for cut in cuts * (len(data) // max(1, sum(cuts)) + 1):
        if position >= len(data):
            break
        reader.feed(data[position : position + cut])
        position += cut
        messages.extend(read_all(reader))
    reader.feed(data[position:])
    messages.extend(read_all(reader))
    assert messages == expected
