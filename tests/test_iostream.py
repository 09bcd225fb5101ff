"""Behaviour of squall.iostream: buffered reads, writes, limits, failures, TLS, pipes and the
read take-over hooks used by the HTTP/1 and WebSocket layers."""

import asyncio
import gc
import logging
import os
import socket
import ssl

import pytest

from squall import netutil
from squall.iostream import (
    IOStream,
    PipeIOStream,
    SSLIOStream,
    StreamBufferFullError,
    StreamClosedError,
    UnsatisfiableReadError,
    _StreamBuffer,
)
from squall.tcpserver import TCPServer

CERT_DIR = os.path.join(os.path.dirname(__file__), "..", "squall", "test")
SERVER_SSL = {
    "certfile": os.path.join(CERT_DIR, "test.crt"),
    "keyfile": os.path.join(CERT_DIR, "test.key"),
}


def client_tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def stream_pair(**kwargs):
    """(server_stream, client_stream) connected over 127.0.0.1."""
    (listener,) = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    accepted = asyncio.get_running_loop().create_future()

    def on_accept(connection, address):
        if not accepted.done():
            accepted.set_result(IOStream(connection, **kwargs))

    remove = netutil.add_accept_handler(listener, on_accept)
    client = IOStream(socket.socket(), **kwargs)
    try:
        await client.connect(listener.getsockname())
        server = await accepted
    finally:
        remove()
        listener.close()
    return server, client


# ------------------------------------------------------------------ _StreamBuffer


def test_stream_buffer_merges_small_pieces_and_peeks_in_order():
    buf = _StreamBuffer()
    buf._large_buf_threshold = 10
    for piece in (b"ab", bytearray(b"cd"), memoryview(b"ef")):
        buf.append(piece)
    assert len(buf) == 6
    assert len(buf._buffers) == 1
    with buf.peek(4) as view:
        assert view.tobytes() == b"abcd"
    buf.advance(3)
    with buf.peek(10) as view:
        assert view.tobytes() == b"def"
    buf.advance(3)
    assert len(buf) == 0


def test_stream_buffer_keeps_large_bytearrays_by_reference_and_releases_them():
    buf = _StreamBuffer()
    buf._large_buf_threshold = 10
    data = bytearray(b"x" * 20)
    buf.append(data)
    with pytest.raises(BufferError):
        data += b"!"
    buf.advance(20)
    data += b"!"  # resizable again once consumed
    buf.append(bytearray(b"y" * 30))
    assert buf.take_all() == b"y" * 30
    assert len(buf) == 0


def test_stream_buffer_advance_past_end_is_an_error():
    buf = _StreamBuffer()
    buf.append(b"abc")
    with pytest.raises(ValueError):
        buf.advance(4)


# ------------------------------------------------------------------ reads


async def test_read_until_read_bytes_and_regex_split_the_stream_exactly():
    server, client = await stream_pair()
    try:
        client.write(b"line one\r\nHEAD123tail0123456789")
        assert await server.read_until(b"\r\n") == b"line one\r\n"
        assert await server.read_until_regex(rb"\d+") == b"HEAD123"
        assert await server.read_bytes(4) == b"tail"
        assert await server.read_bytes(0) == b""
        assert await server.read_bytes(100, partial=True) == b"0123456789"
    finally:
        server.close()
        client.close()


async def test_read_into_fills_the_callers_buffer_across_chunks():
    server, client = await stream_pair()
    try:
        buf = bytearray(10)
        pending = server.read_into(buf)
        client.write(b"hello")
        await asyncio.sleep(0.01)
        assert server.reading()
        client.write(b"world!!")
        assert await pending == 10
        assert bytes(buf) == b"helloworld"
        partial = bytearray(8)
        assert await server.read_into(partial, partial=True) == 2
        assert bytes(partial[:2]) == b"!!"
        del buf[:]  # no view of the caller's buffer is left behind
    finally:
        server.close()
        client.close()


async def test_read_until_close_returns_everything_sent_before_the_close():
    server, client = await stream_pair()
    client.write(b"a" * 1000 + b"end")
    client.close()
    data = await server.read_until_close()
    assert data == b"a" * 1000 + b"end"
    assert server.closed()


async def test_buffered_data_stays_readable_after_the_peer_closes():
    server, client = await stream_pair()
    client.write(b"12")
    assert await server.read_bytes(1) == b"1"
    client.close()
    assert await server.read_bytes(1) == b"2"
    with pytest.raises(StreamClosedError):
        await server.read_bytes(1)


