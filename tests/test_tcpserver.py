"""Behaviour of squall.tcpserver.TCPServer."""

import asyncio
import gc
import logging
import os
import socket
import ssl
import subprocess
import sys
import textwrap

import pytest

from squall import netutil
from squall._iostream_transport import _StreamProtocol
from squall.iostream import IOStream, SSLIOStream, StreamClosedError
from squall.tcpserver import TCPServer

CERT_DIR = os.path.join(os.path.dirname(__file__), "..", "squall", "test")
SERVER_SSL = {
    "certfile": os.path.join(CERT_DIR, "test.crt"),
    "keyfile": os.path.join(CERT_DIR, "test.key"),
}


class UpperServer(TCPServer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.addresses = []

    async def handle_stream(self, stream, address):
        self.addresses.append(address)
        try:
            while True:
                line = await stream.read_until(b"\n")
                await stream.write(line.upper())
        except StreamClosedError:
            pass


def trusting_client_context():
    # The test certificate is self-signed: the client checks neither chain nor name.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def listening_socket():
    (sock,) = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    return sock, sock.getsockname()[1]


async def test_handle_stream_serves_each_connection_with_its_address():
    sock, port = listening_socket()
    server = UpperServer()
    server.add_socket(sock)
    client = IOStream(socket.socket())
    try:
        await client.connect(("127.0.0.1", port))
        client.write(b"hello\n")
        assert await client.read_until(b"\n") == b"HELLO\n"
        assert server.addresses[0][0] == "127.0.0.1"
    finally:
        client.close()
        server.stop()


async def test_listen_binds_and_accepts():
    server = UpperServer()
    sock, port = listening_socket()
    sock.close()  # free a known port number for listen() to take
    server.listen(port, address="127.0.0.1")
    client = IOStream(socket.socket())
    try:
        await client.connect(("127.0.0.1", port))
        client.write(b"x\n")
        assert await client.read_until(b"\n") == b"X\n"
    finally:
        client.close()
        server.stop()


async def test_default_handle_stream_closes_the_connection():
    sock, port = listening_socket()
    server = TCPServer()
    server.add_socket(sock)
    client = IOStream(socket.socket())
    try:
        await client.connect(("127.0.0.1", port))
        assert await client.read_until_close() == b""
    finally:
        client.close()
        server.stop()


async def test_exception_in_coroutine_handler_is_logged(caplog):
    class FailingServer(TCPServer):
        async def handle_stream(self, stream, address):
            await stream.read_bytes(5)
            stream.close()
            raise ZeroDivisionError("handler failed")

    sock, port = listening_socket()
    server = FailingServer()
    server.add_socket(sock)
    client = IOStream(socket.socket())
    try:
        with caplog.at_level(logging.ERROR, logger="squall.application"):
            await client.connect(("127.0.0.1", port))
            await client.write(b"hello")
            await client.read_until_close()
            for _ in range(100):
                if "handler failed" in caplog.text:
                    break
                await asyncio.sleep(0.01)
        assert "Exception in callback" in caplog.text
    finally:
        client.close()
        server.stop()


async def test_tls_server_hands_over_streams_before_the_handshake():
    seen = []

    class TLSServer(TCPServer):
        async def handle_stream(self, stream, address):
            seen.append((type(stream), stream.socket.cipher()))
            await stream.wait_for_handshake()
            await stream.write(b"secure\n")
            stream.close()

    sock, port = listening_socket()
    server = TLSServer(ssl_options=SERVER_SSL)
    server.add_socket(sock)
    context = trusting_client_context()
    client = SSLIOStream(socket.socket(), ssl_options=context)
    try:
        await client.connect(("127.0.0.1", port))
        assert await client.read_until(b"\n") == b"secure\n"
        assert seen == [(SSLIOStream, None)]
    finally:
        client.close()
        server.stop()


async def test_stop_closes_listeners_and_is_idempotent():
    sock, port = listening_socket()
    server = TCPServer()
    server.add_socket(sock)
    server.stop()
    server.stop()
    client = IOStream(socket.socket())
    with pytest.raises(StreamClosedError):
        await client.connect(("127.0.0.1", port))


def test_ssl_options_are_validated_up_front(tmp_path):
    with pytest.raises(KeyError):
        TCPServer(ssl_options={"keyfile": SERVER_SSL["keyfile"]})
    with pytest.raises(ValueError):
        TCPServer(ssl_options={"certfile": str(tmp_path / "missing.crt")})


def test_start_twice_is_an_error():
    server = TCPServer()
    server.bind(0, address="127.0.0.1")

    async def start_in_loop():
        server.start()
        with pytest.raises(RuntimeError):
            server.start()
        server.stop()

    asyncio.run(start_in_loop())


def test_bind_then_start_forks_workers():
    code = textwrap.dedent(
        """
        from squall.ioloop import IOLoop
        from squall.process import task_id
        from squall.tcpserver import TCPServer

        server = TCPServer()
        server.bind(0, address="127.0.0.1")
        server.start(2)
        IOLoop.current().run_sync(lambda: None)
        print(task_id(), end="")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.path.join(os.path.dirname(__file__), ".."),
    )
    assert result.returncode == 0, result.stderr
    assert "".join(sorted(result.stdout)) == "01"


async def test_tls_server_handles_a_client_hello_sent_at_once():
    # asyncio's client sends its ClientHello as soon as TCP is up, racing the server's setup.
    class GreetingServer(TCPServer):
        async def handle_stream(self, stream, address):
            await stream.write(await stream.read_until(b"\n"))
            stream.close()

    sock, port = listening_socket()
    server = GreetingServer(ssl_options=SERVER_SSL)
    server.add_socket(sock)
    context = trusting_client_context()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context), 5
        )
        writer.write(b"echo me\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"echo me\n"
        writer.close()
    finally:
        server.stop()


async def test_tls_stream_delivers_to_a_data_handler_set_before_the_handshake():
    received = asyncio.get_running_loop().create_future()

    class TakeOverServer(TCPServer):
        def handle_stream(self, stream, address):
            chunks = []

            def on_data(data):
                chunks.append(data)
                if b"\n" in data and not received.done():
                    received.set_result(b"".join(chunks))

            stream._set_data_handler(on_data)

    sock, port = listening_socket()
    server = TakeOverServer(ssl_options=SERVER_SSL)
    server.add_socket(sock)
    context = trusting_client_context()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context), 5
        )
        writer.write(b"taken over\n")
        assert await asyncio.wait_for(received, 5) == b"taken over\n"
        writer.close()
    finally:
        server.stop()


async def test_server_accepts_on_a_unix_socket(tmp_path):
    path = str(tmp_path / "upper.sock")
    server = UpperServer()
    server.add_socket(netutil.bind_unix_socket(path))
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client = IOStream(raw)
    try:
        await client.connect(path)
        client.set_nodelay(True)  # ignored for Unix sockets
        client.write(b"unix\n")
        assert await client.read_until(b"\n") == b"UNIX\n"
    finally:
        client.close()
        server.stop()


async def test_accepted_connection_leaves_no_reference_cycle():
    class Closer(TCPServer):
        def handle_stream(self, stream, address):
            self.protocol = stream._protocol
            stream.close()

    sock, port = listening_socket()
    server = Closer()
    server.add_sockets([sock])
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.read() == b""  # the server closed it
        writer.close()
        await asyncio.sleep(0.01)
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            # Neither the accept-time closure nor the stream's own protocol may keep the
            # closed stream in a cycle.
            server.protocol = None
            gc.collect()
            leftovers = [
                item for item in gc.garbage if isinstance(item, (IOStream, _StreamProtocol))
            ]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
        assert leftovers == []
    finally:
        server.stop()


async def test_connections_waiting_together_are_accepted_in_one_loop_pass():
    # A burst of connects must not be accepted one per loop pass (libuv's way, which
    # uvloop's create_server inherits): each pass also serves every connection accepted so
    # far, so the last of a 64-connection burst against a busy server waited ~300 ms.
    loop = asyncio.get_running_loop()
    passes = 0

    def count_pass():
        nonlocal passes
        passes += 1
        if passes < 1000:
            loop.call_soon(count_pass)

    class Recorder(TCPServer):
        def __init__(self):
            super().__init__()
            self.seen_at_pass = []

        def handle_stream(self, stream, address):
            self.seen_at_pass.append(passes)
            stream.close()

    sock, port = listening_socket()
    server = Recorder()
    server.add_socket(sock)
    clients = []
    try:
        # Blocking connects on loopback: all of them wait in the listen queue at once.
        for _ in range(8):
            clients.append(socket.create_connection(("127.0.0.1", port)))
        loop.call_soon(count_pass)
        for _ in range(200):
            if len(server.seen_at_pass) == len(clients):
                break
            await asyncio.sleep(0.005)
        assert len(server.seen_at_pass) == len(clients)
        # Nothing else runs here, so one readiness event is one or two passes apart at most.
        assert max(server.seen_at_pass) - min(server.seen_at_pass) <= 1
    finally:
        passes = 1000
        for client in clients:
            client.close()
        server.stop()


class _FlakyListener:
    """A listening socket whose accept() first fails with the given errors, in order."""

    def __init__(self, sock, errors):
        self.sock = sock
        self.errors = list(errors)
        self.accept_calls = 0

    def fileno(self):
        return self.sock.fileno()

    def setblocking(self, flag):
        self.sock.setblocking(flag)

    def accept(self):
        self.accept_calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.sock.accept()


class _Made(asyncio.Protocol):
    made: list = []

    def connection_made(self, transport):
        self.made.append(transport)


async def _accept_through(listener, port, monkeypatch):
    from squall import tcpserver

    monkeypatch.setattr(tcpserver, "_ACCEPT_RETRY_DELAY", 0.01)
    _Made.made = []
    loop = asyncio.get_running_loop()
    acceptor = tcpserver._AcceptLoop(loop, _Made, listener, 16)
    client = socket.create_connection(("127.0.0.1", port))
    try:
        for _ in range(400):
            if _Made.made:
                break
            await asyncio.sleep(0.005)
        return list(_Made.made)
    finally:
        acceptor.close()
        client.close()
        for transport in _Made.made:
            transport.close()


async def test_accept_loop_pauses_when_out_of_descriptors_then_resumes(monkeypatch, caplog):
    import errno

    sock, port = listening_socket()
    listener = _FlakyListener(sock, [OSError(errno.EMFILE, "Too many open files")])
    with caplog.at_level(logging.ERROR, logger="squall.application"):
        made = await _accept_through(listener, port, monkeypatch)
    sock.close()
    assert len(made) == 1  # the waiting connection was accepted after the pause
    assert any("pausing accepts" in record.getMessage() for record in caplog.records)
    # One failed call, then the pause: no spinning on accept() while out of descriptors;
    # after it, one call that accepts and one that finds the queue empty.
    assert listener.accept_calls == 3


async def test_accept_loop_skips_a_connection_the_peer_abandoned(monkeypatch, caplog):
    sock, port = listening_socket()
    listener = _FlakyListener(sock, [ConnectionAbortedError()])
    made = await _accept_through(listener, port, monkeypatch)
    sock.close()
    assert len(made) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
