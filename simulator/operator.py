"""A small scripted operator: the head-end's device-facing half, for tests and the demo.

It connects to the broker with paho-mqtt (its own network thread, so its timestamps do not
wait for the receivers' event loop), answers every time-sync request with true time, signs
commands per device with a growing counter, and collects what the receivers report (births,
deaths, heartbeats, events). Tests drive it with ``play_at``, ``emergency``, ``stop`` ... and
wait on what comes back with ``wait_for`` (blocking) or ``until`` (async).
"""

import asyncio
import itertools
import threading
import time

import paho.mqtt.client as mqtt

from protocol import messages, topics
from protocol.errors import ProtocolError
from protocol.signing import key_from_hex

DEFAULT_EXPIRY_MS = 30000


def now_ms():
    return int(time.time() * 1000)


class DeviceInfo:
    """What the operator knows of one receiver: its key, codec and zone."""

    def __init__(self, device_id, key_hex, codec="mp3", zone="", name=""):
        self.id = device_id
        self.key_hex = key_hex
        self.key = key_from_hex(key_hex)
        self.codec = codec
        self.zone = zone
        self.name = name or device_id


class Received:
    """One message from a receiver, with the true time (s) it reached the operator."""

    __slots__ = ("device", "leaf", "msg", "at")

    def __init__(self, device, leaf, msg, at):
        self.device = device
        self.leaf = leaf
        self.msg = msg
        self.at = at

    def get(self, key, default=None):
        return self.msg.get(key, default)

    def __repr__(self):
        return "<%s %s %.3f %r>" % (self.device, self.leaf, self.at, self.msg)


class SentCommand:
    __slots__ = ("device", "kind", "topic", "payload", "at")

    def __init__(self, device, kind, topic, payload, at):
        self.device = device
        self.kind = kind
        self.topic = topic
        self.payload = payload
        self.at = at  # true time (s) of publish


