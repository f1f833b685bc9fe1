"""The dispatcher hands each connection to the listener with the fewest open, over real
TCP connections and real descriptor passing (the listeners here are plain sockets;
tests/test_listener_processes.py drives it with serve, pynetdicom and dcmtk)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from dicom_gateway.listen.dispatch import DONE, HAND_OVER, ConnectionDispatcher

pytestmark = pytest.mark.integration  # a real TCP server on loopback
CAP = 120.0  # seconds: how long a condition may take on a busy machine before it is a failure


@pytest.fixture
def dispatcher() -> Iterator[ConnectionDispatcher]:
    d = ConnectionDispatcher("127.0.0.1", 0)
    yield d
    d.stop()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=CAP)


def _take(channel: socket.socket) -> socket.socket:
    """What a listener does: receive one handed connection (waiting for it)."""
    channel.settimeout(CAP)
    msg, fds, _, _ = socket.recv_fds(channel, 16, 1)
    assert (msg, len(fds)) == (HAND_OVER, 1)
    return socket.socket(fileno=fds[0])


def _nothing_waiting(channel: socket.socket) -> bool:
    """True when no handed connection waits on a listener's channel, asked without waiting:
    the dispatcher counts a connection as open only after its message is in the channel,
    so once the counts say where every connection went, the channels hold all of them."""
    channel.setblocking(False)
    try:
        socket.recv_fds(channel, 16, 1)
    except BlockingIOError:
        return True
    return False


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + CAP
    while not check():
        assert time.monotonic() < deadline, f"not within {CAP:.0f} s: {what}"
        time.sleep(0.01)


def _handed(d: ConnectionDispatcher, total: int) -> Callable[[], bool]:
    return lambda: sum(d.open_counts().values()) == total


def test_connections_go_to_the_listener_with_fewest_open(dispatcher: ConnectionDispatcher
                                                         ) -> None:
    a, b = dispatcher.attach(0), dispatcher.attach(1)
    dispatcher.start()
    clients = [_connect(dispatcher.port) for _ in range(4)]
    held_a = [_take(a), _take(a)]
    held_b = [_take(b), _take(b)]
    _until(_handed(dispatcher, 4), "four connections counted")
    assert dispatcher.open_counts() == {0: 2, 1: 2}
    # the handed descriptor is the sender's connection itself
    clients[0].sendall(b"hello")
    received = [s for s in held_a + held_b if s.getpeername() == clients[0].getsockname()]
    assert len(received) == 1 and received[0].recv(5) == b"hello"

    # listener 0's two connections end; the next two both go to it
    for s in held_a:
        s.close()
        a.send(DONE)
    _until(lambda: dispatcher.open_counts() == {0: 0, 1: 2}, "listener 0's reports heard")
    clients += [_connect(dispatcher.port) for _ in range(2)]
    more = [_take(a), _take(a)]
    _until(_handed(dispatcher, 4), "both new connections counted")
    assert dispatcher.open_counts() == {0: 2, 1: 2}
    assert _nothing_waiting(b)  # none of the six went to listener 1 beyond its two
    for s in clients + held_b + more:
        s.close()


def test_a_listener_that_is_gone_gets_nothing_and_a_new_one_takes_its_place(
        dispatcher: ConnectionDispatcher) -> None:
    a, b = dispatcher.attach(0), dispatcher.attach(1)
    dispatcher.start()
    b.close()  # that listener process died
    clients = [_connect(dispatcher.port) for _ in range(3)]
    held = [_take(a) for _ in range(3)]
    _until(_handed(dispatcher, 3), "three connections counted")
    assert dispatcher.open_counts() == {0: 3} and _nothing_waiting(a)
    b2 = dispatcher.attach(1)  # started again: it gets the next, as the least busy
    clients.append(_connect(dispatcher.port))
    held.append(_take(b2))
    _until(_handed(dispatcher, 4), "the fourth connection counted")
    assert dispatcher.open_counts() == {0: 3, 1: 1}
    assert _nothing_waiting(a) and _nothing_waiting(b2)
    for s in clients + held:
        s.close()


def test_with_no_listener_left_a_connection_is_closed_not_held(
        dispatcher: ConnectionDispatcher) -> None:
    dispatcher.attach(0).close()
    dispatcher.start()
    client = _connect(dispatcher.port)
    assert client.recv(1) == b""  # closed: the sender sees it at once and may retry
    client.close()


def test_a_port_in_use_fails_at_once_and_a_sender_is_refused_until_started() -> None:
    with socket.create_server(("127.0.0.1", 0)) as other, pytest.raises(OSError):
        ConnectionDispatcher("127.0.0.1", other.getsockname()[1])
    d = ConnectionDispatcher("127.0.0.1", 0)
    try:
        with pytest.raises(ConnectionRefusedError):  # bound, not yet listening
            _connect(d.port)
        channel = d.attach(0)
        d.start()
        client = _connect(d.port)
        _take(channel).close()
        client.close()
    finally:
        d.stop()
