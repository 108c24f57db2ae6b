"""What survives a reboot: the state file and the event outbox, both in flash.

MicroPython-safe file handling only (open, os.rename, os.remove, os.stat, os.statvfs). Flash
wears out, so writes are few: the state file is rewritten when the core says so (a command, a
start, an end), the outbox appends one line per event and is rewritten only when trimmed.

Flash also fills up: a write that finds it full raises OSError with errno 28 (ENOSPC; littlefs'
LFS_ERR_NOSPC and FAT's FR_DENIED both arrive as that). ``is_no_space`` names it, so callers
report "no-space" and give space back instead of calling it a network or generic error.
"""

import json
import os

ENOSPC = 28  # MicroPython's errno module may not define it (the WebAssembly port does not)


def file_size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def makedirs(path):
    """``os.makedirs(path, exist_ok=True)`` for MicroPython, which has only ``os.mkdir``."""
    built = ""
    for part in path.split("/"):
        if not part:
            built = "/" if not built else built
            continue
        built = part if not built else (built.rstrip("/") + "/" + part)
        try:
            os.mkdir(built)
        except OSError:
            pass


def is_no_space(exc):
    """True when ``exc`` says the filesystem is full (ENOSPC)."""
    if not isinstance(exc, OSError) or not exc.args:
        return False
    return exc.args[0] == ENOSPC


def fs_space(path):
    """``(free bytes, block bytes)`` of the filesystem holding ``path``, or None when unknown.

    ``os.statvfs`` is on every port with a filesystem (ESP32 littlefs/FAT, unix, WebAssembly):
    f_frsize * f_bavail is what a write can still use (littlefs and FAT count no blocks
    reserved for root, so f_bavail is f_bfree there)."""
    statvfs = getattr(os, "statvfs", None)
    if statvfs is None:
        return None
    try:
        st = statvfs(path)
    except OSError:
        return None
    block = st[1] or st[0]
    if block <= 0:
        return None
    return st[4] * block, block


