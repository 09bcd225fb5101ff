"""Behaviour of squall.netutil: listening sockets, accept handlers, resolvers, TLS options."""

import asyncio
import concurrent.futures
import os
import socket
import ssl

import pytest

from squall import netutil
from squall.netutil import (
    BlockingResolver,
    DefaultExecutorResolver,
    DefaultLoopResolver,
    ExecutorResolver,
    OverrideResolver,
    Resolver,
    ThreadedResolver,
    bind_sockets,
    bind_unix_socket,
    is_valid_ip,
    ssl_options_to_context,
    ssl_wrap_socket,
)

CERT_DIR = os.path.join(os.path.dirname(__file__), "..", "squall", "test")


def test_bind_sockets_with_port_zero_shares_one_port():
    sockets = bind_sockets(0, "localhost")
    try:
        assert sockets
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(ports) == 1
        assert all(not sock.getblocking() for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
def test_bind_sockets_reuse_port_allows_a_second_listener():
    (first,) = bind_sockets(0, "127.0.0.1", family=socket.AF_INET, reuse_port=True)
    port = first.getsockname()[1]
    try:
        (second,) = bind_sockets(port, "127.0.0.1", family=socket.AF_INET, reuse_port=True)
        second.close()
    finally:
        first.close()


def test_bind_sockets_honours_backlog_and_family():
    (sock,) = bind_sockets(0, "127.0.0.1", family=socket.AF_INET, backlog=5)
    try:
        assert sock.family == socket.AF_INET
    finally:
        sock.close()


def test_bind_unix_socket_replaces_a_stale_socket_file(tmp_path):
    path = str(tmp_path / "server.sock")
    first = bind_unix_socket(path)
    first.close()  # leaves the socket file behind
    second = bind_unix_socket(path, mode=0o600)
    try:
        assert os.stat(path).st_mode & 0o777 == 0o600
    finally:
        second.close()


def test_bind_unix_socket_refuses_to_replace_a_regular_file(tmp_path):
    path = tmp_path / "not-a-socket"
    path.write_text("data")
    with pytest.raises(ValueError):
        bind_unix_socket(str(path))
    assert path.read_text() == "data"


async def test_add_accept_handler_reports_connections_until_removed():
    (listener,) = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    accepted = []
    seen = asyncio.Event()

    def on_accept(connection, address):
        accepted.append(address)
        connection.close()
        seen.set()

    remove = netutil.add_accept_handler(listener, on_accept)
    client = socket.socket()
    try:
        client.connect(listener.getsockname())
        await asyncio.wait_for(seen.wait(), 5)
        assert accepted[0][0] == "127.0.0.1"
    finally:
        remove()
        remove()  # idempotent
        client.close()
        listener.close()


@pytest.mark.parametrize(
    "text,valid",
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("2620:0:1cfe:face:b00c::3", True),
        ("localhost", False),
        (" 127.0.0.1", False),
        ("4.4.4.4<", False),
        ("", False),
        ("\x00", False),
        ("a" * 100, False),
    ],
)
def test_is_valid_ip(text, valid):
    assert is_valid_ip(text) is valid


def test_resolver_defaults_to_the_loop_resolver():
    assert Resolver.configured_class() is DefaultLoopResolver


@pytest.mark.parametrize(
    "resolver_class",
    [DefaultLoopResolver, DefaultExecutorResolver, BlockingResolver, ThreadedResolver],
)
async def test_resolvers_find_the_loopback_address(resolver_class):
    resolver = resolver_class()
    try:
        result = await resolver.resolve("localhost", 80, socket.AF_INET)
        assert (socket.AF_INET, ("127.0.0.1", 80)) in result
    finally:
        resolver.close()


async def test_resolver_reports_unknown_names_as_oserror(monkeypatch):
    def failing_getaddrinfo(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "mock: no such name")

    monkeypatch.setattr(socket, "getaddrinfo", failing_getaddrinfo)
    with pytest.raises(OSError):
        await BlockingResolver().resolve("no-such-host.invalid", 80)


async def test_override_resolver_maps_host_port_and_family():
    mapping = {
        "example.com": "127.0.0.1",
        ("api.example.com", 443): ("127.0.0.1", 8443),
        ("v6.example.com", 80, socket.AF_INET6): ("::1", 8080),
    }
    resolver = OverrideResolver(BlockingResolver(), mapping)
    assert (socket.AF_INET, ("127.0.0.1", 80)) in await resolver.resolve(
        "example.com", 80, socket.AF_INET
    )
    assert (socket.AF_INET, ("127.0.0.1", 8443)) in await resolver.resolve(
        "api.example.com", 443, socket.AF_INET
    )
    result = await resolver.resolve("v6.example.com", 80, socket.AF_INET6)
    assert result[0][0] == socket.AF_INET6 and result[0][1][:2] == ("::1", 8080)
    resolver.close()


async def test_closed_executor_resolver_gives_a_clear_error():
    executor = concurrent.futures.ThreadPoolExecutor(1)
    resolver = ExecutorResolver(executor=executor)
    resolver.close()
    with pytest.raises(RuntimeError, match="closed resolver"):
        await resolver.resolve("localhost", 80)


def test_ssl_options_dict_becomes_a_context():
    context = ssl_options_to_context(
        {
            "certfile": os.path.join(CERT_DIR, "test.crt"),
            "keyfile": os.path.join(CERT_DIR, "test.key"),
            "cert_reqs": ssl.CERT_NONE,
        },
        server_side=True,
    )
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_NONE
    assert context.options & ssl.OP_NO_COMPRESSION


def test_ssl_options_context_passes_through_and_bad_keys_are_rejected():
    context = ssl.create_default_context()
    assert ssl_options_to_context(context) is context
    with pytest.raises(ValueError):
        ssl_options_to_context({"no_such_option": 1})


def test_ssl_wrap_socket_returns_an_ssl_socket():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(os.path.join(CERT_DIR, "test.crt"), os.path.join(CERT_DIR, "test.key"))
    sock = socket.socket()
    wrapped = ssl_wrap_socket(sock, context, server_side=True, do_handshake_on_connect=False)
    try:
        assert isinstance(wrapped, ssl.SSLSocket)
        assert wrapped.server_side
    finally:
        wrapped.close()


def test_bind_sockets_remembers_each_listening_backlog():
    (sock,) = bind_sockets(0, "127.0.0.1", family=socket.AF_INET, backlog=7)
    try:
        assert netutil._listen_backlogs[sock] == 7
    finally:
        sock.close()


def test_bind_unix_socket_in_the_abstract_namespace() -> None:
    import os
    import socket

    from squall.netutil import bind_unix_socket

    name = f"\0squall-test-{os.getpid()}"
    listener = bind_unix_socket(name)
    try:
        assert listener.getsockname() == name.encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(name)
    finally:
        listener.close()
