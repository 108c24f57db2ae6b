"""The boot's part of an update: which version folder runs (board/boot.py calls ``choose``
before anything else of the firmware is imported; the simulator's hosts call it too).

Reads the pointer ``fw/ota.json`` (firmware/ota.py describes it), lets ``ota.boot_step``
count a trial boot or roll back, writes the pointer back atomically before the firmware runs,
and names the folder whose ``files/lib`` goes first on ``sys.path``. Never raises: a boot that
cannot read or write the pointer runs what the pointer said, or the factory /lib.
"""

import json
import os
import sys

from firmware import ota
from firmware.store import finish_atomic, makedirs, write_atomic


def fw_dir(storage):
    return storage + "/fw"


def pointer_path(storage):
    return fw_dir(storage) + "/" + ota.POINTER


def version_lib(storage, ver):
    return fw_dir(storage) + "/" + ver + ota.FILES + "/lib"


def is_dir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def read_pointer(storage):
    """The pointer as a dict ({} when there is none or it cannot be read)."""
    path = pointer_path(storage)
    finish_atomic(path)  # a write cut between the temp file and the rename
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_pointer(storage, pointer):
    """Atomically: a power cut leaves the old pointer or the new one. Raises OSError."""
    makedirs(fw_dir(storage))
    write_atomic(pointer_path(storage), json.dumps(pointer).encode())


def choose(storage):
    """This boot's step (counted in flash); the ``lib`` folder to run from, None: the factory."""
    try:
        pointer = read_pointer(storage)
        new, ver = ota.boot_step(pointer, lambda v: is_dir(version_lib(storage, v)))
        if new is not None:
            write_pointer(storage, new)
    except Exception as e:  # the boot must go on, with the factory firmware at worst
        print("loaxa: update pointer:", repr(e))
        return None
    return version_lib(storage, ver) if ver is not None else None


def activate(lib):
    """Run the firmware from ``lib``: first on the path, and any of its packages already
    imported (this module, from the factory copy) forgotten, so the next import is the new."""
    sys.path.insert(0, lib)
    for name in list(sys.modules):
        if name == "firmware" or name == "protocol" or name.startswith("firmware.") \
                or name.startswith("protocol."):
            del sys.modules[name]
