"""What a live session sends, as pure functions: its delay, its ``stream`` and ``stop`` commands.

The commands are signed like every other (headend/commands.py ``prepare``, which counts and
signs through headend/planning.py ``outgoing_command``); these only say what is in them.
"""

from typing import Any

from headend import planning
from headend.commands import Command, new_command_id
from headend.live.session import LiveSession, LiveStream
from headend.settings import Settings
from protocol import messages


def jitter_allowance_ms(settings: Settings, links: list[str | None]) -> int:
    """The network allowance of a session: that of the slowest link among its receivers.
    One value per session, because all its frames carry one timeline (in step)."""
    table = settings.live_jitter_ms
    allowances = [table.get(link or "", settings.live_jitter_default_ms) for link in links]
    return max(allowances, default=settings.live_jitter_default_ms)


def frame_ms(settings: Settings, codec: str) -> int:
    return settings.live_frame_ms.get(codec, max(settings.live_frame_ms.values()))


def play_delay_ms(settings: Settings, jitter_ms: int, codecs: list[str]) -> int:
    """Capture time to play time: a frame is cut once its audio is in (its length), ffmpeg
    (and for MP3 LAME's priming and look-ahead) takes ``live_encoder_ms``, the network the
    jitter allowance. One delay for the session (one timeline): its slowest codec's."""
    encoder = settings.live_encoder_ms
    return max((frame_ms(settings, c) + encoder.get(c, max(encoder.values()))
                for c in codecs), default=0) + jitter_ms


def stream_args(session: LiveSession, stream: LiveStream) -> dict[str, Any]:
    """The ``stream`` command's arguments (protocol/messages.py STREAM_ARGS): live class, so
    it preempts normal and priority programmes and an emergency preempts it; a programme's
    relay in its programme's class (``session.prio``)."""
    return planning.stream_fields(bid=session.bid, sid=stream.sid, sno=stream.sno,
                                  key_hex=stream.key.hex(), codec=stream.codec, rate=stream.rate,
                                  prio=session.prio, until_ms=session.until_ms)


def stream_commands(session: LiveSession, device_ids: set[str] | None = None) -> list[Command]:
    """One ``stream`` per target that decodes one of the session's streams and was not sent
    one yet: those online (``device_ids`` None) or those named."""
    commands = []
    for target in session.receivers:
        stream = session.streams.get(target.codec or "")
        wanted = target.online if device_ids is None else target.device_id in device_ids
        if wanted and stream is not None and target.device_id not in session.sent:
            commands.append(Command(target.device_id, messages.STREAM,
                                    stream_args(session, stream), new_command_id(session.bid)))
    return commands


def stop_commands(session: LiveSession) -> list[Command]:
    """``stop`` for the session's bid to every receiver that was sent its stream."""
    return [Command(device_id, messages.STOP, {"bid": session.bid}, new_command_id("stop"))
            for device_id in sorted(session.sent)]
