"""The site's pinned media: kept on every receiver ahead of need, so an emergency's first sound
comes from the receiver's own flash at once (the alert tone, standard emergency messages).

A media item is in the set when ``MediaItem.pinned`` is True. Receivers learn it through the
ordinary ``fetch`` command with ``pin`` (headend/planning.py ``fetch_fields``; the receiver's
cache never evicts a pinned item and does not count it against the schedule's room,
firmware/cache.py):

- at each birth (receivers back with a new session, ``commands_for_birth``, called by the
  ingest once a batch, after ``commands_for_returning``): a ``fetch`` with ``pin: true`` for every item of
  the set, and ``pin: false`` for items that left it which the receiver reported holding;
- when the set changes (``set_pinned``): the same to every online receiver at once.

Unpinning, the smallest design that stays right for a receiver that was away: a ``fetch``
with ``pin: false`` (nothing is downloaded for it; the item stays in the cache as an ordinary
one the schedule may evict). An item that left the set keeps ``pinned = False`` instead of
null, so a receiver that was offline when it left is told at its next birth: no per-receiver
pin bookkeeping and no list to replace on the board, where a command carries one item.
"""

import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend import planning
from headend.commands import Command, Publisher, chunks, new_command_id, prepare
from headend.errors import Invalid
from headend.models import DeviceMedia, MediaItem, Receiver, User
from headend.services import audit
from headend.services.broadcasts import receiver_codecs
from headend.services.media import (
    ALERT_TONE_RATE,
    alert_tone_source_sha,
    find_by_source,
    get_media,
    ingest_media,
)
from headend.settings import Settings
from protocol import messages

ALERT_TONE_TITLE = "Còi báo động (tín hiệu khẩn cấp)"


def pinned_media(session: Session) -> list[MediaItem]:
    """The pinned set, oldest first."""
    return list(session.scalars(select(MediaItem).where(MediaItem.pinned.is_(True))
                                .order_by(MediaItem.created_at, MediaItem.id)))


def _fetch(settings: Settings, receiver: Receiver, media: MediaItem, pin: bool) -> Command | None:
    rendition = planning.rendition_for(receiver_codecs(receiver), media.renditions)
    if rendition is None:
        return None
    return Command(receiver.id, messages.FETCH,
                   planning.fetch_fields(settings, media.id, rendition, pin=pin),
                   new_command_id("pin" if pin else "unpin"))


def _held(session: Session, device_ids: list[str] | None, media: MediaItem) -> set[str]:
    """Receivers (of ``device_ids``; None: all) that reported holding one of its renditions."""
    shas = [r.sha256 for r in media.renditions]
    if device_ids is None:
        return set(session.scalars(select(DeviceMedia.device_id)
                                   .where(DeviceMedia.sha256.in_(shas))))
    held: set[str] = set()
    for part in chunks(device_ids):
        held.update(session.scalars(select(DeviceMedia.device_id).where(
            DeviceMedia.sha256.in_(shas), DeviceMedia.device_id.in_(part))))
    return held


def commands_for_birth(session: Session, *, settings: Settings,
                       receivers: list[Receiver]) -> list[Command]:
    """What receivers that just came back are sent for the pinned set (see the module): a
    few queries for the whole batch, however many came back at once (a broker restart)."""
    commands: list[Command] = []
    if not receivers:
        return commands
    media_rows = list(session.scalars(select(MediaItem).where(MediaItem.pinned.is_not(None))
                                      .order_by(MediaItem.created_at, MediaItem.id)))
    ids = [r.id for r in receivers]
    for media in media_rows:
        holders = None if media.pinned else _held(session, ids, media)
        for receiver in receivers:
            if holders is not None and receiver.id not in holders:
                continue
            command = _fetch(settings, receiver, media, bool(media.pinned))
            if command is not None:
                commands.append(command)
    return commands


def set_pinned(session: Session, *, settings: Settings, publisher: Publisher, media_id: Any,
               pinned: Any, actor: User | str | None = None) -> int:
    """Put ``media_id`` in the pinned set (``pinned`` True) or take it out (False), and tell
    the online receivers: all of them when pinned, those that reported holding it when
    unpinned. Returns how many receivers were sent a command (0 when nothing changed)."""
    if not isinstance(pinned, bool):
        raise Invalid("bad-field", "pinned must be true or false",
                      "Giá trị ghim phải là true hoặc false")
    media = get_media(session, media_id=media_id)
    if bool(media.pinned) == pinned:
        return 0
    media.pinned = pinned
    online = list(session.scalars(select(Receiver).where(Receiver.online.is_(True))
                                  .order_by(Receiver.id)))
    if not pinned:
        held = _held(session, None, media)
        online = [r for r in online if r.id in held]
    commands = [c for c in (_fetch(settings, r, media, pinned) for r in online) if c is not None]
    outgoing = prepare(session, site_id=settings.site_id, commands=commands,
                       ttl_s=settings.command_ttl_s)
    audit.record(session, actor=actor, action="media.pin" if pinned else "media.unpin",
                 target=media.id, detail={"receivers": len(commands)})
    session.commit()
    publisher.publish_many(outgoing)
    return len(commands)


def ensure_alert_tone(session: Session, *, settings: Settings, publisher: Publisher,
                      actor: User | str | None = None) -> MediaItem:
    """The emergency alert tone (audio.tones, the warble every emergency opens with) as a
    pinned media item: made once (found again by its source's hash, the tone being
    generated the same every time), pinned if it is not."""
    from audio.tones import alert_tone_wav

    incoming = settings.resolved_media_dir / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    media = find_by_source(session, alert_tone_source_sha())
    if media is None:
        with tempfile.TemporaryDirectory(dir=incoming) as folder:
            wav = Path(folder) / "coi-bao-dong.wav"
            wav.write_bytes(alert_tone_wav(ALERT_TONE_RATE))
            media = ingest_media(session, settings=settings, src_path=wav,
                                 filename=None, title=ALERT_TONE_TITLE, actor=actor)
    if not media.pinned:
        set_pinned(session, settings=settings, publisher=publisher, media_id=media.id,
                   pinned=True, actor=actor)
    return media
