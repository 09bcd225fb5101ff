"""Behaviour of squall.tcpclient: connecting, timeouts, TLS and the happy-eyeballs connector."""

import asyncio
import os
import socket
import ssl

import pytest

from squall import netutil
from squall.iostream import IOStream, SSLIOStream, StreamClosedError
from squall.netutil import Resolver
from squall.tcpclient import TCPClient, _Connector, _format_addr
from squall.tcpserver import TCPServer

CERT_DIR = os.path.join(os.path.dirname(__file__), "..", "squall", "test")
SERVER_SSL = {
    "certfile": os.path.join(CERT_DIR, "test.crt"),
    "keyfile": os.path.join(CERT_DIR, "test.key"),
}


class QueueServer(TCPServer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.streams = asyncio.Queue()
        (sock,) = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
        self.port = sock.getsockname()[1]
        self.add_socket(sock)

    def handle_stream(self, stream, address):
        self.streams.put_nowait(stream)


def insecure_context():
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def test_connect_returns_a_connected_stream():
    server = QueueServer()
    client = TCPClient()
    try:
        stream = await client.connect("localhost", server.port, af=socket.AF_INET)
        server_stream = await server.streams.get()
        stream.write(b"hello")
        assert await server_stream.read_bytes(5) == b"hello"
        stream.close()
        server_stream.close()
    finally:
        client.close()
        server.stop()


async def test_source_ip_and_port_are_used_for_the_connection():
    server = QueueServer()
    client = TCPClient()
    try:
        stream = await client.connect("127.0.0.1", server.port, source_ip="127.0.0.1")
        server_stream = await server.streams.get()
        assert server_stream.socket.getpeername() == stream.socket.getsockname()
        stream.close()
        server_stream.close()
    finally:
        client.close()
        server.stop()


async def test_refused_connection_raises_oserror():
    (sock,) = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(OSError):
        await TCPClient().connect("127.0.0.1", port)


async def test_resolution_timeout_raises_timeout_error():
    class HangingResolver(Resolver):
        def resolve(self, host, port, family=socket.AF_UNSPEC):
            return asyncio.get_running_loop().create_future()

    with pytest.raises(TimeoutError, match="Timeout while resolving example.com"):
        await TCPClient(resolver=HangingResolver()).connect("example.com", 80, timeout=0.05)


async def test_connect_with_tls_returns_an_ssl_stream():
    server = QueueServer(ssl_options=SERVER_SSL)
    client = TCPClient()
    try:
        stream = await client.connect("127.0.0.1", server.port, ssl_options=insecure_context())
        assert isinstance(stream, SSLIOStream)
        server_stream = await server.streams.get()
        stream.write(b"tls!")
        assert await server_stream.read_bytes(4) == b"tls!"
        stream.close()
        server_stream.close()
    finally:
        client.close()
        server.stop()


async def test_tls_handshake_timeout_closes_the_socket():
    server = QueueServer()  # plain server: never answers the TLS handshake
    client = TCPClient()
    try:
        with pytest.raises(TimeoutError, match="Timeout during TLS handshake"):
            await client.connect(
                "127.0.0.1", server.port, ssl_options=insecure_context(), timeout=0.3
            )
        server_stream = await server.streams.get()
        await asyncio.wait_for(server_stream.read_until_close(), 5)
    finally:
        client.close()
        server.stop()


def test_format_addr():
    assert _format_addr(("1.2.3.4", 443)) == "1.2.3.4:443"
    assert _format_addr(("::1", 443, 0, 0)) == "[::1]:443"
    assert _format_addr("/tmp/sock") == "/tmp/sock"


def test_connector_split_keeps_order_within_families():
    primary, secondary = _Connector.split([(1, "a"), (2, "b"), (1, "c"), (2, "d")])
    assert primary == [(1, "a"), (1, "c")]
    assert secondary == [(2, "b"), (2, "d")]
    assert _Connector.split([]) == ([], [])


class FakeStream:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


async def test_connector_falls_back_to_the_second_family_after_a_failure():
    attempts = {}

    def create(af, addr):
        future = asyncio.get_running_loop().create_future()
        attempts[addr] = (FakeStream(), future)
        return attempts[addr]

    connector = _Connector([(1, "a"), (2, "b")], create)
    result = connector.start(3600)
    assert list(attempts) == ["a"]
    attempts["a"][1].set_exception(OSError("refused"))
    await asyncio.sleep(0)
    assert list(attempts) == ["a", "b"]
    attempts["b"][1].set_result(attempts["b"][0])
    af, addr, stream = await result
    assert (af, addr, stream) == (2, "b", attempts["b"][0])
    assert attempts["a"][0].closed and not stream.closed


async def test_connector_timeout_names_every_pending_address_and_closes_them():
    streams = []

    def create(af, addr):
        streams.append(FakeStream())
        return streams[-1], asyncio.get_running_loop().create_future()

    connector = _Connector([(1, "a"), (2, "c")], create)
    loop = asyncio.get_running_loop()
    result = connector.start(0.01, connect_timeout=loop.time() + 0.1)
    with pytest.raises(TimeoutError, match="Timeout while connecting to a, c"):
        await result
    assert all(stream.closed for stream in streams)


async def test_connector_fails_with_the_last_error_when_everything_fails():
    def create(af, addr):
        raise OSError(f"cannot reach {addr}")

    connector = _Connector([(1, "a"), (2, "b")], create)
    with pytest.raises(OSError, match="cannot reach b"):
        await connector.start()


async def test_closed_stream_from_failed_connect_reports_stream_closed():
    stream = IOStream(socket.socket())
    stream.close()
    with pytest.raises(StreamClosedError):
        stream.connect(("127.0.0.1", 9))
