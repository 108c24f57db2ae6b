"""A receiver's network path, with faults injected by tests and by `loaxa sim`.

Every connection the firmware opens goes through a relay: the firmware gets one end of a local
socket pair (real asyncio streams, so its MQTT client runs unchanged) and the relay copies bytes
between the other end and the real broker connection. That is where faults are applied:

- ``cut()``: the link is gone. In "drop" mode open connections are torn down at once (the
  firmware sees the stream end); in "blackhole" mode bytes silently vanish and the firmware
  only notices through its keepalive, as on a 4G link that lost coverage. New connections are
  refused until ``restore()``.
- ``power_off()``: the board lost its power. Its connections simply go quiet: no FIN, no
  reset, as a TCP connection whose far end vanished (the broker notices by its keepalive and
  publishes the will); new connections are refused until ``restore()``, which ends them.
- ``latency_ms``: one-way delay added to every chunk, in both directions, order preserved.
- ``loss``: the fraction of MQTT QoS-0 PUBLISH packets from the broker that never arrive
  (time-sync replies, audio frames); the relay reassembles MQTT packets to drop whole ones.
- ``hosts``: what the receiver's DNS answers ({name: address}, ahead of the system's), so a test
  can move the broker to another address; ``resolves`` counts the lookups asked, and a lookup
  fails while the link is cut, as on the board.

TLS, when the firmware asks for it (a context from ``HostPlatform.tls_context``), is between the
relay and the broker: the certificate check runs in the dial, with the firmware's own context
and server name, and a refusal reaches the firmware as the dial's error; the relay itself sees
plain MQTT, so loss and the packet counts work the same with TLS.

It also counts what crosses it, for the data-volume benchmark (bench/bench_link_bytes.py):
bytes each way, MQTT packets each way (reads, for a connection that is not MQTT, such as an
HTTP download), the non-MQTT share of the bytes, and ``on_packet(direction, packet)``, if set,
sees every whole MQTT packet ("in": broker -> receiver, "out": receiver -> broker).
"""

import asyncio
import errno
import ipaddress
import random
import socket
import time

from firmware.mqtt_packets import decode_remaining_length
from protocol.errors import ProtocolError

PUBLISH = 3
_READ_CHUNK = 65536


def mqtt_packet_length(buf):
    """Total length of the MQTT packet at the start of ``buf``, or None if it is incomplete.

    Raises ValueError if the bytes cannot be MQTT (a remaining length over four bytes).
    """
    field = buf[1:5]
    if len(field) < 4 and all(byte & 0x80 for byte in field):
        return None  # the remaining-length field itself has not fully arrived
    try:
        remaining, body_at = decode_remaining_length(buf, 1)
    except ProtocolError:
        raise ValueError("not an MQTT packet") from None
    total = body_at + remaining
    return total if len(buf) >= total else None


def _is_mqtt_connect(data):
    """Whether a connection's first bytes are an MQTT CONNECT (loss applies to MQTT only:
    the same path carries HTTP media downloads)."""
    return len(data) >= 2 and data[0] == 0x10 and b"MQTT" in data[:12]


def is_qos0_publish(first_byte):
    return first_byte >> 4 == PUBLISH and (first_byte >> 1) & 3 == 0


