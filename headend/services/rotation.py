"""Rotation of a receiver's key and broker password with no moment it is locked out.

1. ``start_rotation``: a new key, password and broker account (the account name alternates
   between ``{id}`` and ``{id}.b``: Mosquitto's password file holds one password per name, and
   both must log in meanwhile) are kept pending on the receiver's row (sealed like its key),
   the broker's files get both accounts (``provisioning.export_mosquitto``), and a ``rekey``
   offer signed with the current key carries the new key and password, encrypted under the
   current key (protocol/rekey.py). Commands go on being signed with the current key; reports
   open under both (the ingest, ``open_report``).
2. The first report that opens only under the new key (``confirm``, from the ingest): the new
   set becomes the receiver's, the old account leaves the broker's files, and a ``rekey``
   without box, signed with the new key, tells the receiver to forget the old set.

Asked again while one is pending, the same offer is sent again (a receiver that was offline,
or lost it): never a second set. A receiver that comes back under the old key while one is
pending gets the offer again (``offer_for_returning``).
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.commands import Command, Publisher, new_command_id, prepare
from headend.keystore import kek_for, open_stored, seal_device_key
from headend.models import Receiver, User
from headend.security import mosquitto_hash, random_key_hex, random_password
from headend.services import audit
from headend.services.claims import label_code
from headend.services.devices import get_receiver
from headend.services.provisioning import refresh_broker_accounts
from headend.settings import Settings
from protocol import messages
from protocol.rekey import seal_box
from protocol.signing import key_from_hex

RESEND_S = 300    # a pending offer goes again this often to an online receiver (sweep)
ALT_SUFFIX = ".b"  # "." is never in a device id (protocol/topics.valid_id): no one else's name


def password_aad(device_id: str) -> str:
    """What a pending broker password is sealed to (the key is sealed to the id itself)."""
    return "%s:rekey-password" % device_id


def next_account(receiver: Receiver) -> str:
    return receiver.id + ALT_SUFFIX if receiver.mqtt_user == receiver.id else receiver.id


@dataclass
class RotationStarted:
    device_id: str
    rotation_id: str
    command_id: str | None  # None: left to the MQTT service's sweep
    resent: bool  # the pending rotation's offer again


def pending_key(session: Session, receiver: Receiver) -> bytes | None:
    if receiver.pending_key is None:
        return None
    return key_from_hex(open_stored(session, receiver.id, receiver.pending_key))


def offer_command(session: Session, receiver: Receiver) -> Command:
    """The ``rekey`` offer of the pending rotation, to be signed with the current key (the
    caller publishes it once its transaction commits)."""
    receiver.rekey_sent_at = datetime.now(UTC)
    current = key_from_hex(open_stored(session, receiver.id, receiver.device_key))
    new = pending_key(session, receiver)
    password = bytes.fromhex(open_stored(session, password_aad(receiver.id),
                                         receiver.pending_password)).decode()
    return Command(receiver.id, messages.REKEY,
                   {"rid": receiver.rekey_id, "user": receiver.pending_mqtt_user,
                    "box": seal_box(current, receiver.rekey_id, new, password)},
                   new_command_id("rkey"))


def start_rotation(session: Session, *, settings: Settings, publisher: Publisher | None,
                   device_id: str, actor: User | str | None) -> RotationStarted:
    """Start (or offer again) the rotation of ``device_id``. Without ``publisher`` (the
    command line, beside a running head-end) the offer is left to the MQTT service's sweep
    (``offers_due``), within seconds when the receiver is online."""
    receiver = get_receiver(session, device_id=device_id)
    resent = receiver.rekey_id is not None
    if not resent:
        kek = kek_for(session)
        password = random_password()
        receiver.rekey_id = random_key_hex()[:16]
        receiver.rekey_started_at = datetime.now(UTC)
        receiver.pending_key = seal_device_key(kek, receiver.id, random_key_hex())
        receiver.pending_password = seal_device_key(kek, password_aad(receiver.id),
                                                    password.encode().hex())
        receiver.pending_mqtt_user = next_account(receiver)
        receiver.pending_mqtt_password_hash = mosquitto_hash(password)
        session.flush()
        # Both accounts in the broker before the receiver hears of the new one.
        refresh_broker_accounts(session, settings=settings)
    command_id = None
    outgoing = []
    if publisher is not None:
        command = offer_command(session, receiver)
        command_id = command.cmd_id
        outgoing = prepare(session, site_id=settings.site_id, commands=[command],
                           ttl_s=settings.command_ttl_s)
    else:
        receiver.rekey_sent_at = None  # the sweep sends it
    audit.record(session, actor=actor, action="device.rotate", target=receiver.id,
                 detail={"rotation": receiver.rekey_id, "resent": resent,
                         "account": receiver.pending_mqtt_user})  # never the secrets
    session.commit()
    if publisher is not None:
        publisher.publish_many(outgoing)
    return RotationStarted(receiver.id, receiver.rekey_id, command_id, resent)


def offers_due(session: Session, *, now: datetime) -> list[Command]:
    """The offers the sweep sends: pending rotations of online receivers whose offer never went
    out (started from the command line) or went out ``RESEND_S`` ago without an answer."""
    due = now - timedelta(seconds=RESEND_S)
    out = []
    for receiver in session.scalars(select(Receiver).where(Receiver.rekey_id.is_not(None),
                                                           Receiver.online.is_(True))):
        sent = receiver.rekey_sent_at
        if sent is not None and sent.tzinfo is None:
            sent = sent.replace(tzinfo=UTC)
        if sent is None or sent <= due:
            out.append(offer_command(session, receiver))
    return out


def confirm(session: Session, *, settings: Settings, receiver: Receiver) -> Command:
    """The receiver spoke under the new key: it is its key and account now, the old account
    leaves the broker; returns the confirmation (signed with the new key by ``prepare``)."""
    rid = receiver.rekey_id
    old_user = receiver.mqtt_user
    if receiver.claim_code is None:  # the pole's label was made from the first key
        receiver.claim_code = label_code(session, receiver)
    receiver.device_key = receiver.pending_key
    receiver.mqtt_user = receiver.pending_mqtt_user
    receiver.mqtt_password_hash = receiver.pending_mqtt_password_hash
    receiver.rekey_id = receiver.rekey_started_at = receiver.rekey_sent_at = None
    receiver.pending_key = None
    receiver.pending_password = receiver.pending_mqtt_user = None
    receiver.pending_mqtt_password_hash = None
    session.flush()
    refresh_broker_accounts(session, settings=settings)
    audit.record(session, actor="mqtt", action="device.rotated", target=receiver.id,
                 detail={"rotation": rid, "account": receiver.mqtt_user, "dropped": old_user})
    return Command(receiver.id, messages.REKEY, {"rid": rid}, new_command_id("rkok"))
