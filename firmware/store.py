"""What survives a reboot: the state file and the event outbox, both in flash.

MicroPython-safe file handling only (open, os.rename, os.remove, os.stat). Flash wears out, so
writes are few: the state file is rewritten when the core says so (a command, a start, an
end), the outbox appends one line per event and is rewritten only when trimmed.
"""

import json
import os


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


def write_atomic(path, data):
    """Write ``data`` to ``path`` so a power cut leaves the old or the new file, never half."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


class StateFile:
    """A JSON dict in flash (``state.json``): counters, schedule, boot count."""

    def __init__(self, path):
        self.path = path

    def load(self):
        try:
            with open(self.path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, data):
        write_atomic(self.path, json.dumps(data).encode())


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
