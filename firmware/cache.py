"""The media cache in flash: files named by content hash, an index, eviction.

Layout under ``dir``::

    index.json          [[sha, size, codec, pinned], ...] oldest first (pinned: 0 or 1; an
                        index written before pins, three fields an entry, reads as unpinned)
    <sha[:32]>.mp3      a complete, hash-checked item (or .adpcm)
    <sha[:32]>.part     a download in progress (resumed with an HTTP Range request)

An item is only in the index once its hash was checked and the file renamed into place, so a
power cut mid-download leaves a ``.part`` file to resume, never a bad item that would play.
Eviction removes items the schedule no longer needs, oldest first, until the new one fits.

Pinned items (the alert tone, standard emergency messages: the head-end's ``fetch`` with
``pin``) are kept ahead of need so an emergency's first sound comes from flash at once: never
evicted (neither to make room nor when the flash is full), and not counted against
``capacity``, which is what the schedule's media may use; they count against the flash like
everything else. The flag is in the index, so it survives a reboot. A pin asked for before the
item is in the cache (the fetch still to come) is remembered in RAM and set when it is added.

How much the cache may hold (``budget``): ``capacity`` (config ``cache_bytes``) at most, and no
more than the filesystem can give it, ``space()`` (``(free bytes, block bytes)`` from
``os.statvfs``, see Platform.storage_space) plus what the cache already holds, minus
``reserve`` for the writes that matter more than media (state, outbox, config). Everything is
counted in whole filesystem blocks, as flash is spent, and ``.part`` files count as held: a
download in progress takes flash like a finished one. Files nobody owns (a ``.part`` of an item
nothing wants any more, an item the index lost, a temp file of an interrupted write) are swept
at boot (``sweep``), and again when the flash turns out full (``heal``).
"""

import json
import os

from firmware.store import file_size, finish_atomic, makedirs, remove, write_atomic

_NAME_LEN = 32
_INDEX = "index.json"
_PART = ".part"
# Kept free for the state file (rewritten whole, so twice its size while it is replaced: a
# 64-item schedule is ~25 KB), the outbox (300 events of ~150 B, also rewritten when trimmed)
# and the config's good copy, with littlefs' copy-on-write blocks on top: 32 blocks of 4 KB.
RESERVE_BYTES = 131072


