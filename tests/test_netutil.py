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


def test_bind_sockets_on_every_interface_dedupes_and_shares_the_port():
    for address in (None, ""):
        sockets = bind_sockets(0, address)
        try:
            names = [(sock.family, sock.getsockname()[:2]) for sock in sockets]
            assert len(names) == len(set(names))
            assert len({name[1][1] for name in names}) == 1
            # IPv4 comes first; an IPv6 socket does not also take IPv4 traffic
            assert [sock.family for sock in sockets] == sorted(sock.family for sock in sockets)
            for sock in sockets:
                if sock.family == socket.AF_INET6:
                    assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
        finally:
            for sock in sockets:
                sock.close()


def test_bind_sockets_closes_what_it_opened_when_a_bind_fails():
    (taken,) = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    opened = []
    real_socket = socket.socket

    class Recording(real_socket):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)

    try:
        socket.socket = Recording  # type: ignore[misc]
        with pytest.raises(OSError):
            bind_sockets(taken.getsockname()[1], "127.0.0.1", family=socket.AF_INET)
    finally:
        socket.socket = real_socket  # type: ignore[misc]
        taken.close()
    assert opened and all(sock.fileno() == -1 for sock in opened)


async def test_accept_handler_removed_by_its_callback_stops_the_batch():
    (listener,) = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    clients = [socket.socket() for _ in range(3)]
    accepted = []
    done = asyncio.Event()

    def on_accept(connection, address):
        accepted.append(connection)
        remove()
        done.set()

    for client in clients:
        client.connect(listener.getsockname())
    remove = netutil.add_accept_handler(listener, on_accept)
    try:
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.sleep(0.05)
        assert len(accepted) == 1
    finally:
        for sock in accepted + clients:
            sock.close()
        listener.close()


def test_executor_resolver_closes_only_an_executor_it_was_given_to_close():
    class Recording(concurrent.futures.ThreadPoolExecutor):
        shut = False

        def shutdown(self, *args, **kwargs):
            self.shut = True
            super().shutdown(*args, **kwargs)

    kept, owned = Recording(1), Recording(1)
    ExecutorResolver(executor=kept, close_executor=False).close()
    ExecutorResolver(executor=owned).close()
    assert not kept.shut and owned.shut
    kept.shutdown()
    inline = ExecutorResolver()
    assert inline.close_executor is False
    inline.close()


def test_threaded_resolvers_share_one_pool_per_process(monkeypatch):
    first, second = ThreadedResolver(), ThreadedResolver()
    assert first.executor is second.executor
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as if in a forked child
    child = ThreadedResolver()
    assert child.executor is not first.executor
    assert ThreadedResolver().executor is child.executor


async def test_override_resolver_prefers_the_most_specific_key():
    mapping = {
        "h.example": "127.0.0.2",
        ("h.example", 80): ("127.0.0.3", 81),
        ("h.example", 80, socket.AF_INET): ("127.0.0.4", 82),
    }
    resolver = OverrideResolver(BlockingResolver(), mapping)
    assert await resolver.resolve("h.example", 80, socket.AF_INET) == [
        (socket.AF_INET, ("127.0.0.4", 82))
    ]
    assert (socket.AF_INET, ("127.0.0.3", 81)) in await resolver.resolve("h.example", 80)
    assert await resolver.resolve("h.example", 90, socket.AF_INET) == [
        (socket.AF_INET, ("127.0.0.2", 90))
    ]
    resolver.close()


@pytest.mark.parametrize(
    "server_side,protocol",
    [(True, ssl.PROTOCOL_TLS_SERVER), (False, ssl.PROTOCOL_TLS_CLIENT), (None, ssl.PROTOCOL_TLS)],
)
def test_ssl_options_default_protocol_follows_the_side(server_side, protocol):
    assert ssl_options_to_context({}, server_side=server_side).protocol == protocol


def test_ssl_options_cert_reqs_none_turns_off_hostname_checks_on_a_client():
    context = ssl_options_to_context({"cert_reqs": ssl.CERT_NONE}, server_side=False)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