class Operator:
    """``Operator(site, devices, host, port)``; ``devices`` is a list of DeviceInfo."""

    def __init__(self, site, devices, host="127.0.0.1", port=1883, username=None,
                 password=None, client_id=None, answer_time=True):
        self.site = site
        self.devices = {d.id: d for d in devices}
        self.host = host
        self.port = port
        self.answer_time = answer_time
        self._lock = threading.Lock()
        self._counters = {}
        self._ids = itertools.count(1)
        self.events = []          # Received, leaf "evt"
        self._events_by_device = {}
        self.births = []          # Received, leaf "status", k == "birth"
        self.deaths = []
        self.heartbeats = {}      # device -> last Received heartbeat
        self.time_requests = 0
        self.malformed = []       # (topic, payload, reason): what the operator could not read
        self.sent = {}            # command id -> SentCommand
        self.connected = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=client_id or "loaxa-op-%d" % id(self))
        if username:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect

    # -- connection ------------------------------------------------------------------------

    def start(self, timeout=10.0):
        self._client.reconnect_delay_set(0.1, 1.0)
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self.connected.wait(timeout):
            self.close()
            raise RuntimeError("operator could not connect to %s:%d" % (self.host, self.port))
        return self

    def close(self):
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            return
        client.subscribe(topics.uplink_filter(self.site, "+"), qos=1)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()

    # -- what comes in ---------------------------------------------------------------------

    def _on_message(self, client, userdata, message):
        arrived = time.time()
        parsed = topics.parse(message.topic)
        if parsed is None or parsed[1] != "dev":
            return
        device, leaf = parsed[2], parsed[3]
        if leaf == topics.TIME_REQUEST:
            self._answer_time(device, message.payload, arrived)
            return
        if not message.payload:
            return  # a retained status being cleared
        info = self.devices.get(device)
        try:
            if info is None:
                raise ProtocolError("unknown-device")
            msg = messages.open_report(info.key, leaf, message.payload)
        except ProtocolError as exc:
            with self._lock:
                self.malformed.append((message.topic, message.payload, exc.reason))
            return
        received = Received(device, leaf, msg, arrived)
        with self._lock:
            if leaf == topics.EVENT:
                self.events.append(received)
                self._events_by_device.setdefault(device, []).append(received)
            elif leaf == topics.HEARTBEAT:
                self.heartbeats[device] = received
            elif leaf == topics.STATUS:
                (self.births if msg.get("k") == "birth" else self.deaths).append(received)

    def _answer_time(self, device, payload, arrived):
        info = self.devices.get(device)
        if info is None or not self.answer_time:
            return
        try:
            t0 = messages.open_time_request(payload)
        except ProtocolError:
            return
        self.time_requests += 1
        t1 = int(arrived * 1000)
        reply = messages.time_reply(info.key, device, t0, t1, now_ms())
        self._client.publish(topics.device_topic(self.site, device, topics.TIME), reply, qos=0)

    # -- commands --------------------------------------------------------------------------

    def _next_counter(self, device):
        with self._lock:
            ctr = messages.next_counter(self._counters.get(device, 0), now_ms())
            self._counters[device] = ctr
            return ctr

    def send(self, device, kind, args, exp_ms=None, ctr=None, cmd_id=None, key=None):
        """Sign and publish one command (QoS 1); return its id. Overrides exist for tests."""
        info = self.devices[device]
        cmd_id = cmd_id or "c%d" % next(self._ids)
        ctr = ctr if ctr is not None else self._next_counter(device)
        exp = exp_ms if exp_ms is not None else now_ms() + DEFAULT_EXPIRY_MS
        payload = messages.sign_command(key or info.key, device, kind, args, ctr, exp, cmd_id)
        topic = topics.device_topic(self.site, device, topics.CMD)
        with self._lock:
            self.sent[cmd_id] = SentCommand(device, kind, topic, payload, time.time())
        self.publish_raw(topic, payload, qos=1)
        return cmd_id

    def replay(self, cmd_id):
        """Publish a command's exact bytes again, as an attacker who recorded it would."""
        sent = self.sent[cmd_id]
        self.publish_raw(sent.topic, sent.payload, qos=1)

    def publish_raw(self, topic, payload, qos=1, retain=False):
        # Nothing returned: paho's MQTTMessageInfo cannot cross to an OperatorProcess caller.
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def media_args(self, device, media):
        """The url/sha/size/dur/codec/rate of ``media`` (a MediaItem) in this device's codec."""
        info = self.devices[device]
        return media.args_for(info.codec)

    def play_at(self, devices, media, at_ms=None, prio=messages.PRIO_NORMAL, bid=None, vol=None,
                exp_ms=None):
        """Tell each device to play ``media`` at ``at_ms`` (network time), or now if None.

        Returns the broadcast id (the same on every device)."""
        bid = bid or "b%d" % next(self._ids)
        for device in devices:
            args = self.media_args(device, media)
            args["bid"] = bid
            args["prio"] = prio
            if at_ms is not None:
                args["at"] = int(at_ms)
            if vol is not None:
                args["vol"] = vol
            self.send(device, messages.PLAY, args, exp_ms=exp_ms)
        return bid

    def emergency(self, devices, media, vol=None):
        return self.play_at(devices, media, None, prio=messages.PRIO_EMERGENCY, vol=vol)

    def stream(self, devices, sid, sno, key_hex, codec, rate, prio=messages.PRIO_LIVE,
               bid=None):
        """Tell each device to play live stream ``sid`` of ``codec`` (frames follow on its
        stream topic). Returns the broadcast id."""
        bid = bid or "b%d" % next(self._ids)
        for device in devices:
            self.send(device, messages.STREAM, {"bid": bid, "sid": sid, "sno": sno,
                                                "key": key_hex, "codec": codec, "rate": rate,
                                                "prio": prio})
        return bid

    def fetch(self, devices, media):
        return [self.send(d, messages.FETCH, self.media_args(d, media)) for d in devices]

    def stop(self, devices, bid=None):
        args = {"bid": bid} if bid else {}
        return [self.send(d, messages.STOP, dict(args)) for d in devices]

    def set_volume(self, devices, vol):
        return [self.send(d, messages.VOLUME, {"vol": vol}) for d in devices]

    # -- queries ---------------------------------------------------------------------------

    def events_of(self, device=None, kind=None, **fields):
        """Events received so far, filtered by device, kind and exact field values."""
        with self._lock:
            found = list(self.events if device is None else self._events_by_device.get(device, ()))
        out = []
        for ev in found:
            if device is not None and ev.device != device:
                continue
            if kind is not None and ev.msg.get("k") != kind:
                continue
            if any(ev.msg.get(k) != v for k, v in fields.items()):
                continue
            out.append(ev)
        return out

    def births_of(self, device):
        with self._lock:
            return [b for b in self.births if b.device == device]

    def ack_of(self, cmd_id):
        """The ack event (``ok`` true or false) for a command id, or None."""
        for ev in self.events_of(kind=messages.EV_ACK):
            if ev.msg.get("cmd") == cmd_id:
                return ev
        return None

    def proof_of_play(self, bid, ids, reason=messages.END_FINISHED):
        """Devices in ``ids`` that reported both started and ended(``reason``) for ``bid``."""
        return [d for d in ids if self.events_of(d, messages.EV_STARTED, bid=bid)
                and self.events_of(d, messages.EV_ENDED, bid=bid, reason=reason)]

    def sent_ids(self):
        """Ids of every command sent so far, in order."""
        with self._lock:
            return list(self.sent)

    def ack_latencies_ms(self, cmd_ids):
        """Publish-to-ack time (ms) of each acknowledged command in ``cmd_ids``."""
        out = []
        for cmd_id in cmd_ids:
            ack = self.ack_of(cmd_id)
            if ack is not None:
                out.append((ack.at - self.sent[cmd_id].at) * 1000.0)
        return out

    def wait_for(self, predicate, timeout=10.0, interval=0.02):
        """Block until ``predicate()`` is true; return its value, or raise TimeoutError."""
        deadline = time.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.time() > deadline:
                raise TimeoutError("condition not met within %.1f s" % timeout)
            time.sleep(interval)

    async def until(self, predicate, timeout=10.0, interval=0.02):
        """``wait_for`` for code running in the receivers' event loop."""
        deadline = time.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.time() > deadline:
                raise TimeoutError("condition not met within %.1f s" % timeout)
            await asyncio.sleep(interval)