async def test_second_concurrent_read_is_refused():
    server, client = await stream_pair()
    try:
        pending = server.read_bytes(1)
        with pytest.raises(RuntimeError):
            server.read_bytes(1)
        client.write(b"x")
        assert await pending == b"x"
    finally:
        server.close()
        client.close()


# ------------------------------------------------------------------ faults and limits


async def test_peer_vanishing_fails_a_pending_read_with_stream_closed():
    server, client = await stream_pair()
    closed = asyncio.Event()
    server.set_close_callback(closed.set)
    pending = server.read_bytes(10)
    client.write(b"abc")
    client.close()
    with pytest.raises(StreamClosedError):
        await pending
    await asyncio.wait_for(closed.wait(), 5)


async def test_connection_reset_is_reported_as_the_real_error():
    server, client = await stream_pair()
    pending = server.read_bytes(10)
    # SO_LINGER with a zero timeout makes close() send a reset.
    client.socket.setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
    )
    client.close()
    with pytest.raises(StreamClosedError) as info:
        await pending
    assert isinstance(info.value.real_error, ConnectionResetError)
    assert server.error is info.value.real_error


async def test_read_past_max_buffer_size_closes_with_buffer_full(caplog):
    server, client = await stream_pair(max_buffer_size=1024)
    try:
        pending = server.read_until_close()
        client.write(b"a" * 8192)
        with caplog.at_level(logging.WARNING, logger="squall.general"):
            with pytest.raises(StreamClosedError) as info:
                await pending
        assert isinstance(info.value.real_error, StreamBufferFullError)
        assert "Reached maximum read buffer size" in caplog.text
    finally:
        server.close()
        client.close()


async def test_read_until_beyond_max_bytes_is_unsatisfiable():
    server, client = await stream_pair()
    try:
        client.write(b"123456")
        with pytest.raises(StreamClosedError) as info:
            await server.read_until(b"def", max_bytes=5)
        assert isinstance(info.value.real_error, UnsatisfiableReadError)
        assert server.closed()
    finally:
        client.close()


async def test_small_reads_from_a_bounded_buffer_see_all_the_data():
    server, client = await stream_pair(max_buffer_size=10 * 1024)
    try:
        client.write(b"b" * 200 * 1024)
        for _ in range(200):
            assert await server.read_bytes(1024) == b"b" * 1024
    finally:
        server.close()
        client.close()


async def test_write_over_max_write_buffer_size_raises_buffer_full():
    server, client = await stream_pair(max_write_buffer_size=64 * 1024)
    try:
        with pytest.raises(StreamBufferFullError):
            for _ in range(1000):  # bounded: the peer never reads
                client.write(b"z" * 16 * 1024)
    finally:
        server.close()
        client.close()


async def test_write_future_resolves_once_data_has_drained():
    server, client = await stream_pair()
    try:
        payload = b"q" * (4 * 1024 * 1024)
        written = client.write(payload)
        received = await server.read_bytes(len(payload))
        await written
        assert received == payload
        assert not client.writing()
    finally:
        server.close()
        client.close()


async def test_write_on_closed_stream_raises_stream_closed():
    server, client = await stream_pair()
    client.close()
    server.close()
    with pytest.raises(StreamClosedError):
        client.write(b"late")


async def test_connection_refused_sets_error_and_runs_close_callback():
    (sock,) = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there any more
    stream = IOStream(socket.socket())
    closed = asyncio.Event()
    stream.set_close_callback(closed.set)
    with pytest.raises(StreamClosedError):
        await stream.connect(("127.0.0.1", port))
    assert isinstance(stream.error, ConnectionRefusedError)
    await asyncio.wait_for(closed.wait(), 5)


async def test_write_before_connect_completes_is_sent_after_connecting():
    (listener,) = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    accepted = asyncio.get_running_loop().create_future()
    remove = netutil.add_accept_handler(
        listener, lambda conn, addr: accepted.set_result(IOStream(conn))
    )
    client = IOStream(socket.socket())
    connected = client.connect(listener.getsockname())
    written = client.write(b"early bytes")
    await connected
    await written
    server = await accepted
    remove()
    listener.close()
    try:
        assert await server.read_bytes(11) == b"early bytes"
    finally:
        server.close()
        client.close()


# ------------------------------------------------------------------ read take-over hooks