def write_atomic(path, data):
    """Write ``data`` to ``path`` so a power cut leaves the old or the new file, never half.

    A write that fails (flash full, flash error) leaves the old file and no temp file behind,
    then raises."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
    except OSError:
        remove(tmp)  # a half-written temp file only holds space the next write needs
        raise
    os.rename(tmp, path)


def finish_atomic(path):
    """Settle a ``write_atomic`` that a power cut interrupted, before ``path`` is read.

    A ``.tmp`` next to ``path`` was torn mid-write or never renamed: ``path`` is the committed
    copy and the temp file goes. A ``.tmp`` without ``path`` is the new copy caught between
    the write and the rename (FAT removes the old file before it renames over it): it is put
    in place. Either way no stray temp file holds flash."""
    tmp = path + ".tmp"
    if file_size(tmp) < 0:
        return
    if file_size(path) >= 0:
        remove(tmp)
        return
    try:
        os.rename(tmp, path)
    except OSError:
        remove(tmp)


def _read_json_dict(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class StateFile:
    """A JSON dict in flash (``state.json``): counters, schedule, boot count.

    A save writes ``state.json.tmp`` whole, turns the current file into ``state.json.bak`` and
    renames the temp file into place, so at every instant one complete copy is on flash: a
    power cut mid-write leaves ``state.json`` as it was; one between the renames leaves the
    complete ``.tmp`` (and the ``.bak``). ``load`` reads ``state.json``, else ``.tmp``, else
    ``.bak``, and sets ``recovered`` to the copy it had to fall back to ("tmp", "bak"), or to
    "lost" when state files were there and none could be read; None when ``state.json`` read
    whole (or there never was one). ``copies`` holds every readable copy, newest first, so the
    caller can keep the highest counters of them all: a torn or corrupt file never turns the
    replay counter back to 0 while an older copy still knows better.
    """

    def __init__(self, path):
        self.path = path
        self.recovered = None
        self.copies = []
        self._rotate = False    # the file in place is a good copy, worth keeping as .bak

    def load(self):
        self.copies = []
        self.recovered = None
        primary = None
        seen = False
        for suffix, name in (("", None), (".tmp", "tmp"), (".bak", "bak")):
            path = self.path + suffix
            if file_size(path) < 0:
                continue
            seen = True
            data = _read_json_dict(path)
            if data is None:
                continue
            self.copies.append(data)
            if primary is None:
                primary = data
                self.recovered = name
        self._rotate = self.recovered is None and primary is not None
        if primary is None:
            self.recovered = "lost" if seen else None
            return {}
        return primary

    def save(self, data):
        """Write ``data``; raises OSError (the committed copies stay as they were)."""
        blob = json.dumps(data).encode()
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(blob)
        except OSError:
            remove(tmp)
            raise
        if self._rotate and file_size(self.path) >= 0:
            os.rename(self.path, self.path + ".bak")  # replaces the older backup
        else:
            remove(self.path)  # not a good copy (corrupt, or none): the .bak stays the backup
        os.rename(tmp, self.path)
        self._rotate = True


class Outbox:
    """Events waiting for the broker's PUBACK, oldest first, in an append-only file.

    One compact JSON event per line, appended through a file kept open (one flash write per
    event, no open/close). Acknowledged events are trimmed from the file only every
    ``_TRIM_EVERY`` acks: after a reboot up to that many already-delivered events go out again,
    which the head-end drops as duplicates by (device, seq). A trimmed file starts with a
    ``#<seq>`` line holding the highest seq ever queued, so the event numbering survives even
    an empty outbox. After a power cut the last line may be torn: lines that do not parse are
    dropped on load. When more than ``limit`` events wait (a receiver offline for days), the
    oldest are dropped and counted in ``dropped``: flash is finite, the newest reports matter
    most.
    """

    _TRIM_EVERY = 16

    def __init__(self, path, limit=300):
        self.path = path
        self.limit = limit
        self.dropped = 0
        self._pending = []        # [(seq, line bytes)]
        self._high = 0            # highest seq ever queued
        self._acked_since_write = 0
        self._file = None
        finish_atomic(path)
        self._load()

    def _load(self):
        try:
            with open(self.path, "rb") as f:
                for line in f:
                    try:
                        if line.startswith(b"#"):
                            self._high = max(self._high, int(line[1:]))
                            continue
                        msg = json.loads(line)
                        self._pending.append((msg["seq"], line.rstrip(b"\n")))
                    except Exception:
                        continue
        except OSError:
            pass
        if self._pending:
            self._high = max(self._high, self._pending[-1][0])
        if len(self._pending) > self.limit:
            self._trim()

    def __len__(self):
        return len(self._pending)

    def last_seq(self):
        """The highest event seq ever queued here (0 if none)."""
        return self._high

    def append(self, msg):
        """Queue an event dict (protocol.messages.event); in flash before this returns."""
        line = json.dumps(msg, separators=(",", ":")).encode()
        self._pending.append((msg["seq"], line))
        self._high = max(self._high, msg["seq"])
        if len(self._pending) > self.limit:
            self._trim()
            return
        if self._file is None:
            self._file = open(self.path, "ab")
        self._file.write(line + b"\n")
        self._file.flush()

    def peek(self):
        """The oldest unacknowledged ``(seq, payload)``, or None."""
        return self._pending[0] if self._pending else None

    def acked(self, seq):
        """The broker has the event ``seq``: forget it."""
        if not self._pending or self._pending[0][0] != seq:
            return
        self._pending.pop(0)
        self._acked_since_write += 1
        if self._acked_since_write >= self._TRIM_EVERY:
            self._rewrite()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def _trim(self):
        over = len(self._pending) - self.limit
        self.dropped += over
        self._pending = self._pending[over:]
        self._rewrite()

    def _rewrite(self):
        self.close()
        self._acked_since_write = 0
        lines = [b"#%d\n" % self._high]
        for _, line in self._pending:
            lines.append(line + b"\n")
        write_atomic(self.path, b"".join(lines))
