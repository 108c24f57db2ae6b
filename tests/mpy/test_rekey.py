"""Rotation of a receiver's key and broker password: the box (protocol/rekey.py), the core's
two-phase decision (offer under the old key, confirmation under the new one) and the flash
side (firmware/rotation.py), power cuts between its writes included.

Runs under CPython (pytest) and under MicroPython (tools/mptest): plain functions and asserts.
"""

import json
from binascii import hexlify

from firmware import core as C
from firmware import rotation
from protocol import messages as M
from protocol.errors import ProtocolError
from protocol.rekey import open_box, seal_box

try:
    from flash_dir import fresh_dir  # MicroPython: tests/mpy is on the path
except ImportError:
    from .flash_dir import fresh_dir

OLD = b"o" * 32
NEW = b"n" * 32
DEV = "rx-01"
T0 = 1800000000000
RID = "a1b2c3d4e5f60718"


class Head:
    def __init__(self):
        self.ctr = 0

    def cmd(self, key, kind, args):
        self.ctr += 1
        return M.sign_command(key, DEV, kind, args, self.ctr, T0 + 60000, "c%d" % self.ctr)


def offer(head, key=OLD, rid=RID, new=NEW, password="pw-new-1"):
    return head.cmd(key, M.REKEY, {"rid": rid, "user": DEV + ".r",
                                   "box": seal_box(key, rid, new, password)})


def new_core():
    core = C.ReceiverCore(DEV, "xa-01", OLD)
    core.set_synced(T0)
    return core


def acts_of(acts, kind):
    return [a for a in acts if a[0] == kind]


def acked(acts):
    return [(a[1]["ok"], a[1].get("reason")) for a in acts
            if a[0] == C.EVENT and a[1]["k"] == M.EV_ACK]


def test_box_round_trip_and_wrong_key():
    box = seal_box(OLD, RID, NEW, "mật-khẩu")
    assert open_box(OLD, RID, box) == (hexlify(NEW).decode(), "mật-khẩu")
    assert hexlify(NEW).decode() not in box
    # another rotation id or key gives other bytes (or no text): never the key
    for key, rid in ((NEW, RID), (OLD, "ffffffffffffffff")):
        try:
            assert open_box(key, rid, box)[0] != hexlify(NEW).decode()
        except ProtocolError as e:
            assert e.reason == "bad-field"
    for bad in ("zz", "00" * 10, "00" * 200):
        try:
            open_box(OLD, RID, bad)
        except ProtocolError as e:
            assert e.reason == "bad-field"
        else:
            raise AssertionError("opened " + bad)


def test_offer_then_confirm_under_new_key():
    head, core = Head(), new_core()
    acts = core.on_command(offer(head), T0)
    assert acked(acts) == [(True, None)]
    (rekey,) = acts_of(acts, C.REKEY)
    assert rekey[1:] == (RID, hexlify(NEW).decode(), DEV + ".r", "pw-new-1")
    # the same offer again (a resend): the same credentials (the shell tries them again)
    acts = core.on_command(offer(head), T0)
    assert acked(acts) == [(True, None)] and acts_of(acts, C.REKEY) == [rekey]
    # meanwhile commands under the old key still pass, and confirm nothing
    acts = core.on_command(head.cmd(OLD, M.VOLUME, {"vol": 50}), T0)
    assert acked(acts) == [(True, None)] and not acts_of(acts, C.REKEY_CONFIRMED)
    # the confirmation, signed with the new key
    acts = core.on_command(head.cmd(NEW, M.REKEY, {"rid": RID}), T0)
    assert acts_of(acts, C.REKEY_CONFIRMED) == [(C.REKEY_CONFIRMED, RID)]
    assert acked(acts) == [(True, None)]
    # from now on the old key is refused
    acts = core.on_command(head.cmd(OLD, M.VOLUME, {"vol": 40}), T0)
    assert acked(acts) == [(False, "bad-signature")]
    acts = core.on_command(head.cmd(NEW, M.VOLUME, {"vol": 40}), T0)
    assert acked(acts) == [(True, None)]


def test_any_command_under_new_key_confirms():
    head, core = Head(), new_core()
    core.on_command(offer(head), T0)
    acts = core.on_command(head.cmd(NEW, M.IDENTIFY, {"secs": 2}), T0)
    assert acts_of(acts, C.REKEY_CONFIRMED) and acts_of(acts, C.IDENTIFY)