async def test_data_handler_gets_buffered_bytes_at_once_then_every_chunk():
    server, client = await stream_pair()
    try:
        client.write(b"already here")
        assert await server.read_bytes(3) == b"alr"
        await asyncio.sleep(0.01)
        chunks = []
        server._set_data_handler(chunks.append)
        assert chunks == [b"eady here"]  # delivered before the call returned
        client.write(b"more")
        for _ in range(100):
            if len(chunks) > 1:
                break
            await asyncio.sleep(0.01)
        assert b"".join(chunks) == b"eady heremore"
        with pytest.raises(RuntimeError):
            server.read_bytes(1)
    finally:
        server.close()
        client.close()


async def test_data_handler_released_and_unread_return_to_buffered_reads():
    server, client = await stream_pair()
    try:
        received = []
        server._set_data_handler(received.append)
        client.write(b"GET / HTTP/1.1\r\n\r\nleftover")
        for _ in range(100):
            if b"".join(received).endswith(b"leftover"):
                break
            await asyncio.sleep(0.01)
        server._set_data_handler(None)
        server._unread(b"leftover")
        client.write(b" and more\n")
        assert await server.read_until(b"\n") == b"leftover and more\n"
    finally:
        server.close()
        client.close()


async def test_unread_while_reads_are_taken_over_waits_for_buffered_reads():
    server, client = await stream_pair()
    try:
        server._set_data_handler(lambda data: None)
        server._unread(b"put back\n")
        server._set_data_handler(None)
        assert await server.read_until(b"\n") == b"put back\n"
    finally:
        server.close()
        client.close()


async def test_read_until_close_after_closing_with_reads_taken_over():
    server, client = await stream_pair()
    try:
        server._set_data_handler(lambda data: None)
        server.close()
        assert await server.read_until_close() == b""
    finally:
        client.close()


async def test_streams_taken_over_do_not_share_a_buffer_after_release():
    first, first_client = await stream_pair()
    second, second_client = await stream_pair()
    try:
        for stream in (first, second):
            stream._set_data_handler(lambda data: None)
            stream._set_data_handler(None)
        first_client.write(b"one\n")
        second_client.write(b"two\n")
        assert await first.read_until(b"\n") == b"one\n"
        assert await second.read_until(b"\n") == b"two\n"
    finally:
        for stream in (first, first_client, second, second_client):
            stream.close()


async def test_writes_before_connect_are_sent_once_connected_then_written_directly():
    (listener,) = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    accepted = asyncio.get_running_loop().create_future()
    remove = netutil.add_accept_handler(
        listener, lambda connection, address: accepted.set_result(IOStream(connection))
    )
    client = IOStream(socket.socket())
    try:
        connecting = client.connect(listener.getsockname())
        first = client.write(b"early ")
        await connecting
        await first
        await client.write(b"late\n")
        server = await accepted
        assert await server.read_until(b"\n") == b"early late\n"
        server.close()
    finally:
        remove()
        listener.close()
        client.close()


async def test_pause_and_resume_reading_hold_back_delivery():
    server, client = await stream_pair()
    try:
        chunks = []
        server._set_data_handler(chunks.append)
        server._pause_reading()
        client.write(b"held")
        await asyncio.sleep(0.05)
        assert chunks == []
        server._resume_reading()
        for _ in range(100):
            if chunks:
                break
            await asyncio.sleep(0.01)
        assert b"".join(chunks) == b"held"
    finally:
        server.close()
        client.close()


async def test_write_nowait_sends_without_a_future():
    server, client = await stream_pair()
    try:
        assert client._write_nowait(b"fire and forget") is None
        assert await server.read_bytes(15) == b"fire and forget"
    finally:
        server.close()
        client.close()


async def test_close_reaches_the_close_callback_while_reads_are_taken_over():
    server, client = await stream_pair()
    closed = asyncio.Event()
    server.set_close_callback(closed.set)
    server._set_data_handler(lambda data: None)
    client.close()
    await asyncio.wait_for(closed.wait(), 5)
    assert server.closed()


# ------------------------------------------------------------------ TLS


class EchoServer(TCPServer):
    async def handle_stream(self, stream, address):
        try:
            while True:
                line = await stream.read_until(b"\n")
                await stream.write(line)
        except StreamClosedError:
            pass


async def test_ssl_stream_talks_to_a_tls_tcp_server():
    (sock,) = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server = EchoServer(ssl_options=SERVER_SSL)
    server.add_socket(sock)
    client = SSLIOStream(socket.socket(), ssl_options=client_tls_context())
    try:
        await client.connect(sock.getsockname())
        assert client.socket.cipher() is not None
        await client.wait_for_handshake()
        client.write(b"ping\n")
        assert await client.read_until(b"\n") == b"ping\n"
    finally:
        client.close()
        server.stop()


