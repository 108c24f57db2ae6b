"""A live session: who speaks to which receivers, in which streams, and its state as a table.

    starting --go_live--> live --end--> ended
    starting --end------> ended

``starting``: created, waiting for its audio (the WebSocket). ``live``: the receivers were sent
their ``stream`` commands and frames go out. ``ended`` carries why (``END_REASONS``); ending
sends ``stop`` to every receiver that was sent the stream (headend/live/service.py), so a
session is never left "live". An illegal move raises ``IllegalTransition``.
"""

import secrets
from dataclasses import dataclass, field
from datetime import datetime

from protocol import messages

STARTING = "starting"
LIVE = "live"
ENDED = "ended"
STATES = (STARTING, LIVE, ENDED)

TRANSITIONS = {
    (STARTING, "go_live"): LIVE,
    (STARTING, "end"): ENDED,
    (LIVE, "end"): ENDED,
}

# Why a session ended.
END_STOPPED = "stopped"              # DELETE /api/v1/live/{id} (the page's "Dừng")
END_UNTIL = "until"                  # its end time came
END_SOCKET_CLOSED = "socket-closed"  # the audio WebSocket closed (tab closed, network lost)
END_SILENT = "silent"                # no audio for settings.live_silence_s
END_NO_AUDIO = "no-audio"            # the audio never started (settings.live_connect_s)
END_ENCODER_FAILED = "encoder-failed"
END_CLOCK = "clock-untrusted"        # the head-end's clock may not sign its commands
END_SHUTDOWN = "shutdown"            # the head-end stopped
END_RELAY_FAILED = "relay-failed"    # the relay's own machinery broke (logged)
END_RESTARTED = "headend-restarted"  # found live after a restart: a microphone's socket is gone
END_REASONS = (END_STOPPED, END_UNTIL, END_SOCKET_CLOSED, END_SILENT, END_NO_AUDIO,
               END_ENCODER_FAILED, END_CLOCK, END_SHUTDOWN, END_RELAY_FAILED, END_RESTARTED)


class IllegalTransition(Exception):
    def __init__(self, state: str, event: str):
        super().__init__("illegal live-session transition %s --%s-->" % (state, event))
        self.state = state
        self.event = event


@dataclass
class LiveTarget:
    """One targeted receiver as it was when the session was made."""

    device_id: str
    codec: str | None  # the stream it gets; None: it decodes none we send
    online: bool
    link: str | None
    name: str | None = None
    zone: str | None = None
    boot: int | None = None  # its boot counter when sent the stream: a new one is a reboot


@dataclass
class LiveStream:
    """One rendition of the session's audio: its own stream id, number and frame key."""

    codec: str
    rate: int
    sid: str
    sno: int
    key: bytes = field(repr=False)


def new_session_id() -> str:
    return "live-%s" % secrets.token_hex(5)


def new_stream(session_id: str, codec: str, rate: int) -> LiveStream:
    # A fresh stream number and key per stream: frames of an earlier stream (or a forger
    # without the key, which only travels in the signed commands) are refused by receivers.
    # The stream id is in the topic of every frame: short (6 hex digits, +1 letter), as each
    # byte of it is paid by every receiver ~6 times a second (issue 11, cost on 4G).
    return LiveStream(codec, rate, "%s%s" % (secrets.token_hex(3), codec[0]),
                      secrets.randbelow(0xFFFFFFFF) + 1, secrets.token_bytes(32))


@dataclass
class LiveSession:
    id: str
    targets: dict
    receivers: list[LiveTarget]
    created_at: datetime
    created_by: str | None
    until_ms: int | None
    jitter_ms: int  # the allowance of the slowest link among the targets
    streams: dict[str, LiveStream] = field(default_factory=dict)
    state: str = STARTING
    reason: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    sent: dict[str, str] = field(default_factory=dict)  # device id -> stream command id
    stop_sent: bool = False
    frames: int = 0
    # Epoch ms from which the receivers can play the stream (its commands are out and their
    # amplifiers settled); frames before it are not sent.
    playable_ms: float = 0.0
    # A relay (headend/live/relay.py): its URL, the dead air now (None: on air) and how many
    # times the fallback played.
    url: str | None = None
    dead_air: dict | None = None
    fallbacks: int = 0
    resumes: int = 0  # times a head-end restart resumed it (a relay)
    # The class its stream goes out in (protocol/messages.py PRIO_*): live, or a programme's
    # own class for a programme's relay (a priority programme's relay is not preempted by a
    # normal one, and a normal one's relay does not cut a priority programme).
    prio: int = messages.PRIO_LIVE

    @property
    def bid(self) -> str:
        """The id receivers report the session under (started/ended events, proof of play):
        the session's, then a new one each time a restart resumes it (a receiver refuses a
        stream whose bid it has ended)."""
        return self.id if not self.resumes else "%s-r%d" % (self.id, self.resumes)

    @property
    def over(self) -> bool:
        return self.state == ENDED

    def move(self, event: str) -> str:
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            raise IllegalTransition(self.state, event)
        self.state = new
        return new

    def codecs_needed(self) -> list[str]:
        """The renditions to encode: every target's, online or not, so a receiver that comes
        online during the session can join it."""
        return sorted({t.codec for t in self.receivers if t.codec})
