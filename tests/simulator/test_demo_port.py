"""`make demo`, Ctrl-C, `make demo` again at once: the port check must not be fooled by the
TIME_WAIT sockets the stopped demo left, and must still see a demo that is running."""

import socket

import pytest

from simulator.demo import port_is_free


def _time_wait_ports():
    ports = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "06":  # TCP_TIME_WAIT
            ports.add(int(fields[1].split(":")[1], 16))
    return ports


@pytest.fixture
def port_just_released():
    """A port whose server closed its connections first and stopped, as the head-end does on
    Ctrl-C: its side of each connection waits in TIME_WAIT for a minute."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    served.close()          # the server closes first ...
    client.recv(1)          # ... the client sees the end and closes too
    client.close()
    listener.close()
    assert port in _time_wait_ports()
    return port


def test_a_port_left_in_time_wait_counts_as_free(port_just_released):
    plain = socket.socket()
    with pytest.raises(OSError):  # what the old check did: a bare bind is refused for a minute
        plain.bind(("127.0.0.1", port_just_released))
    plain.close()
    assert port_is_free(port_just_released)
    # ... and the head-end's own bind (uvicorn sets SO_REUSEADDR) does succeed on it.
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port_just_released))
    server.listen()
    try:
        assert not port_is_free(port_just_released)  # a running demo is still seen
    finally:
        server.close()