def test_new_key_refused_without_an_offer_and_bad_offers():
    head, core = Head(), new_core()
    acts = core.on_command(head.cmd(NEW, M.VOLUME, {"vol": 50}), T0)
    assert acked(acts) == [(False, "bad-signature")]
    acts = core.on_command(head.cmd(OLD, M.REKEY, {"rid": RID, "box": "00" * 40}), T0)
    assert acked(acts) == [(False, "bad-args")]  # no user
    acts = core.on_command(head.cmd(OLD, M.REKEY, {"rid": RID, "user": "u",
                                                    "box": "0g" * 40}), T0)
    assert acked(acts) == [(False, "bad-field")] and not acts_of(acts, C.REKEY)


def test_pending_from_flash_accepts_both_keys():
    head, core = Head(), new_core()
    core.set_pending_key(RID, NEW)
    assert acked(core.on_command(head.cmd(OLD, M.VOLUME, {"vol": 50}), T0)) == [(True, None)]
    acts = core.on_command(head.cmd(NEW, M.VOLUME, {"vol": 50}), T0)
    assert acts_of(acts, C.REKEY_CONFIRMED) == [(C.REKEY_CONFIRMED, RID)]


def test_credentials_choice():
    old = (hexlify(OLD).decode(), DEV, "pw-old")
    creds = rotation.Credentials(old)
    assert creds.in_use() == old and not creds.refused()
    pending = {"rid": RID, "key": hexlify(NEW).decode(), "user": DEV + ".r",
               "password": "pw-new"}
    creds = rotation.Credentials(old, pending)
    assert creds.in_use() == (pending["key"], DEV + ".r", "pw-new")  # the new one first
    assert creds.refused() and creds.in_use() == old          # refused: the other one
    assert creds.refused() and creds.in_use()[2] == "pw-new"  # and back
    creds.confirmed()
    assert creds.in_use()[2] == "pw-new" and not creds.refused()
    # a pending file left after the commit (power cut before its removal) is no rotation
    stale = rotation.Credentials((pending["key"], DEV + ".r", "pw-new"), pending)
    assert stale.pending is None


def _write_config(d, key, user, password):
    with open(d + "/config.json", "w") as f:
        json.dump({"device": DEV, "site": "xa-01", "key": key,
                   "broker": {"host": "h", "user": user, "password": password}}, f)


def _read_config(d):
    with open(d + "/config.json") as f:
        return json.load(f)


def test_flash_steps_each_cut_leaves_a_set_that_connects():
    d = fresh_dir("rekey-flash")
    old_hex, new_hex = hexlify(OLD).decode(), hexlify(NEW).decode()
    _write_config(d, old_hex, DEV, "pw-old")
    # cut before the pending file: the old set only
    assert rotation.load_pending(d) is None
    # a torn pending file is no rotation
    with open(d + "/" + rotation.PENDING_FILE, "w") as f:
        f.write('{"rid": "a1')
    assert rotation.load_pending(d) is None
    pending = rotation.save_pending(d, RID, new_hex, DEV + ".r", "pw-new")
    assert rotation.load_pending(d) == pending
    creds = rotation.Credentials((old_hex, DEV, "pw-old"), rotation.load_pending(d))
    assert creds.in_use()[2] == "pw-new" and creds.refused() and creds.in_use()[2] == "pw-old"
    rotation.commit(d, pending)
    cfg = _read_config(d)
    assert (cfg["key"], cfg["broker"]["user"], cfg["broker"]["password"]) \
        == (new_hex, DEV + ".r", "pw-new")
    assert cfg["broker"]["host"] == "h"  # the rest of config.json as it was
    assert rotation.load_pending(d) is None
    # no config file (the simulator): the confirmed set stands for it, and survives the
    # next rotation's offer
    d2 = fresh_dir("rekey-noconfig")
    rotation.commit(d2, pending)
    current = rotation.current_of(d2, old_hex, DEV, "pw-old")
    assert current == (new_hex, DEV + ".r", "pw-new") and rotation.load_pending(d2) is None
    rotation.save_pending(d2, "fedcba9876543210", old_hex, DEV, "pw-3")
    creds = rotation.Credentials(rotation.current_of(d2, old_hex, DEV, "pw-old"),
                                 rotation.load_pending(d2))
    assert creds.in_use()[2] == "pw-3" and creds.refused() and creds.in_use()[2] == "pw-new"