async def test_ssl_handshake_failure_raises_the_ssl_error():
    (sock,) = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server = EchoServer(ssl_options=SERVER_SSL)
    server.add_socket(sock)
    strict = ssl.create_default_context()  # the test certificate is not trusted
    client = SSLIOStream(socket.socket(), ssl_options=strict)
    try:
        with pytest.raises(ssl.SSLError):
            await client.connect(sock.getsockname(), server_hostname="localhost")
        assert client.closed()
    finally:
        client.close()
        server.stop()


async def test_start_tls_upgrades_both_ends():
    server, client = await stream_pair()
    client.write(b"STARTTLS\r\n")
    assert await server.read_until(b"\r\n") == b"STARTTLS\r\n"
    server_tls = server.start_tls(True, SERVER_SSL)
    client_tls = client.start_tls(False, client_tls_context())
    tls_client, tls_server = await asyncio.gather(client_tls, server_tls)
    try:
        assert isinstance(tls_client, SSLIOStream)
        tls_client.write(b"secret\n")
        assert await tls_server.read_until(b"\n") == b"secret\n"
    finally:
        tls_client.close()
        tls_server.close()


async def test_start_tls_refuses_a_busy_stream():
    server, client = await stream_pair()
    try:
        client.read_bytes(1)
        with pytest.raises(ValueError):
            client.start_tls(False)
    finally:
        server.close()
        client.close()


# ------------------------------------------------------------------ pipes


async def test_pipe_streams_carry_data_until_the_writer_closes():
    read_fd, write_fd = os.pipe()
    reader, writer = PipeIOStream(read_fd), PipeIOStream(write_fd)
    try:
        writer.write(b"hello ")
        writer.write(b"pipe")
        assert await reader.read_until(b" ") == b"hello "
        writer.close()
        assert await reader.read_until_close() == b"pipe"
    finally:
        reader.close()
        writer.close()


async def test_pipe_write_after_reader_closed_fails():
    read_fd, write_fd = os.pipe()
    reader, writer = PipeIOStream(read_fd), PipeIOStream(write_fd)
    reader.close()
    with pytest.raises(StreamClosedError):
        for _ in range(100):  # bounded: the broken pipe is noticed within a few writes
            await writer.write(b"x" * 65536)
    assert writer.closed()


async def test_pipe_stream_on_a_read_write_descriptor_reads_and_writes():
    left, right = socket.socketpair()
    right.settimeout(5)
    stream = PipeIOStream(left.detach())
    try:
        await stream.write(b"to peer")
        assert right.recv(100) == b"to peer"
        right.sendall(b"from peer\n")
        assert await stream.read_until(b"\n") == b"from peer\n"
    finally:
        stream.close()
        right.close()


async def test_close_right_after_writing_to_a_connected_socket_still_sends():
    (listener,) = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    accepted = asyncio.get_running_loop().create_future()
    remove = netutil.add_accept_handler(
        listener, lambda conn, addr: accepted.set_result(IOStream(conn))
    )
    raw = socket.socket()
    raw.connect(listener.getsockname())
    stream = IOStream(raw)
    stream.write(b"said before closing")
    stream.close()
    server = await accepted
    remove()
    listener.close()
    try:
        assert await server.read_until_close() == b"said before closing"
    finally:
        server.close()


async def test_cancelled_read_leaves_the_data_for_the_next_read():
    server, client = await stream_pair()
    try:
        abandoned = server.read_bytes(5)
        abandoned.cancel()
        client.write(b"kept!")
        assert await server.read_bytes(5) == b"kept!"
    finally:
        server.close()
        client.close()


async def test_tls_write_future_waits_for_the_plain_transport_and_fails_on_close():
    (sock,) = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server = EchoServer(ssl_options=SERVER_SSL)  # reads lines; never sees one here
    server.add_socket(sock)
    client = SSLIOStream(socket.socket(), ssl_options=client_tls_context())
    try:
        await client.connect(sock.getsockname())
        pending = client.write(b"x" * (16 * 1024 * 1024))
        assert client.writing()
        client.close()
        with pytest.raises(StreamClosedError):
            await pending
    finally:
        client.close()
        server.stop()


