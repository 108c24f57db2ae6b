"""The shell's part of an update: download, check, switch (firmware/ota.py holds the rules).

One ``Updater`` per receiver. ``start(args)`` (the ``update`` command's arguments, after the
core accepted it) begins one task that:

1. downloads ``{url}/manifest.json`` into ``fw/stage/`` (firmware/http.py, Range resume) and
   checks its SHA-256 against the signed ``man``: from here every file is named by hash;
2. checks the flash has room for what is still to come (``ota.space_short``);
3. downloads each ``{url}/files{path}`` into ``fw/stage/files{path}`` (resuming a partial one,
   skipping one already whole and right) and checks its SHA-256 before the next: a file that
   does not match is deleted and the update stops ("sha mismatch /lib/...") before any switch;
4. moves ``fw/stage`` to ``fw/<ver>`` (one rename), writes the pointer naming it on trial
   (atomic), deletes versions older than the one running, reports ``update`` ok, and asks
   the shell to reboot (which waits until nothing plays).

A stop anywhere before the pointer is written leaves the running version in charge; the staged
files stay for a later command with the same manifest (a different one clears the stage). An
error reports ``update`` with ok false and the reason; the URL is never in it (it may carry a
token).
"""

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

import json
import os

from firmware import ota
from firmware import otaboot as B
from firmware.http import HttpError, download, sha256_hex
from firmware.player import sleep_ms
from firmware.store import file_size, fs_space, is_no_space, makedirs, remove, write_atomic

ATTEMPTS = 3          # tries of one download before the update gives up
RETRY_MS = 3000
_WANT = "/want.json"  # which manifest the stage holds


def remove_tree(path):
    """``shutil.rmtree`` for MicroPython (os.ilistdir), ignoring what is already gone."""
    try:
        entries = list(os.ilistdir(path)) if hasattr(os, "ilistdir") else [
            (name, 0x4000 if B.is_dir(path + "/" + name) else 0x8000) for name in os.listdir(path)]
    except OSError:
        return
    for entry in entries:
        child = path + "/" + entry[0]
        if entry[1] & 0x4000:
            remove_tree(child)
        else:
            remove(child)
    try:
        os.rmdir(path)
    except OSError:
        pass


def _parent(path):
    return path[:path.rfind("/")]


class Updater:
    """``platform``: the board (``open_connection``, ``storage_space``); ``buf``: a bytearray to
    hash through; ``on_event(ver, ok, reason)``: report it; ``switch_done()``: the pointer names
    the new version, reboot when quiet. ``state`` (for tests): None, "download", "switched",
    "failed"."""

    def __init__(self, platform, storage, buf, on_event, switch_done):
        self._platform = platform
        self._storage = storage
        self._buf = buf
        self._on_event = on_event
        self._switch_done = switch_done
        self.task = None
        self.state = None
        self.reason = None

    @property
    def busy(self):
        return self.task is not None and not self.task.done()

    def start(self, args, running):
        """Begin the update of ``args`` (``running``: the version that runs); a refusal reason
        (reported as an event) or None."""
        why = ota.refusal(args, running, self.busy or self.state == "switched",
                          B.read_pointer(self._storage))
        if why:
            self._on_event(args.get("ver"), False, why)
            return why
        self.state = "download"
        self.task = asyncio.create_task(self._run(args))
        return None

    async def _run(self, args):
        ver = args["ver"]
        try:
            await self._update(args)
        except ota.OtaError as e:
            self._fail(ver, str(e))
        except HttpError as e:
            self._fail(ver, str(e))
        except OSError as e:
            self._fail(ver, "no-space" if is_no_space(e) else "flash error")
        except Exception as e:
            self._fail(ver, "update: %s" % type(e).__name__)

    def _fail(self, ver, reason):
        self.state = "failed"
        self.reason = reason
        self._on_event(ver, False, reason)

    async def _fetch(self, url, path, size):
        """One file brought to ``size`` bytes, ``ATTEMPTS`` tries (a cut link, a timeout)."""
        tries = 0
        while True:
            tries += 1
            try:
                return await download(self._platform.open_connection, url, path, size)
            except HttpError as e:
                if tries >= ATTEMPTS or str(e).startswith("http 4"):
                    raise
            except OSError as e:
                if is_no_space(e):
                    raise
                if tries >= ATTEMPTS:
                    raise HttpError("connect failed")
            await sleep_ms(RETRY_MS)

    async def _update(self, args):
        ver = args["ver"]
        fw = B.fw_dir(self._storage)
        stage = fw + "/" + ota.STAGE
        makedirs(stage)
        want = None
        try:
            with open(stage + _WANT) as f:
                want = json.load(f).get("man")
        except (OSError, ValueError, AttributeError):
            pass
        if want != args["man"]:  # another bundle's leftovers: start clean
            remove_tree(stage)
            makedirs(stage)
            write_atomic(stage + _WANT, json.dumps({"man": args["man"], "ver": ver}).encode())
        # 1. The manifest, checked against the signed hash.
        manifest_path = stage + "/manifest.json"
        await self._fetch(args["url"] + "/manifest.json", manifest_path, args["msize"])
        if await sha256_hex(manifest_path, self._buf) != args["man"]:
            remove(manifest_path)
            raise ota.OtaError("manifest sha mismatch")
        try:
            with open(manifest_path) as f:
                manifest = json.load(f)
        except ValueError:
            raise ota.OtaError("bad-manifest json")
        files = ota.parse_manifest(manifest, ver)
        manifest = None
        # 2. Room for the rest.
        have = 0
        for path, size, _sha in files:
            got = file_size(stage + ota.FILES + path)
            if 0 < got <= size:
                have += got
        space = getattr(self._platform, "storage_space", None)
        free = space() if space is not None else fs_space(self._storage)
        if ota.space_short(files, have, free[0] if free else None):
            raise ota.OtaError("no-space")
        # 3. Every file, each checked before the next.
        for path, size, sha in files:
            local = stage + ota.FILES + path
            makedirs(_parent(local))
            if file_size(local) == size and await sha256_hex(local, self._buf) == sha:
                continue
            if size == 0:  # an empty __init__: nothing to download (http.download)
                open(local, "wb").close()
            else:
                await self._fetch(args["url"] + ota.FILES + path, local, size)
            if await sha256_hex(local, self._buf) != sha:
                remove(local)
                raise ota.OtaError("sha mismatch %s" % path)
        # 4. The switch: the folder by one rename, then the pointer, atomically.
        pointer = B.read_pointer(self._storage)
        target = fw + "/" + ver
        remove_tree(target)
        remove(stage + _WANT)
        os.rename(stage, target)
        new = ota.switched(pointer, ver)
        B.write_pointer(self._storage, new)
        for name in ota.others(os.listdir(fw), (new["cur"], new["prev"])):
            remove_tree(fw + "/" + name)
        self.state = "switched"
        self._on_event(ver, True, None)
        self._switch_done()
