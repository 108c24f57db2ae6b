"""What the head-end sends receivers, as pure functions: no database, no broker, no clock.

The head-end's services call these with what they looked up (a receiver's key, its counter,
a rendition row); the simulator's scripted operator (simulator/operator.py) calls the same
functions with what it holds in memory, so the fleet tests check the firmware against the
head-end's own signing, expiry, media arguments, emergency timing and time replies.

A rendition is anything with the fields of the head-end's ``Rendition`` row
(headend/models.py): ``codec``, ``ext``, ``sha256``, ``size``, ``duration_ms``, ``rate``.
``settings`` is the head-end's ``Settings`` (headend/settings.py).
"""

import hashlib
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from protocol import messages, topics
from protocol.signing import HmacKey

QOS_COMMAND = 1   # a command must arrive: the broker keeps it for a receiver briefly away
QOS_TIME_REPLY = 0  # a late time reply is worse than none: the receiver asks again


class RenditionLike(Protocol):
    codec: str
    ext: str
    sha256: str
    size: int
    duration_ms: int
    rate: int


@dataclass
class Outgoing:
    """A signed message ready to publish: MQTT topic, payload and QoS; ``ctr``, a command's
    counter (0 for anything else), orders it among its receiver's (headend/commands.py)."""

    device_id: str
    topic: str
    payload: bytes
    qos: int = QOS_COMMAND
    ctr: int = 0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_command_id(prefix: str) -> str:
    return "%s-%s" % (prefix, secrets.token_hex(4))


# -- commands ------------------------------------------------------------------------------

def command_expiry_ms(now_ms: int, ttl_s: int) -> int:
    """When a command signed at ``now_ms`` stops being valid: a receiver refuses it after."""
    return now_ms + ttl_s * 1000


def outgoing_command(key: bytes | HmacKey, *, site_id: str, device_id: str, kind: str,
                     args: dict[str, Any], ctr: int, now_ms: int, ttl_s: int,
                     cmd_id: str, checked: bool = False) -> Outgoing:
    """One command signed with the device's key, on its command topic. ``ctr`` comes from
    ``protocol.messages.next_counter``; the command expires ``ttl_s`` after ``now_ms``.
    Raises ProtocolError for arguments the receiver would refuse (``checked``: these very
    ``args`` were checked for ``kind`` already, for another receiver)."""
    payload = messages.sign_command(key, device_id, kind, args, ctr,
                                    command_expiry_ms(now_ms, ttl_s), cmd_id, checked)
    return Outgoing(device_id, topics.device_topic(site_id, device_id, topics.CMD), payload,
                    QOS_COMMAND, ctr)


# -- what to play --------------------------------------------------------------------------

def rendition_for(codecs: Iterable[str], renditions: Iterable[RenditionLike]):
    """The rendition a receiver decoding ``codecs`` (its preference first) gets, or None."""
    by_codec = {r.codec: r for r in renditions}
    return next((by_codec[c] for c in codecs if c in by_codec), None)


def media_fields(settings, item_id: str, rendition: RenditionLike) -> dict[str, Any]:
    """The media part of a ``play`` or ``fetch`` command: which item, where to fetch it
    (the head-end's media route, ``Settings.media_url``) and what it must hash to."""
    return {"item": item_id, "url": settings.media_url(rendition.sha256, rendition.ext),
            "sha": rendition.sha256, "size": rendition.size, "dur": rendition.duration_ms,
            "codec": rendition.codec, "rate": rendition.rate}


def fetch_fields(settings, item_id: str, rendition: RenditionLike,
                 pin: bool | None = None) -> dict[str, Any]:
    """The arguments of a ``fetch`` command: the media, and whether the receiver pins it
    (True: kept ahead of need, never evicted; False: unpinned; None: left as it is)."""
    fields = media_fields(settings, item_id, rendition)
    if pin is not None:
        fields["pin"] = pin
    return fields


def play_fields(settings, *, bid: str, item_id: str, rendition: RenditionLike,
                at_ms: int | None, prio: int, vol: int | None = None) -> dict[str, Any]:
    """The arguments of a ``play`` command: the media, when (None: as soon as fetched), in
    which class, and how loud: the emergency volume for an emergency, else ``vol`` (a
    programme's own volume; None: the receiver's default)."""
    return dict(media_fields(settings, item_id, rendition), bid=bid, at=at_ms, prio=prio,
                vol=settings.emergency_volume if prio == messages.PRIO_EMERGENCY else vol)


