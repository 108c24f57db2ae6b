"""Firmware updates' rules (firmware/ota.py) and the boot's pointer step (firmware/otaboot.py),
under CPython (pytest) and both MicroPythons (`make test-micropython`), on each one's real
filesystem. The download and the switch are in tests/test_shell_ota.py (a real HTTP server);
the whole update with code that crashes or cannot reach the broker in tests/integration/.

Plain functions and asserts only (see tests/mpy/).
"""

import json
import os

from firmware import ota, otaboot
from firmware.store import makedirs, write_atomic
from protocol import messages as M
from protocol.errors import ProtocolError

try:
    from flash_dir import fresh_dir, remove_tree  # MicroPython: tests/mpy is on the path
except ImportError:  # CPython: tests/mpy is a package
    from .flash_dir import fresh_dir, remove_tree

SHA = "ab" * 32

def manifest(ver="0.2.0", files=None):
    return {"version": ver, "files": files if files is not None else [
        {"path": "/lib/firmware/core.mpy", "size": 10, "sha256": SHA},
        {"path": "/boot.py", "size": 5, "sha256": SHA}]}


def raises_ota(fn, *args):
    try:
        fn(*args)
    except ota.OtaError as e:
        return str(e)
    raise AssertionError("no OtaError")


def test_update_args_are_checked_by_the_table():
    args = {"ver": "0.2.0", "man": SHA, "msize": 900, "url": "http://h/fw/0.2.0", "total": 9}
    M.check_args(M.UPDATE, args)
    for name, bad in (("man", "AB" * 32), ("msize", 0), ("ver", ""), ("total", 0)):
        wrong = dict(args)
        wrong[name] = bad
        try:
            M.check_args(M.UPDATE, wrong)
        except ProtocolError as e:
            assert e.reason == "bad-field"
        else:
            raise AssertionError("accepted %s=%r" % (name, bad))


def test_manifest_entries_parsed_and_refused():
    files = ota.parse_manifest(manifest(), "0.2.0")
    assert files == [("/lib/firmware/core.mpy", 10, SHA), ("/boot.py", 5, SHA)]
    assert ota.total_size(files) == 15
    assert raises_ota(ota.parse_manifest, manifest(), "0.3.0") == "bad-manifest version"
    assert raises_ota(ota.parse_manifest, manifest(files=[]), "0.2.0") == "bad-manifest files"
    for path in ("lib/x.mpy", "/lib/../../state.json", "/lib//x", "/lib/./x", "/a b", 7):
        bad = manifest(files=[{"path": path, "size": 1, "sha256": SHA}])
        assert raises_ota(ota.parse_manifest, bad, "0.2.0") == "bad-manifest path", path
    twice = manifest(files=[{"path": "/a", "size": 1, "sha256": SHA}] * 2)
    assert raises_ota(ota.parse_manifest, twice, "0.2.0") == "bad-manifest path"
    for size in (-1, True, "3"):
        bad = manifest(files=[{"path": "/a", "size": size, "sha256": SHA}])
        assert raises_ota(ota.parse_manifest, bad, "0.2.0") == "bad-manifest size"
    bad = manifest(files=[{"path": "/a", "size": 1, "sha256": SHA.upper()}])
    assert raises_ota(ota.parse_manifest, bad, "0.2.0") == "bad-manifest sha256"


def test_versions_name_folders_only():
    for good in ("0.2.0", "1.0.0-rc1", "2+local", "a_b"):
        assert ota.valid_version(good), good
    for bad in ("", "..", ".", "stage", "a/b", "a b", None, "x" * 33):
        assert not ota.valid_version(bad), bad


def test_space_counts_what_is_staged_and_a_reserve():
    files = [("/a", 100000, SHA), ("/b", 50000, SHA)]
    assert ota.space_short(files, 0, 150000 + ota.RESERVE_BYTES) == 0
    assert ota.space_short(files, 0, 150000) == ota.RESERVE_BYTES
    assert ota.space_short(files, 100000, 50000 + ota.RESERVE_BYTES) == 0
    assert ota.space_short(files, 0, None) == 0  # the board cannot tell: the write will


