"""MQTT 3.1.1 client for MicroPython asyncio streams, also run unchanged under CPython asyncio.

The stream comes from ``open_connection`` (the board's Platform, or the simulator's network
path), time from ``ticks_ms``/``ticks_diff``: no sockets, no Wi-Fi, no module-level state here,
so 200 receivers can share one CPython process. Packets are built and parsed by
firmware/mqtt_packets.py; this module is the resilient shell around them (in the spirit of
peterhinch's mqtt_as): keepalive, reconnect with jittered exponential backoff, resubscribe,
QoS 1 acknowledgements, and no exception escapes on anything the network or broker does.

Lifecycle of one connection ("session" below):
  [resolve, once per connect cycle] -> open stream (TCP, or TLS verified by the platform's
  context) -> CONNECT -> CONNACK -> reader + keepalive tasks -> resubscribe (SUBACK)
  -> await on_connect() -> connected -> ... -> something sets ``_down`` (EOF, malformed packet,
  keepalive timeout, write error, abort(), close()) -> tasks cancelled, waiters released,
  stream closed -> on_disconnect(reason) -> backoff -> again.

DNS, once per connect cycle. A connect cycle is the run of attempts from the moment a connection
is needed (run() starting, or the loss of one that was up) until one is accepted. Given
``resolve`` (the platform's), the client asks it for the broker's address at the cycle's first
attempt and dials that address on every further attempt of the cycle: on the board a lookup
blocks the event loop (MicroPython has no asynchronous DNS), so a link that keeps failing must
not cost one per attempt. A connection that was up and is lost starts a new cycle, so a broker
that moved to another address is followed on the next reconnect; so does an address that failed
``_CYCLE_FAILURES`` attempts in a row (the name may point elsewhere now). A lookup that fails
keeps the last address that resolved for the cycle (a DNS server down does not cut a receiver
off a broker it knows), and is asked again when that cycle ends. Without ``resolve`` the host
name is dialled as it is (the platform's dial resolves it, every attempt).

TLS: ``ssl`` is the platform's client context (firmware/platform.py ``tls_context``: the site's
CA, certificate required) and ``server_hostname`` the name the broker's certificate must carry,
passed to every dial because the dial goes to an address. A failure of the TLS layer (refused
certificate, failed handshake) counts in ``stats["tls_failures"]`` as well as
``connect_failures``. Nothing here logs, and neither ``stats`` nor any error kept holds the
password or a key.
"""

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

import random

from firmware.mqtt_packets import (
    CONNACK,
    CONNACK_REFUSALS,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PINGRESP,
    PUBACK,
    PUBLISH,
    SUBACK,
    SUBACK_FAILURE,
    UNSUBACK,
    add_length_byte,
    check_fixed_header,
    decode_connack,
    decode_packet_id,
    decode_publish,
    decode_suback,
    encode_connect,
    encode_puback,
    encode_publish_head,
    encode_subscribe,
    encode_unsubscribe,
    malformed,
)
from protocol.errors import ProtocolError

_INITIAL_BUFFER = 512        # receive buffer; grown once to max_packet when a packet needs it
_SKIP_CHUNK = 512            # oversized packets are read and dropped this much at a time
_CLOSE_WAIT_S = 1            # how long to wait for a closing stream before aborting it
_JOIN_MAX = 1024             # payloads up to this are sent in one write with their head
_PING_ANSWER_MS = 10000      # time left for a PINGRESP before the link counts as dead
_CYCLE_FAILURES = 3          # failed attempts on one resolved address before the name is asked
                             # again (with the default backoff: after ~1.5 s, then every ~90 s)
_MBEDTLS_CODES_BELOW = -256  # MicroPython's mbedtls errors are OSErrors with codes below this

# How a session ended, for the backoff in run().
_FAILED = 0     # could not open the stream or complete CONNECT/CONNACK
_REFUSED = 1    # the broker answered CONNACK with a refusal (bad credentials, not authorized...)
_WAS_UP = 2     # connected, then lost


def _default_random_below(n):
    return random.getrandbits(30) % n