def lead_fields(item_id: str, rendition: RenditionLike) -> dict[str, Any]:
    """A ``play``'s ``lead``: the pinned item (the alert tone) an emergency opens with on a
    receiver that must fetch the emergency's media first."""
    return {"item": item_id, "sha": rendition.sha256, "dur": rendition.duration_ms,
            "codec": rendition.codec, "rate": rendition.rate}


# -- the schedule window -------------------------------------------------------------------

# Room kept in one command for its envelope (dev, id, ctr, exp, k) and the signature line.
_ENVELOPE_BYTES = 512


def occurrence_bid(programme_id: str, slot_ms: int, revision: int, start_ms: int,
                   generation: int = 0) -> str:
    """The broadcast id of one occurrence of a programme, known before its broadcast exists:
    the receiver's window carries it days ahead and the broadcast made ``programme_lead_s``
    before air time has the same id, so the receiver plays it once (a ``play`` whose bid it
    holds is acknowledged and ignored) and reports it under the broadcast the head-end keeps
    the outcome of. A new revision or a new time is a new id; ``generation`` moves on when
    the id was used by a broadcast since cancelled (the receiver remembers a stopped id)."""
    key = "%s|%d|%d|%d|%d" % (programme_id, slot_ms, revision, start_ms, generation)
    return "b" + hashlib.sha256(key.encode()).hexdigest()[:12]


def schedule_fields(*, from_ms: int, to_ms: int,
                    plays: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The arguments of a ``schedule`` command: the receiver's window [from, to) and the
    plays in it (``play_fields`` each with an ``at`` in the window), earliest first.

    The receiver replaces what it holds in the window with these, so a play left out of it
    is dropped there. One command holds at most ``MAX_SCHEDULE_ITEMS`` plays and
    ``MAX_PAYLOAD`` bytes: when the plays do not all fit, the window ends at the first one
    left out (the receiver keeps what it holds from there; the next window brings it)."""
    if to_ms <= from_ms:
        raise ValueError("the window ends before it starts")
    items = sorted((p for p in plays if from_ms <= p["at"] < to_ms),
                   key=lambda p: (p["at"], p["bid"]))
    room = messages.MAX_PAYLOAD - _ENVELOPE_BYTES
    size = len(messages.encode({"from": from_ms, "to": to_ms, "items": []}))
    kept: list[dict[str, Any]] = []
    for play in items:
        size += len(messages.encode(play)) + 1
        if len(kept) == messages.MAX_SCHEDULE_ITEMS or size > room:
            to_ms = play["at"]
            break
        kept.append(play)
    return {"from": from_ms, "to": to_ms, "items": kept}


def stream_fields(*, bid: str, sid: str, sno: int, key_hex: str, codec: str, rate: int,
                  prio: int = messages.PRIO_LIVE, until_ms: int | None = None) -> dict[str, Any]:
    """The arguments of a ``stream`` command: which stream (id, number, frame key), in which
    codec, in the live class by default (it preempts programmes; an emergency preempts it)."""
    return {"bid": bid, "sid": sid, "sno": sno, "key": key_hex, "codec": codec, "rate": rate,
            "prio": prio, "vol": None, "until": until_ms}


def now_start_ms(settings, now_ms: int) -> int:
    """When a programme sent "now" starts: late enough for every receiver of a village to
    fetch it first, so all of them start together."""
    return now_ms + settings.now_lead_ms


def emergency_start_ms(settings, now_ms: int) -> int:
    """When an emergency called at ``now_ms`` starts on the receivers that hold its media:
    all together, so neighbouring poles do not echo each other."""
    return now_ms + settings.emergency_lead_ms


def emergency_at_ms(settings, now_ms: int, holds_media: bool) -> int | None:
    """The ``at`` of an emergency's ``play`` to one receiver: the common start where the
    media is already held; None elsewhere (it plays as soon as fetched, from the beginning)."""
    return emergency_start_ms(settings, now_ms) if holds_media else None


# -- time sync -----------------------------------------------------------------------------

def answer_time_request(key: bytes, *, site_id: str, device_id: str, request: bytes,
                        arrived_ms: int, clock: Callable[[], int]) -> Outgoing:
    """The signed reply to a receiver's time request: t1 when the request arrived
    (``arrived_ms``), t2 read from ``clock`` just before signing, as late as possible.

    Raises ProtocolError for a malformed request, before the clock is read; whatever
    ``clock`` raises (the head-end's ClockUntrusted) goes to the caller."""
    t0 = messages.open_time_request(request)
    reply = messages.time_reply(key, device_id, t0, arrived_ms, clock())
    return Outgoing(device_id, topics.device_topic(site_id, device_id, topics.TIME), reply,
                    QOS_TIME_REPLY)