async def test_unread_bytes_are_searched_by_a_pending_read_until():
    server, client = await stream_pair()
    try:
        pending = server.read_until(b"\r\n")
        client.write(b"tail without the delimiter")
        await asyncio.sleep(0.02)
        server._unread(b"head\r\n")
        assert await pending == b"head\r\n"
        client.write(b"\r\n")
        assert await server.read_until(b"\r\n") == b"tail without the delimiter\r\n"
    finally:
        server.close()
        client.close()


async def test_peer_closing_during_the_tls_handshake_gives_stream_closed():
    (listener,) = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    remove = netutil.add_accept_handler(listener, lambda conn, addr: conn.close())
    client = SSLIOStream(socket.socket(), ssl_options=client_tls_context())
    try:
        with pytest.raises((StreamClosedError, ssl.SSLError)):
            await client.connect(listener.getsockname())
        assert client.closed()
    finally:
        remove()
        listener.close()
        client.close()


# ------------------------------------------------------------------ closing early, cycles, pending writes


async def test_closing_before_the_loop_took_the_socket_over_is_quiet():
    # Closing a stream on a connected socket at any point of its attachment (before, while
    # and after the loop adopts the socket) must not leave a failed task behind.
    loop = asyncio.get_running_loop()
    problems = []
    loop.set_exception_handler(lambda _loop, context: problems.append(context.get("message")))
    (listener,) = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    listener.setblocking(False)
    try:
        for turns in range(4):
            sock = socket.create_connection(listener.getsockname())
            peer = None
            for _ in range(100):
                try:
                    peer, _ = listener.accept()
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            assert peer is not None
            stream = IOStream(sock)
            for _ in range(turns):
                await asyncio.sleep(0)
            stream.close()
            for _ in range(3):
                await asyncio.sleep(0)
            peer.close()
            del stream
            gc.collect()  # a failed task reports itself when collected
        await asyncio.sleep(0)
    finally:
        listener.close()
        loop.set_exception_handler(None)
    assert problems == []


async def test_pending_write_size_counts_squall_and_transport_buffers():
    unconnected = IOStream(socket.socket())
    unconnected.write(b"abcd")
    assert unconnected._pending_write_size() == 4  # held until a transport exists
    unconnected.close()

    server, client = await stream_pair()
    try:
        assert client._pending_write_size() == 0
        server._pause_reading()
        payload = b"p" * (8 * 1024 * 1024)
        done = client.write(payload)
        # The kernel cannot take it all while the peer does not read.
        pending = client._pending_write_size()
        assert 0 < pending <= len(payload)
        server._resume_reading()
        received = 0
        while received < len(payload):
            received += len(await server.read_bytes(len(payload) - received, partial=True))
        await done
        assert client._pending_write_size() == 0
    finally:
        server.close()
        client.close()


async def test_tls_pending_write_size_drains_to_zero():
    class Sink(TCPServer):
        def handle_stream(self, stream, address):
            self.stream = stream

    server = Sink(ssl_options=SERVER_SSL)
    (listener,) = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server.add_sockets([listener])
    client = SSLIOStream(socket.socket(), ssl_options=client_tls_context())
    try:
        await client.connect(listener.getsockname())
        await client.write(b"hello")
        assert client._pending_write_size() == 0
        assert await server.stream.read_bytes(5) == b"hello"
    finally:
        client.close()
        server.stop()


async def test_closed_stream_is_freed_without_the_cycle_collector():
    server, client = await stream_pair()
    await client.write(b"x")
    assert await server.read_bytes(1) == b"x"
    client.close()
    server.close()
    await asyncio.sleep(0.01)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        del server, client
        gc.collect()
        leftovers = [item for item in gc.garbage if isinstance(item, IOStream)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert leftovers == []


async def test_closed_stream_lets_go_of_its_data_handler():
    class Owner:
        def __init__(self, stream):
            self.stream = stream
            self.received = []

        def on_data(self, data):
            self.received.append(data)

    server, client = await stream_pair()
    owner = Owner(server)
    server._set_data_handler(owner.on_data)
    await client.write(b"hi")
    for _ in range(100):
        if owner.received:
            break
        await asyncio.sleep(0.01)
    assert owner.received == [b"hi"]
    server.close()
    client.close()
    # The handler is a bound method of an object that holds the stream: a cycle, unless
    # closing drops the handler.
    assert server._data_handler is None
    server._set_data_handler(owner.on_data)  # on a closed stream: nothing to hand over
    assert server._data_handler is None