class MediaCache:
    def __init__(self, directory, capacity, space=None, reserve=RESERVE_BYTES):
        self.dir = directory
        self.capacity = capacity
        self.reserve = reserve
        self._space = space       # () -> (free bytes, block bytes) or None; None: capacity only
        makedirs(directory)
        self._index = []          # [sha, size, codec, pinned], oldest first
        self._pins = set()        # sha pinned before it was cached (set by add)
        finish_atomic(self.dir + "/" + _INDEX)
        self._load()

    def _load(self):
        try:
            with open(self.dir + "/" + _INDEX) as f:
                entries = json.load(f)
        except (OSError, ValueError):
            entries = []
        if not isinstance(entries, list):
            entries = []
        for entry in entries:
            if not isinstance(entry, list) or len(entry) not in (3, 4):
                continue  # a damaged index must not stop the boot
            sha, size, codec = entry[0], entry[1], entry[2]
            if not isinstance(sha, str) or not isinstance(codec, str):
                continue
            pinned = 1 if len(entry) == 4 and entry[3] == 1 else 0
            if file_size(self._file(sha, codec)) == size:
                self._index.append([sha, size, codec, pinned])

    def _save(self):
        write_atomic(self.dir + "/" + _INDEX, json.dumps(self._index).encode())

    def _file(self, sha, codec):
        return "%s/%s.%s" % (self.dir, sha[:_NAME_LEN], codec)

    def part_path(self, sha):
        return "%s/%s%s" % (self.dir, sha[:_NAME_LEN], _PART)

    def _entry(self, sha):
        for entry in self._index:
            if entry[0] == sha:
                return entry
        return None

    def has(self, sha):
        return self._entry(sha) is not None

    def path(self, sha):
        """The file of a cached item, or None."""
        entry = self._entry(sha)
        return None if entry is None else self._file(sha, entry[2])

    def shas(self):
        return [entry[0] for entry in self._index]

    def pinned(self):
        """sha of the pinned items in the cache."""
        return [entry[0] for entry in self._index if entry[3]]

    def pin(self, sha, on):
        """Pin (``on`` true) or unpin ``sha``. An item not cached yet is pinned when it is
        added (in RAM: after a reboot the head-end's birth-time ``fetch`` pins it again);
        unpinning one not cached forgets such a wish. Returns whether the index changed."""
        on = 1 if on else 0
        entry = self._entry(sha)
        if entry is None:
            if on:
                self._pins.add(sha)
            else:
                self._pins.discard(sha)
            return False
        if entry[3] == on:
            return False
        entry[3] = on
        try:
            self._save()
        except OSError:
            entry[3] = 1 - on
            raise
        return True

    def _names(self):
        try:
            return os.listdir(self.dir)
        except OSError:
            return []

    def _parts(self):
        """``[(file name, size)]`` of the downloads in progress."""
        out = []
        for name in self._names():
            if name.endswith(_PART):
                out.append((name, max(0, file_size(self.dir + "/" + name))))
        return out

    def _flash(self):
        """``(free bytes, block bytes)`` of the filesystem, or None (capacity alone counts)."""
        if self._space is None:
            return None
        try:
            return self._space()
        except Exception:
            return None

    def _held(self, block):
        """Flash held by the items and the ``.part`` files, in whole blocks."""
        total = 0
        for entry in self._index:
            total += _blocks(entry[1], block)
        for _, size in self._parts():
            total += _blocks(size, block)
        return total

    def _pinned_held(self, block):
        """Flash held by the pinned items, in whole blocks (outside ``capacity``)."""
        total = 0
        for entry in self._index:
            if entry[3]:
                total += _blocks(entry[1], block)
        return total

    def used(self):
        """Bytes of media in the cache, downloads in progress included."""
        total = 0
        for entry in self._index:
            total += entry[1]
        for _, size in self._parts():
            total += size
        return total

    def budget(self):
        """What the cache may hold in all, in bytes of flash (see the module docstring)."""
        return self._room()[0]

    def _room(self, coming=0):
        """``(budget, held, block)``: the budget, what the cache holds now, the block size.
        ``coming``: bytes of a pinned item about to be fetched, outside ``capacity`` too."""
        flash = self._flash()
        if not flash:
            return self.capacity + self._pinned_held(1) + coming, self._held(1), 1
        free, block = flash
        held = self._held(block)
        pinned = self._pinned_held(block) + _blocks(coming, block)
        budget = min(self.capacity + pinned, free + held - self.reserve)
        return max(0, budget), held, block

    def free(self):
        budget, held, _ = self._room()
        return max(0, budget - held)

    def make_room(self, size, keep, sha=None):
        """Evict items not in ``keep`` and not pinned (oldest first) until ``size`` bytes fit;
        return the sha list evicted, or None if it cannot fit even then (nothing is evicted in that case).

        ``sha``: the item to be downloaded, whose ``.part`` (already counted as held) the
        finished file replaces. Downloads nothing in ``keep`` wants are swept first."""
        wanted = set(keep)
        if sha is not None:
            wanted.add(sha)
        self.sweep(wanted)
        budget, held, block = self._room(size if sha in self._pins else 0)
        have = 0 if sha is None else max(0, file_size(self.part_path(sha)))
        need = held + _blocks(size, block) - _blocks(have, block) - budget
        victims = []
        for entry in self._index:
            if need <= 0:
                break
            if entry[0] not in wanted and not entry[3]:
                victims.append(entry[0])
                need -= _blocks(entry[1], block)
        if need > 0:
            return None
        for victim in victims:
            self.remove(victim)
        return victims

    def add(self, sha, size, codec):
        """Move the checked ``.part`` file into place and index it.

        The index is written first: a power cut before the rename leaves an index entry
        without its file (dropped at the next load) and the complete ``.part``, which the next
        fetch of that item finds whole, instead of a finished file nobody indexed. A write that
        fails (flash full) leaves the index as it was and raises."""
        final = self._file(sha, codec)
        entry = [sha, size, codec, 1 if sha in self._pins else 0]
        self._index.append(entry)
        try:
            self._save()
            remove(final)
            os.rename(self.part_path(sha), final)
        except OSError:
            self._index.remove(entry)
            try:
                self._save()
            except OSError:
                pass  # the entry is dropped at the next load: its file is not there
            raise
        self._pins.discard(sha)

    def remove(self, sha):
        entry = self._entry(sha)
        if entry is None:
            return
        self._index.remove(entry)
        remove(self._file(sha, entry[2]))
        self._save()

    def drop_part(self, sha):
        remove(self.part_path(sha))

    def sweep(self, keep):
        """Remove what no index entry owns and no one wants: ``.part`` files of items not in
        ``keep``, files the index lost, temp files of interrupted writes. Returns the names
        removed."""
        owned = {_INDEX}
        for entry in self._index:
            owned.add("%s.%s" % (entry[0][:_NAME_LEN], entry[2]))
        for sha in keep:
            owned.add(sha[:_NAME_LEN] + _PART)
        swept = []
        for name in self._names():
            if name not in owned:
                remove(self.dir + "/" + name)
                swept.append(name)
        return swept

    def heal(self, keep):
        """The flash was found full: sweep, then evict items not in ``keep`` and not pinned
        (oldest first) until the filesystem has ``reserve`` bytes free again. Returns the sha list evicted."""
        self.sweep(keep)
        evicted = []
        for entry in list(self._index):
            flash = self._flash()
            if not flash or flash[0] >= self.reserve:
                break
            if entry[0] not in keep and not entry[3]:
                self.remove(entry[0])
                evicted.append(entry[0])
        return evicted


def _blocks(size, block):
    """``size`` bytes rounded up to whole blocks of ``block`` bytes."""
    if block <= 1:
        return size
    return (size + block - 1) // block * block
