"""Each targeted receiver's part in a live session, from its own reports.

Receivers report a stream like any broadcast: ``started`` and ``ended`` events under the
session's bid, which the ingest (headend/mqtt/ingest.py) files as proof of play (``PlayLog``);
a receiver that refused the ``stream`` command says so in its ack (stored as a device event).
"""

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.commands import chunks
from headend.live.session import STARTING, LiveSession
from headend.models import DeviceEvent, PlayLog
from headend.mqtt.ingest import END_STATE
from headend.services.playlog import HEADEND_EPOCH
from protocol import messages

# Before any report: what the head-end did for the receiver.
WAITING = "waiting"    # the session has not started its audio yet
SENT = "sent"          # the stream command went out; no report yet
OFFLINE = "offline"    # offline when the session was made: not sent
NO_CODEC = "no-codec"  # it decodes none of the renditions
REFUSED = "refused"    # it refused the command (its ack says why)
PLAYING = "playing"
_END_REASON = {state: reason for reason, state in END_STATE.items()}


def device_states(db: Session, live: LiveSession) -> list[dict[str, Any]]:
    """``[{"id", "name", "zone", "state", "reason"}]`` for every target, in order."""
    ids = [t.device_id for t in live.receivers]
    plays: dict[str, PlayLog] = {}
    for part in chunks(ids):
        # The receivers' own reports (not the rows the head-end wrote about a fallback).
        for play in db.scalars(select(PlayLog).where(PlayLog.broadcast_id == live.bid,
                                                     PlayLog.device_id.in_(part),
                                                     PlayLog.epoch != HEADEND_EPOCH)
                               .order_by(PlayLog.id)):
            plays[play.device_id] = play  # the latest record wins
    refusals = _refusals(db, live)
    out = []
    for target in live.receivers:
        play = plays.get(target.device_id)
        reason = None
        if play is not None and play.outcome is None:
            state = PLAYING
        elif play is not None:
            state, reason = play.outcome, _END_REASON.get(play.outcome)
        elif target.device_id in refusals:
            state, reason = REFUSED, refusals[target.device_id]
        elif target.device_id in live.sent:
            state = SENT
        elif target.codec is None:
            state = NO_CODEC
        elif not target.online:
            state = OFFLINE
        else:
            state = WAITING if live.state == STARTING else OFFLINE
        out.append({"id": target.device_id, "name": target.name, "zone": target.zone,
                    "state": state, "reason": reason})
    return out


def _refusals(db: Session, live: LiveSession) -> dict[str, str]:
    """Receivers whose ack refused the session's stream command, with the reason."""
    if not live.sent:
        return {}
    commands = {cmd: device for device, cmd in live.sent.items()}
    found = {}
    for part in chunks(sorted(live.sent)):
        for device_id, body in db.execute(
                select(DeviceEvent.device_id, DeviceEvent.body).where(
                    DeviceEvent.device_id.in_(part), DeviceEvent.kind == messages.EV_ACK,
                    DeviceEvent.received_at >= live.created_at)):
            if (isinstance(body, dict) and body.get("ok") is False
                    and commands.get(body.get("cmd")) == device_id):
                found[device_id] = str(body.get("reason") or "refused")[:64]
    return found