# -- the operator in a process of its own ------------------------------------------------------

def _serve_operator(conn, args, kwargs):
    op = Operator(*args, **kwargs)
    try:
        op.start()
        conn.send(("ok", None))
        while True:
            request = conn.recv()
            if request is None:
                break
            name, call_args, call_kwargs = request
            try:
                conn.send(("ok", getattr(op, name)(*call_args, **call_kwargs)))
            except Exception as exc:
                conn.send(("error", repr(exc)))
    except Exception as exc:
        conn.send(("error", repr(exc)))
    finally:
        op.close()


class OperatorProcess:
    """An ``Operator`` in a child process. Its methods are called through a pipe (arguments
    and results pickled): ``op.play_at(...)`` or ``op.call("play_at", ...)``; attributes are
    not reachable, only methods.

    For large simulated fleets: the head-end is another machine in real life, and here paho's
    thread would otherwise compete with hundreds of receivers for one interpreter lock,
    delaying their event loop exactly when they all start playing.
    """

    def __init__(self, *args, **kwargs):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve_operator, args=(child, args, kwargs), daemon=True)
        self._proc.start()
        self._lock = threading.Lock()
        self._reply()

    def _reply(self):
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError("operator process: %s" % value)
        return value

    def call(self, name, *args, **kwargs):
        with self._lock:
            self._conn.send((name, args, kwargs))
            return self._reply()

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.call(name, *args, **kwargs)

    async def until(self, predicate, timeout=10.0, interval=0.1):
        return await Operator.until(self, predicate, timeout, interval)

    def close(self):
        try:
            self._conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.terminate()
