"""Rotation of the receiver's key and broker password, with no moment it is locked out.

Two phases, and two sets of credentials on flash while it lasts:

1. a ``rekey`` command (signed with the current key) offers new ones (protocol/rekey.py);
   the core opens them (REKEY action) and the shell writes them to ``rekey.json`` beside
   ``config.json`` (which keeps the old ones), then reconnects with the new ones. The head-end
   keeps both broker accounts valid and accepts reports under both keys meanwhile;
2. the first command signed with the new key (the head-end sends a ``rekey`` without box once
   it has heard the receiver under the new key) confirms it (REKEY_CONFIRMED): ``config.json``
   is rewritten with the new credentials (and kept as the good copy), then ``rekey.json`` goes.

Power cut at any step: ``config.json`` is written atomically and the pending file is removed
only after it, so the flash holds the old set, or the old and the new, or the new twice (then
the stale pending file is ignored at boot). A board without config.json (the simulator) keeps
the confirmed set in ``rekey.done.json``, which then stands for config.json's. While both are there the receiver connects with
the new one first and goes back to the other whenever the broker refuses the one it used
(``Credentials.refused``): whichever of the two the head-end still accepts, it gets in.

``Credentials`` is the decision (sans-IO); the file functions are the flash side.
"""

import json

from firmware.store import remove, write_atomic

PENDING_FILE = "rekey.json"
# The confirmed set of a board whose config did not come from a file (the simulator): it
# stands for config.json's credentials (``current_of``).
CONFIRMED_FILE = "rekey.done.json"


class Credentials:
    """Which key and broker account the receiver uses. ``current``: (key_hex, user, password)
    from config.json; ``pending``: the offered set as a dict (rid, key, user, password), or
    None. ``in_use()``: the (key_hex, user, password) to connect and seal reports with."""

    def __init__(self, current, pending=None):
        self.current = current
        self.pending = None
        self.using_new = False
        if pending is not None and pending.get("key") != current[0]:
            self.offered(pending)

    def offered(self, pending):
        self.pending = pending
        self.using_new = True

    def in_use(self):
        if self.pending is not None and self.using_new:
            p = self.pending
            return (p["key"], p["user"], p["password"])
        return self.current

    def refused(self):
        """The broker refused the credentials in use: the other set next time, if there is one.
        True when the set changed."""
        if self.pending is None:
            return False
        self.using_new = not self.using_new
        return True

    def confirmed(self):
        """The head-end has the new set: it is the only one from now on."""
        if self.pending is not None:
            p = self.pending
            self.current = (p["key"], p["user"], p["password"])
            self.pending = None
        self.using_new = False


def current_of(storage_dir, key_hex, user, password):
    """config.json's set, or the confirmed one a board without config.json keeps."""
    done = load_pending(storage_dir, CONFIRMED_FILE)
    if done is not None:
        return (done["key"], done["user"], done["password"])
    return (key_hex, user, password)


def load_pending(storage_dir, name=PENDING_FILE):
    """The pending set from an earlier boot, or None (missing, torn or not a set)."""
    try:
        with open(storage_dir + "/" + name) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    for name in ("rid", "key", "user", "password"):
        if not isinstance(data.get(name), str) or not data[name]:
            return None
    return data


def save_pending(storage_dir, rid, key_hex, user, password):
    pending = {"rid": rid, "key": key_hex, "user": user, "password": password}
    write_atomic(storage_dir + "/" + PENDING_FILE, json.dumps(pending).encode())
    return pending


def drop_pending(storage_dir):
    remove(storage_dir + "/" + PENDING_FILE)


def commit(storage_dir, pending, config_file="config.json"):
    """The new set into config.json (atomically), then the pending file goes. A board whose
    config did not come from a file (the simulator) keeps the set in CONFIRMED_FILE instead.
    Cut anywhere, the flash holds the old set and the new, or the new alone."""
    path = storage_dir + "/" + config_file
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = None
    confirmed = {"rid": pending["rid"], "key": pending["key"], "user": pending["user"],
                 "password": pending["password"]}
    if isinstance(data, dict):
        data["key"] = pending["key"]
        broker = data.get("broker")
        if not isinstance(broker, dict):
            broker = data["broker"] = {}
        broker["user"] = pending["user"]
        broker["password"] = pending["password"]
        write_atomic(path, json.dumps(data).encode())
        remove(storage_dir + "/" + CONFIRMED_FILE)
    else:
        write_atomic(storage_dir + "/" + CONFIRMED_FILE, json.dumps(confirmed).encode())
    drop_pending(storage_dir)
