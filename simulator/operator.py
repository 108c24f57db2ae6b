"""A small scripted operator: the head-end's device-facing half, for tests and the demo.

It connects to the broker with paho-mqtt (its own network thread, so its timestamps do not
wait for the receivers' event loop) and drives receivers through the head-end's own planning
(headend/planning.py) with the head-end's ``Settings``: commands signed and expiring as the
head-end signs them, play/fetch arguments pointing at the head-end's media route, emergency
timing and time replies by the head-end's rules. What it keeps itself is what the head-end
keeps in its database: a counter per device (``protocol.messages.next_counter``), and what the
receivers report (births, deaths, heartbeats, events). Tests drive it with ``play_at``,
``emergency``, ``stop`` ... and wait on what comes back with ``wait_for`` (blocking) or
``until`` (async).
"""

import asyncio
import itertools
import threading
import time

import paho.mqtt.client as mqtt

from headend import planning
from headend.planning import now_ms
from headend.settings import Settings
from protocol import messages, topics
from protocol.errors import ProtocolError
from protocol.signing import key_from_hex


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
    """``Operator(site, devices, host, port)``; ``devices`` is a list of DeviceInfo.
    ``settings``: the head-end's configuration it plans with (command expiry, leads,
    emergency volume, ``public_base_url`` of the media server); default ``Settings()``.
    Commands go to ``site``'s topics."""

    def __init__(self, site, devices, host="127.0.0.1", port=1883, username=None,
                 password=None, client_id=None, answer_time=True, settings=None):
        self.site = site
        self.settings = settings or Settings(site_id=site)
        self.devices = {d.id: d for d in devices}
        self.host = host
        self.port = port
        self.answer_time = answer_time
        self._lock = threading.Lock()
        self._counters = {}
        self._ids = itertools.count(1)
        self.events = []          # Received, leaf "evt"
        self._events_by_device = {}
        self.births = []          # Received, leaf "status", k == messages.BIRTH
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
                (self.births if msg.get("k") == messages.BIRTH else self.deaths).append(received)

    def _answer_time(self, device, payload, arrived):
        info = self.devices.get(device)
        if info is None or not self.answer_time:
            return
        try:
            reply = planning.answer_time_request(info.key, site_id=self.site, device_id=device,
                                                 request=payload, arrived_ms=int(arrived * 1000),
                                                 clock=now_ms)
        except ProtocolError:
            return
        self.time_requests += 1
        self._client.publish(reply.topic, reply.payload, qos=reply.qos)

    # -- commands --------------------------------------------------------------------------

    def _next_counter(self, device):
        with self._lock:
            ctr = messages.next_counter(self._counters.get(device, 0), now_ms())
            self._counters[device] = ctr
            return ctr

    def send(self, device, kind, args, exp_ms=None, ctr=None, cmd_id=None, key=None):
        """Sign and publish one command as the head-end does; return its id.

        Overrides, for tests of the receiver's refusals: ``ctr`` (a used or older counter),
        ``exp_ms`` (the expiry of a command signed ``command_ttl_s`` before it: in the past,
        an expired one), ``key`` (a wrong key), ``cmd_id``."""
        info = self.devices[device]
        cmd_id = cmd_id or "c%d" % next(self._ids)
        ctr = ctr if ctr is not None else self._next_counter(device)
        ttl_s = self.settings.command_ttl_s
        signed_at = now_ms() if exp_ms is None else int(exp_ms) - ttl_s * 1000
        out = planning.outgoing_command(key or info.key, site_id=self.site, device_id=device,
                                        kind=kind, args=args, ctr=ctr, now_ms=signed_at,
                                        ttl_s=ttl_s, cmd_id=cmd_id)
        with self._lock:
            self.sent[cmd_id] = SentCommand(device, kind, out.topic, out.payload, time.time())
        self.publish_raw(out.topic, out.payload, qos=out.qos)
        return cmd_id

    def replay(self, cmd_id):
        """Publish a command's exact bytes again, as an attacker who recorded it would."""
        sent = self.sent[cmd_id]
        self.publish_raw(sent.topic, sent.payload, qos=1)

    def publish_raw(self, topic, payload, qos=1, retain=False):
        # Nothing returned: paho's MQTTMessageInfo cannot cross to an OperatorProcess caller.
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def rendition_for(self, device, media):
        """The rendition of ``media`` (a simulator.media.MediaItem) this device decodes."""
        info = self.devices[device]
        rendition = planning.rendition_for([info.codec], media.renditions.values())
        if rendition is None:
            raise ValueError("media item %s has no %s rendition for %s"
                             % (media.id, info.codec, device))
        return rendition

    def media_args(self, device, media):
        """The item/url/sha/size/dur/codec/rate of ``media`` in this device's codec, as the
        head-end puts them in a ``play`` or ``fetch`` command."""
        return planning.media_fields(self.settings, media.id, self.rendition_for(device, media))

    def _play(self, devices, media, at_for, prio, bid, vol, exp_ms, lead=None):
        bid = bid or "b%d" % next(self._ids)
        for device in devices:
            rendition = self.rendition_for(device, media)
            args = planning.play_fields(self.settings, bid=bid, item_id=media.id,
                                        rendition=rendition, at_ms=at_for(device, rendition),
                                        prio=prio)
            if vol is not None:
                args["vol"] = vol
            if lead is not None and args["at"] is None:
                args["lead"] = planning.lead_fields(lead.id, self.rendition_for(device, lead))
            self.send(device, messages.PLAY, args, exp_ms=exp_ms)
        return bid

    def play_at(self, devices, media, at_ms=None, prio=messages.PRIO_NORMAL, bid=None, vol=None,
                exp_ms=None):
        """Tell each device to play ``media`` at ``at_ms`` (network time, epoch ms), or "now"
        if None: the head-end's ``now_lead_ms`` from now, so all start together.

        Returns the broadcast id (the same on every device)."""
        at = int(at_ms) if at_ms is not None else planning.now_start_ms(self.settings, now_ms())
        return self._play(devices, media, lambda device, rendition: at, prio, bid, vol, exp_ms)

    def emergency(self, devices, media, vol=None, lead=None):
        """An emergency now, timed as the head-end times one: together at the emergency lead
        on the devices that reported holding the media, as soon as fetched on the others,
        which open with ``lead`` (the pinned alert tone, a simulator.media.MediaItem) if
        given, as the head-end's play does."""
        now = now_ms()

        def at_for(device, rendition):
            return planning.emergency_at_ms(self.settings, now, self.holds(device, rendition))

        return self._play(devices, media, at_for, messages.PRIO_EMERGENCY, None, vol, None,
                          lead)

    def holds(self, device, rendition):
        """Whether ``device`` reported fetching ``rendition`` (the head-end's cache table)."""
        return bool(self.events_of(device, messages.EV_FETCHED, sha=rendition.sha256))

    def stream(self, devices, sid, sno, key_hex, codec, rate, prio=messages.PRIO_LIVE,
               bid=None):
        """Tell each device to play live stream ``sid`` of ``codec`` (frames follow on its
        stream topic). Returns the broadcast id."""
        bid = bid or "b%d" % next(self._ids)
        for device in devices:
            self.send(device, messages.STREAM, planning.stream_fields(
                bid=bid, sid=sid, sno=sno, key_hex=key_hex, codec=codec, rate=rate, prio=prio))
        return bid

    def schedule(self, devices, plays, from_ms=None, hours=48, prio=messages.PRIO_NORMAL):
        """Send each device its schedule window from ``from_ms`` (None: now) for ``hours``, as
        the head-end builds one (planning.schedule_fields): ``plays`` is [(bid, media,
        at_ms)]. The device replaces what it holds in the window. Returns the command ids."""
        start = now_ms() if from_ms is None else int(from_ms)
        out = []
        for device in devices:
            args = planning.schedule_fields(from_ms=start, to_ms=start + hours * 3600000, plays=[
                planning.play_fields(self.settings, bid=bid, item_id=media.id,
                                     rendition=self.rendition_for(device, media),
                                     at_ms=int(at), prio=prio)
                for bid, media, at in plays])
            out.append(self.send(device, messages.SCHEDULE, args))
        return out

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
