"""The media cache in flash: files named by content hash, an index, eviction.

Layout under ``dir``::

    index.json          [[sha, size, codec], ...] oldest first
    <sha[:32]>.mp3      a complete, hash-checked item (or .adpcm)
    <sha[:32]>.part     a download in progress (resumed with an HTTP Range request)

An item is only in the index once its hash was checked and the file renamed into place, so a
power cut mid-download leaves a ``.part`` file to resume, never a bad item that would play.
Eviction removes items the schedule no longer needs, oldest first, until the new one fits.
"""

import json
import os

from firmware.store import file_size, makedirs, remove, write_atomic

_NAME_LEN = 32


class MediaCache:
    def __init__(self, directory, capacity):
        self.dir = directory
        self.capacity = capacity
        makedirs(directory)
        self._index = []          # [sha, size, codec], oldest first
        self._load()

    def _load(self):
        try:
            with open(self.dir + "/index.json") as f:
                entries = json.load(f)
        except (OSError, ValueError):
            entries = []
        for entry in entries:
            try:
                sha, size, codec = entry
            except (TypeError, ValueError):
                continue
            if file_size(self._file(sha, codec)) == size:
                self._index.append([sha, size, codec])

    def _save(self):
        write_atomic(self.dir + "/index.json", json.dumps(self._index).encode())

    def _file(self, sha, codec):
        return "%s/%s.%s" % (self.dir, sha[:_NAME_LEN], codec)

    def part_path(self, sha):
        return "%s/%s.part" % (self.dir, sha[:_NAME_LEN])

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

    def used(self):
        total = 0
        for entry in self._index:
            total += entry[1]
        return total

    def free(self):
        return max(0, self.capacity - self.used())

    def make_room(self, size, keep):
        """Evict items not in ``keep`` (oldest first) until ``size`` bytes fit; return the sha
        list evicted, or None if it cannot fit even then (nothing is evicted in that case)."""
        if size > self.capacity:
            return None
        need = size - self.free()
        victims = []
        for entry in self._index:
            if need <= 0:
                break
            if entry[0] not in keep:
                victims.append(entry[0])
                need -= entry[1]
        if need > 0:
            return None
        for sha in victims:
            self.remove(sha)
        return victims

    def add(self, sha, size, codec):
        """Move the checked ``.part`` file into place and index it."""
        final = self._file(sha, codec)
        remove(final)
        os.rename(self.part_path(sha), final)
        self._index.append([sha, size, codec])
        self._save()

    def remove(self, sha):
        entry = self._entry(sha)
        if entry is None:
            return
        self._index.remove(entry)
        remove(self._file(sha, entry[2]))
        self._save()