def test_refusals():
    args = {"ver": "0.2.0"}
    assert ota.refusal(args, "0.1.0", True) == "updating"
    assert ota.refusal(args, "0.2.0", False) == "same-version"
    assert ota.refusal({"ver": "../x"}, "0.1.0", False) == "bad-version"
    assert ota.refusal(args, "0.1.0", False) is None
    assert ota.refusal(args, "0.1.0", False, {"cur": "0.1.0", "trial": True}) == "on-trial"
    assert ota.refusal(args, "0.1.0", False, {"cur": "0.1.0", "trial": False}) is None


def test_trial_boots_then_crash_loop_rollback():
    pointer = ota.switched({"cur": "0.1.0"}, "0.2.0")
    assert pointer["prev"] == "0.1.0" and pointer["trial"]
    assert ota.birth_info(pointer) == {"ota": "trial", "ota_ver": "0.2.0"}
    installed = lambda v: True  # noqa: E731
    for n in range(1, ota.TRIAL_BOOTS + 1):
        pointer, ver = ota.boot_step(pointer, installed)
        assert ver == "0.2.0" and pointer["tries"] == n
    pointer, ver = ota.boot_step(pointer, installed)
    assert ver == "0.1.0" and not pointer["trial"] and pointer["prev"] is None
    assert ota.birth_info(pointer) == {"ota": "rolled-back", "ota_ver": "0.2.0",
                                       "ota_why": "crash-loop"}
    # The rolled-back pointer is stable: nothing more to write at the next boots.
    assert ota.boot_step(pointer, installed) == (None, "0.1.0")


def test_confirm_and_no_broker_rollback():
    pointer = ota.switched({}, "0.2.0")  # from the factory /lib
    pointer, ver = ota.boot_step(pointer, lambda v: True)
    kept = ota.confirmed(pointer)
    assert kept["cur"] == "0.2.0" and not kept["trial"]
    assert ota.birth_info(kept) == {"ota": "updated", "ota_ver": "0.2.0", "ota_why": None}
    assert ota.confirmed(kept) is None
    back = ota.rollback(pointer, ota.WHY_NO_BROKER)
    assert back["cur"] is None  # the factory
    assert ota.boot_step(back, lambda v: True) == (None, None)


def test_missing_folder_boots_the_previous_or_the_factory():
    pointer = {"cur": "0.3.0", "prev": "0.2.0", "trial": False}
    new, ver = ota.boot_step(pointer, lambda v: v == "0.2.0")
    assert ver == "0.2.0" and new["last"]["why"] == "missing"
    new, ver = ota.boot_step(pointer, lambda v: False)
    assert ver is None and new["cur"] is None
    assert ota.boot_step("junk", lambda v: True) == (None, None)
    assert ota.boot_step({"cur": "../../x"}, lambda v: True)[1] is None


def test_others_keeps_the_two_versions():
    names = ["0.1.0", "0.2.0", "0.0.9", "stage", "ota.json", "ota.json.tmp"]
    assert ota.others(names, ("0.2.0", "0.1.0")) == ["0.0.9"]


def test_otaboot_counts_trials_in_flash_and_survives_a_torn_pointer():
    storage = fresh_dir("ota-boot")
    assert otaboot.choose(storage) is None  # no pointer: the factory
    lib = otaboot.version_lib(storage, "0.2.0")
    makedirs(lib)
    otaboot.write_pointer(storage, ota.switched({}, "0.2.0"))
    assert otaboot.choose(storage) == lib
    assert otaboot.read_pointer(storage)["tries"] == 1
    # A write cut between the temp file and the rename (FAT: the old file already gone).
    path = otaboot.pointer_path(storage)
    os.rename(path, path + ".tmp")
    assert otaboot.choose(storage) == lib
    assert otaboot.read_pointer(storage)["tries"] == 2
    # A torn temp file beside a good pointer is dropped.
    with open(path + ".tmp", "wb") as f:
        f.write(b'{"cur": "0.9')
    assert otaboot.choose(storage) == lib
    assert otaboot.read_pointer(storage)["tries"] == 3
    assert otaboot.choose(storage) is None  # the fourth trial boot: back to the factory
    assert otaboot.read_pointer(storage)["last"]["why"] == "crash-loop"
    # A garbage pointer boots the factory and never raises.
    write_atomic(path, b"\xff\x00not json")
    assert otaboot.choose(storage) is None
    write_atomic(path, json.dumps([1, 2]).encode())
    assert otaboot.choose(storage) is None
    remove_tree(storage)