class LinkPath:
    """One receiver's link to the world. Fault settings may change at any time."""

    def __init__(self, seed=0):
        self.up = True
        self.mode = "drop"
        self.latency_ms = 0.0
        self.loss = 0.0
        self._rng = random.Random(seed)
        self._relays = set()
        self.connections = 0       # connections opened through this path
        self.refused = 0           # connection attempts refused while cut
        self.dropped_publishes = 0  # QoS-0 PUBLISH packets lost on purpose
        self.bytes_in = 0          # broker -> receiver
        self.bytes_out = 0         # receiver -> broker
        self.packets_in = 0        # MQTT packets (reads, on a non-MQTT connection)
        self.packets_out = 0
        self.other_bytes_in = 0    # the part of bytes_in/out on non-MQTT connections (HTTP)
        self.other_bytes_out = 0
        self.on_packet = None      # on_packet("in" | "out", packet bytes), whole MQTT packets
        self.cuts = []             # (true time s, "cut" | "restore")
        self.hosts = {}            # name -> address: this receiver's DNS answers, first
        self.resolves = 0          # DNS lookups asked through this path
        self._server = None        # serve(): the listener for a receiver in another process
        self._frozen = []          # upstream writers of a board that lost power (power_off)

    # -- fault control ------------------------------------------------------------------------

    def cut(self, mode="drop"):
        """Take the link down. ``mode``: "drop" (connections end now) or "blackhole"."""
        self.up = False
        self.mode = mode
        self.cuts.append((time.time(), "cut"))
        if mode == "drop":
            for relay in list(self._relays):
                relay.abort()

    def power_off(self):
        """The board lost power: open connections go silent without closing (see above)."""
        self.up = False
        self.mode = "blackhole"
        self.cuts.append((time.time(), "power-off"))
        for relay in list(self._relays):
            self._frozen.append(relay.freeze())

    def restore(self):
        self.up = True
        self.cuts.append((time.time(), "restore"))
        for writer in self._frozen:  # the half-open connections of before a power cut
            writer.transport.abort()
        self._frozen = []
        # A connection that lost bytes while black-holed has a hole in its stream and cannot
        # carry on: end it, so the firmware reconnects. One that was idle all along survives,
        # as TCP does over a short outage.
        for relay in list(self._relays):
            if relay.blackholed:
                relay.abort()

    def set_latency(self, one_way_ms):
        self.latency_ms = float(one_way_ms)

    def set_loss(self, fraction):
        self.loss = float(fraction)

    @property
    def open_connections(self):
        return len(self._relays)

    # -- what the platform calls --------------------------------------------------------------

    async def open_connection(self, host, port, ssl=None, server_hostname=None):
        upstream = await self._dial(host, port, ssl, server_hostname)
        device_sock, relay_sock = socket.socketpair()
        device = await asyncio.open_connection(sock=device_sock)
        self._attach(await asyncio.open_connection(sock=relay_sock), upstream)
        return device

    async def resolve(self, host, port):
        """``host``'s address as the board's lookup gives it (IPv4 only, as lwIP is set up on
        the ESP32 port); ``hosts`` answers first. Fails while the link is cut."""
        self.resolves += 1
        if not self.up:
            raise OSError(errno.EHOSTUNREACH, "link is cut: no DNS")
        if host in self.hosts:
            return self.hosts[host]
        try:
            ipaddress.ip_address(host)
            return host  # a literal needs no lookup (nor a thread of the loop's executor)
        except ValueError:
            pass
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, family=socket.AF_INET,
                                                            type=socket.SOCK_STREAM)
        return infos[0][4][0]

    async def _dial(self, host, port, ssl=None, server_hostname=None):
        """The upstream connection, through the link's faults (refused while cut)."""
        if not self.up:
            self.refused += 1
            raise OSError(errno.ECONNREFUSED, "link is cut")
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000.0)  # SYN on its way
        if ssl:
            upstream = await asyncio.open_connection(host, port, ssl=ssl,
                                                     server_hostname=server_hostname)
        else:
            upstream = await asyncio.open_connection(host, port)
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000.0)  # SYN-ACK on its way back
        if not self.up:
            upstream[1].transport.abort()
            self.refused += 1
            raise OSError(errno.ECONNREFUSED, "link is cut")
        return upstream

    def _attach(self, local, upstream):
        relay = _Relay(self, local, upstream)
        self._relays.add(relay)
        self.connections += 1
        relay.start()

    # -- for a receiver in another process (simulator/mp_host.py) ------------------------------

    async def serve(self):
        """Listen on 127.0.0.1 for a receiver running in another process; return the port.

        Each connection starts with one line, ``host port\n``, naming where the firmware
        dials; the answer is one byte, ``+`` (connected: from here on the relay carries the
        bytes, faults and counts as for an in-process receiver) or ``-`` (refused: the link is
        cut or the destination did not answer).
        """
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def close(self):
        for relay in list(self._relays):
            relay.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader, writer):
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            host, port = line.decode().split()
            upstream = await self._dial(host, int(port))
        except (TimeoutError, OSError, ValueError):
            writer.write(b"-")
            writer.close()
            return
        writer.write(b"+")
        await writer.drain()
        self._attach((reader, writer), upstream)

    def _forget(self, relay):
        self._relays.discard(relay)

    def _lose(self):
        return self.loss > 0 and self._rng.random() < self.loss


