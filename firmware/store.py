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

    One compact JSON event per line. After a power cut the last line may be torn: lines that do
    not parse are dropped on load. When more than ``limit`` events wait (a receiver offline for
    days), the oldest are dropped and counted in ``dropped``: flash space is finite, and the
    newest reports matter most.
    """

    def __init__(self, path, limit=300):
        self.path = path
        self.limit = limit
        self.dropped = 0
        self._pending = []        # [(seq, line bytes)]
        self._acked_since_write = 0
        self._load()

    def _load(self):
        try:
            with open(self.path, "rb") as f:
                for line in f:
                    try:
                        msg = json.loads(line)
                        self._pending.append((msg["seq"], line.rstrip(b"\n")))
                    except Exception:
                        continue
        except OSError:
            pass
        if len(self._pending) > self.limit:
            self._trim()

    def __len__(self):
        return len(self._pending)

    def last_seq(self):
        return self._pending[-1][0] if self._pending else 0

    def append(self, msg):
        """Queue an event dict (protocol.messages.event); persisted before this returns."""
        line = json.dumps(msg, separators=(",", ":")).encode()
        self._pending.append((msg["seq"], line))
        if len(self._pending) > self.limit:
            self._trim()
            return
        with open(self.path, "ab") as f:
            f.write(line + b"\n")

    def peek(self):
        """The oldest unacknowledged ``(seq, payload)``, or None."""
        return self._pending[0] if self._pending else None

    def acked(self, seq):
        """The broker has the event ``seq``: forget it."""
        if not self._pending or self._pending[0][0] != seq:
            return
        self._pending.pop(0)
        self._acked_since_write += 1
        # Rewrite rarely: when empty (cheap), or after a batch of acks.
        if not self._pending or self._acked_since_write >= 16:
            self._rewrite()

    def _trim(self):
        over = len(self._pending) - self.limit
        self.dropped += over
        self._pending = self._pending[over:]
        self._rewrite()

    def _rewrite(self):
        self._acked_since_write = 0
        if not self._pending:
            remove(self.path)
            return
        write_atomic(self.path, b"".join(line + b"\n" for _, line in self._pending))
