"""Firmware updates over the air, sans-IO: the rules, with no files, sockets or clocks.

The shell (firmware/updater.py downloads and switches; firmware/shell.py confirms or rolls
back) and the boot (firmware/otaboot.py, run by board/boot.py and the simulator's host) do the
I/O and ask these functions what follows.

Flash layout, under the storage directory (``/data`` on the board)::

    fw/ota.json          the pointer (``POINTER``), always written whole then renamed
    fw/stage/            the update being downloaded (``STAGE``): manifest.json, files/...
    fw/<ver>/files/...   an installed version; ``files/lib`` goes first on ``sys.path``

The pointer is a small dict::

    {"cur": "0.2.0",     the version to boot (None or missing: the factory /lib)
     "prev": "0.1.0",    the one to go back to (None: the factory /lib)
     "trial": True,      cur has not yet proven itself (its birth acknowledged)
     "tries": 1,         boots of cur on trial so far (boot.py counts them)
     "last": {"ota": "updated" | "rolled-back", "ver": ..., "why": ...}}

Why each step is safe against a power cut: the download only writes under ``fw/stage``; the
folder becomes ``fw/<ver>`` by one rename, and the pointer names it only after that, by an
atomic write (firmware/store.py ``write_atomic``: temp file, then rename). Until the pointer is
renamed into place the old version boots; after, the new one boots on trial. Every trial boot
is counted in the pointer before the firmware is imported, so a version that crashes or hangs
(the watchdog) at boot is left after ``TRIAL_BOOTS`` tries; one that boots but never gets its
birth acknowledged within ``ota_trial_s`` is left by the shell itself (``rollback``). A
pointer naming a folder that is not there boots the previous version, or the factory /lib.
"""

POINTER = "ota.json"
STAGE = "stage"
FILES = "/files"
TRIAL_BOOTS = 3         # trial boots that may crash; the next boot goes back
RESERVE_BYTES = 65536   # flash left free after a download: the state, the outbox, the cache
MAX_FILES = 200

UPDATED = "updated"
ROLLED_BACK = "rolled-back"
TRIAL = "trial"
WHY_CRASH = "crash-loop"
WHY_NO_BROKER = "no-broker"
WHY_MISSING = "missing"

_PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./"
_VERSION_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.+"
_HEX = "0123456789abcdef"


class OtaError(Exception):
    """An update that cannot go on; ``str(e)`` is the short reason of the ``update`` event."""


def valid_version(ver):
    """A version names a folder: letters, digits and ``. _ + -``, not "stage", not "." or ".."."""
    if not isinstance(ver, str) or not 1 <= len(ver) <= 32 or ver in (STAGE, ".", ".."):
        return False
    for c in ver:
        if c not in _VERSION_CHARS:
            return False
    return True


def safe_path(path):
    """A manifest's board path that cannot leave the version folder: ``/`` then parts of
    plain characters, none empty, "." or ".."."""
    if not isinstance(path, str) or not path.startswith("/") or len(path) > 128:
        return False
    for c in path:
        if c not in _PATH_CHARS:
            return False
    for part in path[1:].split("/"):
        if part in ("", ".", ".."):
            return False
    return True


def _hex64(value):
    if not isinstance(value, str) or len(value) != 64:
        return False
    for c in value:
        if c not in _HEX:
            return False
    return True


def parse_manifest(manifest, ver):
    """The files of a decoded manifest as a list of ``(path, size, sha256)``, after checking
    it names version ``ver`` and every entry is sane; OtaError("bad-manifest ...") if not."""
    if not isinstance(manifest, dict) or manifest.get("version") != ver:
        raise OtaError("bad-manifest version")
    entries = manifest.get("files")
    if not isinstance(entries, list) or not entries or len(entries) > MAX_FILES:
        raise OtaError("bad-manifest files")
    out = []
    seen = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise OtaError("bad-manifest entry")
        path = entry.get("path")
        size = entry.get("size")
        sha = entry.get("sha256")
        if not safe_path(path) or path in seen:
            raise OtaError("bad-manifest path")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise OtaError("bad-manifest size")
        if not _hex64(sha):
            raise OtaError("bad-manifest sha256")
        seen.add(path)
        out.append((path, size, sha))
    return out