def _tls_failure(exc):
    """Whether a failed attempt was the TLS layer's doing (certificate refused, handshake failed)
    rather than TCP's. MicroPython's mbedtls raises ValueError carrying the reasons a
    certificate was refused, or OSError with an mbedtls code (below -256; errors of the socket
    under it come out as the positive errnos they are); CPython raises ssl.SSLError, an OSError
    whose class name says so (its certificate errors are ValueErrors as well)."""
    if isinstance(exc, ProtocolError):  # a malformed CONNACK: MQTT's, not TLS's
        return False
    if isinstance(exc, ValueError):
        return True
    if isinstance(exc, OSError):
        code = exc.args[0] if exc.args else 0
        if isinstance(code, int) and code < _MBEDTLS_CODES_BELOW:
            return True
        return type(exc).__name__.startswith("SSL")
    return False


class MQTTClient:
    """One receiver's MQTT connection, kept up by run().

    Callbacks: ``on_message(topic, payload, retained)`` (sync; ``payload`` is a memoryview into
    a reused buffer, valid only during the call: copy what you keep); ``await on_connect()``
    after every accepted CONNECT and resubscribe, before ``connected`` turns True (publishing
    from it works); ``on_disconnect(reason)`` (sync) when a connection that was accepted ends,
    reason one of "closed", "aborted", "stopped" (run() cancelled), "eof", "keepalive_timeout", "write_error",
    "read_error", "suback_timeout", "malformed: <why>". Failed attempts to connect call no
    callback; they show in ``stats`` ("connect_failures", "refused", "dns_failures",
    "tls_failures") and ``last_refusal``.

    ``open_connection(address, port, ssl)`` (and ``server_hostname=`` when ``ssl`` is given)
    opens a stream, as the platform's does; ``resolve(host, port)`` (a coroutine, optional)
    gives the address to dial, asked once per connect cycle (module docstring).
    """

    def __init__(self, client_id, host, port=1883, *, open_connection, ticks_ms, ticks_diff,
                 user=None, password=None, keepalive=30, will=None, ssl=None,
                 server_hostname=None, resolve=None,
                 on_message=None, on_connect=None, on_disconnect=None,
                 random_below=None, backoff_min_ms=500, backoff_max_ms=30000, max_packet=20000):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.server_hostname = server_hostname  # TLS: the name the broker's certificate carries
        self.user = user
        self.password = password
        self.keepalive = keepalive          # seconds; 0 turns keepalive off
        self.will = will                    # read again before every CONNECT
        self.ssl = ssl
        self.on_message = on_message
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self.max_packet = max_packet        # largest remaining length accepted from the broker
        self.connect_timeout_ms = 10000     # stream open, and CONNECT to CONNACK, each
        self.ack_timeout_ms = 10000         # SUBACK/UNSUBACK wait
        self.last_refusal = None            # e.g. "bad_credentials", after a CONNACK refusal
        self.on_refused = None              # called with that reason; True: credentials
                                            # changed, try again soon
        self.stats = {
            "connects": 0, "disconnects": 0, "connect_failures": 0, "refused": 0,
            "malformed": 0, "oversized": 0, "suback_failures": 0, "pings": 0,
            "callback_errors": 0, "rx": 0, "tx": 0, "bytes_in": 0, "bytes_out": 0,
            "resolves": 0, "dns_failures": 0, "tls_failures": 0,
        }
        self._open_connection = open_connection
        self._resolve_host = resolve
        self._address = None                # what this connect cycle dials (None: ask resolve)
        self._known_address = None          # the last address a lookup gave
        self._address_failures = 0          # failed attempts in a row on self._address
        self._io_error = None               # what a write of the current attempt raised
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self._random_below = random_below or _default_random_below
        self._subscriptions = {}            # topic -> qos, re-sent after every reconnect
        self._pending = {}                  # packet id -> [Event, result], until acknowledged
        self._last_packet_id = 0
        self._buf = bytearray(min(_INITIAL_BUFFER, max_packet))
        self._view = memoryview(self._buf)
        self._reader = None
        self._writer = None
        # One writer at a time: a packet's bytes must not interleave with another's, and
        # MicroPython's asyncio refuses two tasks waiting to write (drain) on one stream.
        self._write_lock = asyncio.Lock()
        self._accepted = False               # CONNACK accepted on the current stream
        self._connected = False              # ... and resubscribed and on_connect done
        self._connected_event = asyncio.Event()
        self._down = asyncio.Event()        # set when the current session must end
        self._down.set()
        self._down_reason = ""
        self._wake = asyncio.Event()        # cuts the backoff sleep short on close()
        self._stopped = asyncio.Event()     # run() has returned
        self._running = False
        self._closing = False
        self._last_rx = 0
        self._last_tx = 0
        self._last_ping = 0

    # -- public API ------------------------------------------------------------------------

    @property
    def connected(self):
        return self._connected

    async def run(self):
        """Connect, and reconnect forever with jittered exponential backoff until close().
        A close() that comes before run() has started makes it return at once; after run()
        has returned, it may be called again."""
        if self._running:
            return
        self._running = True
        self._stopped.clear()
        delay = self.backoff_min_ms
        try:
            while not self._closing:
                outcome = await self._session()
                if self._closing:
                    break
                if outcome == _WAS_UP:
                    delay = self.backoff_min_ms
                elif outcome == _REFUSED:
                    # Wrong credentials will not fix themselves in a second: do not hammer
                    # the broker (or its log) from every pole.
                    delay = self.backoff_max_ms
                await self._sleep_unless_closed(self._jittered(delay))
                delay = min(delay * 2, self.backoff_max_ms)
        finally:
            # Also when run() is cancelled mid-connect: never leave a stream open behind us.
            self._drop("stopped")
            await self._close_stream()
            self._running = False
            self._closing = False
            self._stopped.set()

    async def close(self):
        """DISCONNECT cleanly (the broker discards the will) and stop run()."""
        self._closing = True
        self._wake.set()
        if self._session_up():
            try:
                await asyncio.wait_for(self._send(DISCONNECT_PACKET), _CLOSE_WAIT_S)
            except Exception:
                pass
        self._drop("closed")  # also cuts a connection attempt in progress
        if self._running:
            try:
                await asyncio.wait_for(self._stopped.wait(), 2 * _CLOSE_WAIT_S + 1)
            except Exception:
                pass

    async def reconnect(self):
        """DISCONNECT cleanly (no will) and connect again soon with ``user``/``password``/
        ``will`` as they are now: how a rotation moves to its new credentials."""
        if self._session_up():
            try:
                await asyncio.wait_for(self._send(DISCONNECT_PACKET), _CLOSE_WAIT_S)
            except Exception:
                pass
        self._drop("reconnect")

    def abort(self):
        """Drop the connection without DISCONNECT, as a power cut would: the will fires.
        run() goes on and reconnects after its backoff."""
        self._drop("aborted")

    async def subscribe(self, topic, qos=0):
        """Remember the subscription (re-sent after every reconnect) and send it now if
        connected. True once the broker granted it; False if offline, refused or timed out."""
        qos = 1 if qos else 0
        self._subscriptions[topic] = qos
        if not self._session_up():
            return False
        packet_id, entry = self._new_pending()
        return await self._request(packet_id, entry, encode_subscribe(packet_id, [(topic, qos)]))

    async def unsubscribe(self, topic):
        self._subscriptions.pop(topic, None)
        if not self._session_up():
            return False
        packet_id, entry = self._new_pending()
        return await self._request(packet_id, entry, encode_unsubscribe(packet_id, [topic]))

    async def publish(self, topic, payload, qos=0, retain=False, timeout_ms=10000):
        """QoS 0: True once written; QoS 1: True once PUBACK arrives. False if not connected,
        lost or timed out; never raises on network errors (the caller's outbox retries)."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        elif payload is None:
            payload = b""
        qos = 1 if qos else 0
        if not self._session_up():
            return False
        packet_id, entry = self._new_pending() if qos else (0, None)
        head = encode_publish_head(topic, len(payload), qos, retain, packet_id)
        if not qos:
            try:
                return await asyncio.wait_for(self._send(head, payload), timeout_ms / 1000)
            except asyncio.TimeoutError:
                return False
        return await self._request(packet_id, entry, head, payload, timeout_ms)

    async def wait_connected(self, timeout_ms=None):
        if self._connected:
            return True
        try:
            if timeout_ms is None:
                await self._connected_event.wait()
            else:
                await asyncio.wait_for(self._connected_event.wait(), timeout_ms / 1000)
        except asyncio.TimeoutError:
            pass
        return self._connected

    # -- one connection ----------------------------------------------------------------------

    async def _session(self):
        self._down.clear()
        self._down_reason = ""
        self._io_error = None
        timeout_s = self.connect_timeout_ms / 1000
        address = await self._cycle_address(timeout_s)
        if address is None:  # no lookup answered yet, and none ever did
            self.stats["connect_failures"] += 1
            self._down.set()
            return _FAILED
        try:
            if self.ssl is None:
                opening = self._open_connection(address, self.port, None)
            else:
                opening = self._open_connection(address, self.port, self.ssl,
                                                server_hostname=self.server_hostname or self.host)
            self._reader, self._writer = await asyncio.wait_for(opening, timeout_s)
        except Exception as exc:
            self._attempt_failed(exc)
            self._down.set()
            return _FAILED
        now = self._ticks_ms()
        self._last_rx = self._last_tx = self._last_ping = now
        error = None
        try:
            code = await asyncio.wait_for(self._handshake(), timeout_s)
        except ProtocolError:
            self.stats["malformed"] += 1
            code = -1
        except Exception as exc:  # EOF, reset, timeout, TLS, or abort()/close() while connecting
            code = -1
            error = exc
        if code:
            if code > 0:
                self.stats["refused"] += 1
                self.last_refusal = CONNACK_REFUSALS[code]
                self._address_failures = 0  # the broker answered: the address is right
                if self.on_refused is not None:
                    try:
                        if self.on_refused(self.last_refusal):
                            self._drop("connect_failed")
                            await self._close_stream()
                            return _FAILED  # other credentials: no long backoff for them
                    except Exception:
                        self.stats["callback_errors"] += 1
            else:
                # On MicroPython the TLS handshake runs inside the first writes and reads, so a
                # refused certificate shows here (a write's error is kept by _send).
                self._attempt_failed(self._io_error or error)
            self._drop("connect_failed")
            await self._close_stream()
            return _REFUSED if code > 0 else _FAILED

        self.stats["connects"] += 1
        self._address_failures = 0
        self.last_refusal = None
        self._accepted = True
        tasks = [asyncio.create_task(self._read_loop())]
        if self.keepalive:
            tasks.append(asyncio.create_task(self._keepalive_loop()))
        try:
            if self._subscriptions and await self._resubscribe() is None:
                self._drop("suback_timeout")
            if self.on_connect is not None and not self._down.is_set():
                try:
                    await self.on_connect()
                except Exception:
                    self.stats["callback_errors"] += 1
            if not self._down.is_set():
                self._connected = True
                self._connected_event.set()
            await self._down.wait()
        finally:
            self._drop("stopped")  # only if run() itself was cancelled: else already down
            self._accepted = self._connected = False
            self._connected_event.clear()
            for task in tasks:
                task.cancel()
            self._release_waiters()
            self.stats["disconnects"] += 1
            if self.on_disconnect is not None:
                try:
                    self.on_disconnect(self._down_reason)
                except Exception:
                    self.stats["callback_errors"] += 1
            await self._close_stream()
            await asyncio.sleep(0)  # let the cancelled tasks finish before the next session
            self._end_cycle()  # the next connection is a new cycle: its name is asked again
        return _WAS_UP

    async def _cycle_address(self, timeout_s):
        """The address this attempt dials: the connect cycle's, resolved at its first attempt.
        None when the lookup failed and no earlier one ever answered."""
        if self._resolve_host is None:
            return self.host
        if self._address is not None:
            return self._address
        self.stats["resolves"] += 1
        try:
            address = await asyncio.wait_for(self._resolve_host(self.host, self.port), timeout_s)
        except Exception:
            self.stats["dns_failures"] += 1
            # The last address that resolved serves this cycle (the broker is likely still
            # there); with none, the next attempt asks again, after its backoff.
            self._address = self._known_address
            return self._address
        self._address = self._known_address = address
        return address

    def _attempt_failed(self, exc):
        """Count a failed attempt (stream not opened, or CONNECT not answered); end the cycle
        once its address failed _CYCLE_FAILURES times in a row."""
        self.stats["connect_failures"] += 1
        if self.ssl is not None and exc is not None and _tls_failure(exc):
            self.stats["tls_failures"] += 1
        self._address_failures += 1
        if self._address_failures >= _CYCLE_FAILURES:
            self._end_cycle()

    def _end_cycle(self):
        self._address = None
        self._address_failures = 0

    async def _handshake(self):
        """Send CONNECT, read CONNACK; return its return code (0 = accepted)."""
        will = self.will
        # Clean session: the broker keeps nothing for us between connections. A receiver keeps
        # its own outbox of reports (retried until acknowledged), and the head-end re-sends what
        # a receiver missed (schedule sync, emergency retries), so broker-side sessions would
        # only add per-device state on the broker and replay stale commands after an outage.
        packet = encode_connect(self.client_id, self.keepalive, self.user, self.password, will,
                                clean=True)
        if not await self._send(packet):
            raise EOFError
        first_byte, length = await self._read_packet(CONNACK)
        if length is None:
            raise malformed("oversized CONNACK")
        return decode_connack(self._view[:length])[1]

    async def _resubscribe(self):
        packet_id, entry = self._new_pending()
        packet = encode_subscribe(packet_id, list(self._subscriptions.items()))
        return await self._request(packet_id, entry, packet, None, self.ack_timeout_ms, None)

    def _session_up(self):
        """CONNACK accepted and not lost: requests may be sent (never before CONNECT is done)."""
        return self._accepted and not self._down.is_set()

    def _drop(self, reason):
        """End the current session (idempotent). Closing the stream at once makes the broker
        notice now (and fire the will), even before run() gets to its cleanup."""
        if self._down.is_set():
            return
        self._down_reason = reason
        self._down.set()
        writer = self._writer
        if writer is not None:
            try:
                writer.close()
            except Exception:
                pass

    async def _close_stream(self):
        writer = self._writer
        self._reader = self._writer = None
        if writer is None:
            return
        try:
            writer.close()
        except Exception:
            pass
        wait_closed = getattr(writer, "wait_closed", None)  # not in every MicroPython
        if wait_closed is None:
            return
        try:
            await asyncio.wait_for(wait_closed(), _CLOSE_WAIT_S)
        except Exception:
            # A peer that stopped reading keeps unsent bytes (and the socket) alive: cut it.
            transport = getattr(writer, "transport", None)  # CPython only
            if transport is not None:
                try:
                    transport.abort()
                except Exception:
                    pass

    def _release_waiters(self):
        """Wake everyone waiting for an acknowledgement of the lost session: they get False."""
        for entry in self._pending.values():
            entry[0].set()
        self._pending.clear()

    def _jittered(self, delay_ms):
        """``delay_ms`` +-50%, so a village of receivers does not reconnect in one burst."""
        return delay_ms // 2 + self._random_below(delay_ms + 1)

    async def _sleep_unless_closed(self, ms):
        self._wake.clear()
        if self._closing:
            return
        try:
            await asyncio.wait_for(self._wake.wait(), ms / 1000)
        except asyncio.TimeoutError:
            pass

    # -- writing -----------------------------------------------------------------------------

    async def _send(self, head, payload=None):
        """Write one packet (``head`` then ``payload``); False if the session is gone."""
        writer = self._writer
        if writer is None or self._down.is_set():
            return False
        try:
            async with self._write_lock:
                if writer is not self._writer or self._down.is_set():
                    return False  # the session ended while we waited for the lock
                size = len(head)
                if payload is None or not len(payload):
                    writer.write(head)
                elif len(payload) <= _JOIN_MAX:
                    # One write, so one TCP segment (and one TLS record): two small writes cost
                    # a second ~40-70 B of headers on 4G, and Nagle holds the second one back
                    # until the first is acknowledged. Telemetry and events are this small.
                    writer.write(head + payload)
                    size += len(payload)
                else:
                    # Large payloads are not copied; no await between the writes keeps the
                    # packet whole in the stream's buffer.
                    writer.write(head)
                    writer.write(payload)
                    size += len(payload)
                await writer.drain()
        except Exception as exc:  # OSError, or anything a broken transport (or TLS) raises
            self._io_error = exc
            self._drop("write_error")
            return False
        self.stats["tx"] += 1
        self.stats["bytes_out"] += size
        self._last_tx = self._ticks_ms()
        return True

    def _new_pending(self):
        """A fresh packet id (1..65535, not in use) and its waiter ``[Event, result]``."""
        packet_id = self._last_packet_id
        while True:
            packet_id = packet_id % 65535 + 1
            if packet_id not in self._pending:
                break
        self._last_packet_id = packet_id
        entry = [asyncio.Event(), None]
        self._pending[packet_id] = entry
        return packet_id, entry

    async def _request(self, packet_id, entry, head, payload=None, timeout_ms=None,
                       if_lost=False):
        """Send a packet that the broker acknowledges and wait for the acknowledgement.
        Returns the ack's result (True, or False for a refused SUBSCRIBE), or ``if_lost``
        when the session ends or the wait times out."""
        if timeout_ms is None:
            timeout_ms = self.ack_timeout_ms
        result = None
        try:
            result = await asyncio.wait_for(self._send_and_wait(entry, head, payload),
                                            timeout_ms / 1000)
        except asyncio.TimeoutError:
            pass
        finally:
            self._pending.pop(packet_id, None)
        return if_lost if result is None else result

    async def _send_and_wait(self, entry, head, payload):
        if not await self._send(head, payload):
            return None
        await entry[0].wait()
        return entry[1]

    def _resolve(self, packet_id, result):
        entry = self._pending.pop(packet_id, None)
        if entry is not None:  # else a late ack of a request that timed out: ignore
            entry[1] = result
            entry[0].set()

    # -- reading -----------------------------------------------------------------------------

    async def _read_into(self, view):
        """Fill ``view`` from the stream. MicroPython's Stream.readinto reads straight into the
        reused buffer; other streams (CPython) have readexactly only, so copy from that."""
        readinto = getattr(self._reader, "readinto", None)
        if readinto is None:
            view[:] = await self._reader.readexactly(len(view))
            return
        filled = 0
        while filled < len(view):
            n = await readinto(view[filled:] if filled else view)
            if n == 0:
                raise EOFError
            if n:  # None: nothing yet (TLS record not complete), wait again
                filled += n

    async def _read_packet(self, expected=None):
        """Read one packet into the receive buffer: ``(first_byte, body_length)``; body_length
        is None for an oversized packet that was read and dropped. The first byte is checked
        before the body is read, so garbage fails at once instead of waiting for a body that
        never comes."""
        view = self._view
        await self._read_into(view[:2])
        first_byte = view[0]
        if expected is not None and first_byte != expected:
            raise malformed("expected 0x%02x, got 0x%02x" % (expected, first_byte))
        check_fixed_header(first_byte)
        byte = view[1]
        length = add_length_byte(0, 0, byte)
        index = 1
        while byte & 0x80:
            await self._read_into(view[:1])
            byte = view[0]
            length = add_length_byte(length, index, byte)
            index += 1
        self._last_rx = self._ticks_ms()
        self.stats["rx"] += 1
        self.stats["bytes_in"] += 1 + index + length
        if length > len(self._buf):
            if length > self.max_packet:
                await self._skip(length)
                self._last_rx = self._ticks_ms()
                return first_byte, None
            # Grow once, straight to the largest size accepted, so the heap is not fragmented
            # by a series of ever larger buffers.
            self._buf = bytearray(self.max_packet)
            self._view = view = memoryview(self._buf)
        if length:
            await self._read_into(view[:length])
            self._last_rx = self._ticks_ms()
        return first_byte, length

    async def _skip(self, length):
        """Read and forget an oversized packet. The stream stays in step, so the connection is
        kept: dropping it would bring the same retained message back on every reconnect and
        cost a 4G receiver the download again and again."""
        self.stats["oversized"] += 1
        self.stats["malformed"] += 1
        view = self._view
        chunk = len(view)
        while length:
            n = length if length < chunk else chunk
            await self._read_into(view[:n])
            length -= n

    async def _read_loop(self):
        reason = "eof"
        try:
            while True:
                first_byte, length = await self._read_packet()
                if length is not None:
                    ack_id = self._dispatch(first_byte, self._view[:length])
                    if ack_id:
                        # Acknowledged after the handler ran: at-least-once, as QoS 1 promises.
                        await self._send(encode_puback(ack_id))
        except EOFError:
            reason = "eof"
        except ProtocolError as exc:
            self.stats["malformed"] += 1
            reason = "malformed: %s" % exc.detail
        except OSError:
            reason = "read_error"
        except Exception:  # a decoder bug must not kill the receiver: count and reconnect
            self.stats["malformed"] += 1
            reason = "read_error"
        self._drop(reason)

    def _dispatch(self, first_byte, body):
        """Act on one packet from the broker; return the packet id to PUBACK, or 0.
        Not a coroutine: most packets need no await, and each coroutine call costs heap."""
        kind = first_byte & 0xF0  # flags already checked by _read_packet
        if kind == PUBLISH:
            topic, qos, retained, packet_id, payload = decode_publish(first_byte, body)
            if self.on_message is not None:
                try:
                    self.on_message(topic, payload, retained)
                except Exception:
                    self.stats["callback_errors"] += 1
            return packet_id  # 0 for QoS 0
        if kind == PUBACK or kind == UNSUBACK:
            self._resolve(decode_packet_id(body), True)
        elif kind == SUBACK:
            packet_id, codes = decode_suback(body)
            failures = 0
            for code in codes:
                if code == SUBACK_FAILURE:
                    failures += 1
            self.stats["suback_failures"] += failures
            self._resolve(packet_id, failures == 0)
        elif kind == PINGRESP:
            if len(body):
                raise malformed("PINGRESP with a body")
        else:  # a second CONNACK
            raise malformed("unexpected packet 0x%02x" % first_byte)
        return 0

    # -- keepalive ---------------------------------------------------------------------------

    async def _keepalive_loop(self):
        """PINGREQ only when nothing went out, or nothing came in, for a whole keepalive (plus
        one check step); give up on the broker when nothing at all came from it for 1.5
        keepalives (MQTT's own server-side rule).

        Why not ping sooner: on a paid 4G link every packet costs ~40 B of TCP/IP (and ~29 B of
        TLS) whatever it carries. The receiver's heartbeat goes out every keepalive with QoS 1,
        and its PUBACK is the broker's sign of life, so an idle receiver whose heartbeats flow
        sends no ping at all (bench/bench_link_bytes.py measured a ping every 15 s costing more
        on the wire than the heartbeats themselves). The broker allows 1.5 keepalives of
        silence, so a ping at keepalive + one step is still in time. Short keepalives (a LAN,
        the tests) leave too little time for that ping's answer and keep pinging at half.
        """
        keepalive_ms = self.keepalive * 1000
        dead_ms = keepalive_ms * 3 // 2
        step_ms = max(50, min(1000, keepalive_ms // 4))
        quiet_ms = max(keepalive_ms // 2, min(keepalive_ms + step_ms, dead_ms - _PING_ANSWER_MS))
        ticks_ms = self._ticks_ms
        ticks_diff = self._ticks_diff
        while not self._down.is_set():
            await asyncio.sleep(step_ms / 1000)
            now = ticks_ms()
            if ticks_diff(now, self._last_rx) >= dead_ms:
                self._drop("keepalive_timeout")
                return
            quiet_out = ticks_diff(now, self._last_tx) >= quiet_ms
            quiet_in = ticks_diff(now, self._last_rx) >= quiet_ms
            if quiet_out or (quiet_in and ticks_diff(now, self._last_ping) >= quiet_ms):
                self._last_ping = now
                self.stats["pings"] += 1
                try:
                    # Bounded: a stuck writer must not stop the dead-broker check above.
                    await asyncio.wait_for(self._send(PINGREQ_PACKET), step_ms / 1000)
                except asyncio.TimeoutError:
                    pass