class _Relay:
    """Copies bytes both ways between the firmware's socket pair end and the broker."""

    def __init__(self, path, local, upstream):
        self.path = path
        self.local_reader, self.local_writer = local
        self.up_reader, self.up_writer = upstream
        self.blackholed = False
        self._done = 0  # pumps that have ended
        self.mqtt = None  # decided by the first bytes the firmware sends (CONNECT or not)
        self._tasks = []
        self._unparsed = {True: bytearray(), False: bytearray()}  # by direction (inbound?)

    def start(self):
        self._tasks = [
            asyncio.ensure_future(self._pump(self.up_reader, self.local_writer, inbound=True)),
            asyncio.ensure_future(self._pump(self.local_reader, self.up_writer, inbound=False)),
        ]

    def abort(self):
        """Tear both sides down abruptly (no FIN handshake, no MQTT DISCONNECT)."""
        for writer in (self.local_writer, self.up_writer):
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        self.path._forget(self)

    def freeze(self):
        """Stop both directions where they are, leave the broker's side open and silent (no
        FIN), drop the board's side; returns the broker side's writer, for ``restore``."""
        for task in self._tasks:
            task.cancel()
        self.local_writer.transport.abort()
        self.path._forget(self)
        return self.up_writer

    async def _pump(self, reader, writer, inbound):
        # Without latency, bytes are written straight through (the cheap path: hundreds of
        # receivers share this process). With latency, a sender task delivers each chunk at
        # its due time, in order.
        queue = asyncio.Queue()
        unsent = [0]  # chunks queued and not yet written: direct writes must not overtake them
        sender = None
        try:
            while True:
                data = await reader.read(_READ_CHUNK)
                if not data:
                    break
                if not self.path.up:
                    self.blackholed = True
                    continue
                if not inbound and self.mqtt is None:
                    self.mqtt = _is_mqtt_connect(data)
                data = self._count(data, inbound)
                if not data:
                    continue
                if self.path.latency_ms or unsent[0]:
                    if sender is None:
                        sender = asyncio.ensure_future(self._send(queue, writer, unsent))
                    unsent[0] += 1
                    queue.put_nowait((time.monotonic() + self.path.latency_ms / 1000.0, data))
                else:
                    writer.write(data)
                    await writer.drain()
            # The source closed: deliver what is queued, then close the other side gracefully
            # (a FIN, not a reset), which in turn ends the pump of the opposite direction.
            if sender is not None:
                queue.put_nowait(None)
                await sender
            writer.close()
        except (ConnectionError, OSError):
            self.abort()
        finally:
            if sender is not None:
                sender.cancel()
            self._done += 1
            if self._done == 2:
                self.path._forget(self)

    async def _send(self, queue, writer, unsent):
        while True:
            item = await queue.get()
            if item is None:
                return
            due, data = item
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.path.up:
                writer.write(data)
                await writer.drain()
            unsent[0] -= 1

    def _count(self, data, inbound):
        """Count ``data`` on the path; return what goes on (QoS-0 PUBLISHes from the broker
        dropped at the path's loss rate, everything else whole and in order)."""
        path = self.path
        if inbound:
            path.bytes_in += len(data)
        else:
            path.bytes_out += len(data)
        if not self.mqtt:
            if inbound:
                path.packets_in += 1
                path.other_bytes_in += len(data)
            else:
                path.packets_out += 1
                path.other_bytes_out += len(data)
            return data
        out = bytearray()
        direction = "in" if inbound else "out"
        packets, garbage = self._split(data, inbound)
        for packet in packets:
            if inbound:
                path.packets_in += 1
            else:
                path.packets_out += 1
            if path.on_packet is not None:
                path.on_packet(direction, packet)
            if inbound and is_qos0_publish(packet[0]) and path._lose():
                path.dropped_publishes += 1
            else:
                out += packet
        return bytes(out + garbage)

    def _split(self, data, inbound):
        """``(whole MQTT packets, bytes that cannot be MQTT)`` out of this direction's stream
        so far; the second passes on untouched and uncounted as packets."""
        buf = self._unparsed[inbound]
        buf += data
        packets = []
        garbage = b""
        while buf:
            try:
                length = mqtt_packet_length(buf)
            except ValueError:
                garbage = bytes(buf)
                buf.clear()
                break
            if length is None:
                break
            packets.append(bytes(buf[:length]))
            del buf[:length]
        return packets, garbage