def total_size(files):
    total = 0
    for _path, size, _sha in files:
        total += size
    return total


def space_short(files, have, free, reserve=RESERVE_BYTES):
    """Bytes the flash lacks for the rest of the download (0: it fits). ``have``: bytes of the
    files already staged (they are on flash already); ``free``: what the flash has free, None
    when the board cannot tell (then nothing is refused here: a full flash fails the write)."""
    if free is None:
        return 0
    need = total_size(files) - have + reserve
    return need - free if need > free else 0


def others(names, keep):
    """The folder names under ``fw/`` to delete: old versions, not those in ``keep``."""
    out = []
    for name in names:
        if name != STAGE and name != POINTER and not name.endswith(".tmp") and name not in keep:
            out.append(name)
    return out


def switched(pointer, ver):
    """The pointer that boots ``ver`` (staged, checked, moved into place) on trial, with the
    version running now to come back to."""
    return {"cur": ver, "prev": pointer.get("cur"), "trial": True, "tries": 0,
            "last": {"ota": TRIAL, "ver": ver}}


def confirmed(pointer):
    """The trial version got its birth acknowledged: it stays (None: nothing to change)."""
    if not pointer.get("trial"):
        return None
    return {"cur": pointer.get("cur"), "prev": pointer.get("prev"), "trial": False, "tries": 0,
            "last": {"ota": UPDATED, "ver": pointer.get("cur")}}


def rollback(pointer, why):
    """Back to the previous version (or the factory /lib), saying why; the failed version is no
    longer anyone's ``prev``, so no later rollback comes back to it."""
    return {"cur": pointer.get("prev"), "prev": None, "trial": False, "tries": 0,
            "last": {"ota": ROLLED_BACK, "ver": pointer.get("cur"), "why": why}}


def boot_step(pointer, installed):
    """What a boot does with the pointer: ``(new pointer or None if unchanged, version to run
    or None for the factory /lib)``. ``installed(ver)``: the version's folder is there.

    A trial boot is counted (written before the firmware runs); past ``TRIAL_BOOTS`` it is a
    crash loop and the previous version boots. A version whose folder is missing gives way to
    the previous one, then to the factory /lib."""
    if not isinstance(pointer, dict):
        return None, None
    cur = pointer.get("cur")
    if cur is None:
        return None, None
    new = None
    if pointer.get("trial"):
        tries = pointer.get("tries")
        tries = tries + 1 if isinstance(tries, int) and tries >= 0 else 1
        if tries > TRIAL_BOOTS:
            new = rollback(pointer, WHY_CRASH)
        else:
            new = dict(pointer)
            new["tries"] = tries
    current = new if new is not None else pointer
    ver = current.get("cur")
    if ver is not None and not (valid_version(ver) and installed(ver)):
        new = rollback(current, WHY_MISSING)
        ver = new.get("cur")
        if ver is not None and not (valid_version(ver) and installed(ver)):
            new["cur"] = ver = None
    return new, ver


def running(pointer):
    """The version the pointer boots, None for the factory /lib."""
    cur = pointer.get("cur") if isinstance(pointer, dict) else None
    return cur if isinstance(cur, str) else None


def birth_info(pointer):
    """The birth's ``ota``, ``ota_ver``, ``ota_why`` (None: left out)."""
    if not isinstance(pointer, dict):
        return {}
    if pointer.get("trial"):
        return {"ota": TRIAL, "ota_ver": running(pointer)}
    last = pointer.get("last")
    if not isinstance(last, dict):
        return {}
    return {"ota": last.get("ota"), "ota_ver": last.get("ver"), "ota_why": last.get("why")}


def refusal(args, running_version, updating, pointer=None):
    """Why the shell does not start an update it was sent, or None. (The core has already
    refused it while something plays: it knows what does.) ``updating``: an update runs, or
    one is switched in and waits for its reboot; ``pointer``: a version on trial has not yet
    proven itself, and must not become the one to go back to."""
    if updating:
        return "updating"
    if isinstance(pointer, dict) and pointer.get("trial"):
        return "on-trial"
    if not valid_version(args.get("ver")):
        return "bad-version"
    if args.get("ver") == running_version:
        return "same-version"
    return None
