"""Flash and field recovery as the board runs them (firmware/store.py, firmware/cache.py,
firmware/recovery.py): under CPython (pytest) and both MicroPythons (`make test-micropython`),
on each one's real filesystem (the unix port's POSIX files, the WebAssembly build's memory FS).

Plain functions and asserts only (see tests/mpy/). tests/test_shell_store.py and
tests/test_recovery.py go further on CPython (a flash that fills up mid-write, a power cut
between the index and the rename, the receiver around it all).
"""

import os

from firmware.cache import MediaCache
from firmware.guard import CommandGuard
from firmware.recovery import DurableGuard, crashes_before, highest
from firmware.store import (
    StateFile,
    file_size,
    finish_atomic,
    fs_space,
    is_no_space,
    write_atomic,
)
from protocol import messages as M
from protocol.errors import ProtocolError

try:
    from flash_dir import fresh_dir, remove_tree  # MicroPython: tests/mpy is on the path
except ImportError:  # CPython: tests/mpy is a package
    from .flash_dir import fresh_dir, remove_tree

KEY = b"\x11" * 32


def put(path, data):
    with open(path, "wb") as f:
        f.write(data)


def test_the_state_file_falls_back_to_a_copy_that_survived():
    d = fresh_dir("state")
    path = d + "/state.json"
    state = StateFile(path)
    assert state.load() == {} and state.recovered is None
    state.save({"core": {"ctr": 5}})
    state.save({"core": {"ctr": 9}})
    put(path, b'{"core": {"ctr"')  # torn
    again = StateFile(path)
    assert again.load() == {"core": {"ctr": 5}} and again.recovered == "bak"
    again.save({"core": {"ctr": 10}})
    assert file_size(path + ".tmp") < 0
    # Caught between the renames: only the complete temp file has the newest state.
    os.rename(path, path + ".bak")
    put(path + ".tmp", b'{"core": {"ctr": 11}}')
    third = StateFile(path)
    assert third.load() == {"core": {"ctr": 11}} and third.recovered == "tmp"
    assert highest(third.copies, "core", "ctr") == 11
    put(path, b"\x00")
    put(path + ".tmp", b"\x00")
    put(path + ".bak", b"[]")
    lost = StateFile(path)
    assert lost.load() == {} and lost.recovered == "lost"
    remove_tree(d)


def test_an_interrupted_atomic_write_is_settled():
    d = fresh_dir("atomic")
    path = d + "/index.json"
    put(path + ".tmp", b"[]")  # complete, never renamed: it becomes the file
    finish_atomic(path)
    assert file_size(path) == 2 and file_size(path + ".tmp") < 0
    write_atomic(path, b"[1]")
    put(path + ".tmp", b"[1, 2")  # torn: the committed file stays
    finish_atomic(path)
    assert file_size(path) == 3 and file_size(path + ".tmp") < 0
    remove_tree(d)


def test_free_flash_and_a_full_flash_are_named():
    space = fs_space("/tmp")
    assert space is not None
    free, block = space
    assert free >= 0 and block > 0
    assert is_no_space(OSError(28))
    assert not is_no_space(OSError(5)) and not is_no_space(ValueError(28))


def test_the_cache_budget_follows_the_flash_and_orphans_are_swept():
    d = fresh_dir("cache")
    flash = [1000000]
    cache = MediaCache(d, 2000000, lambda: (flash[0], 4096), reserve=100000)
    assert cache.budget() == 900000
    put(cache.part_path("a" * 64), bytes(300))
    cache.add("a" * 64, 300, "mp3")
    put(cache.part_path("b" * 64), bytes(5000))   # in progress, wanted
    put(cache.part_path("c" * 64), bytes(100))    # nobody wants it
    put(d + "/" + "e" * 32 + ".mp3", bytes(10))   # the index lost it
    put(d + "/index.json.tmp", b"[")              # an interrupted index write
    again = MediaCache(d, 2000000, lambda: (flash[0], 4096), reserve=100000)
    assert sorted(again.sweep(["b" * 64])) == ["c" * 32 + ".part", "e" * 32 + ".mp3"]
    # Held: "a" (one block) and the download (two); the flash's own free space is unchanged.
    assert again.used() == 5300 and again.budget() == 900000 + 3 * 4096
    assert again.free() == 900000
    flash[0] = 100000 + 4096  # one block above the reserve
    # b needs 4 blocks in all and has 2; one is free: the unneeded "a" goes.
    assert again.make_room(14000, ["b" * 64], "b" * 64) == ["a" * 64]
    remove_tree(d)


def test_pinned_items_are_never_evicted_sit_outside_the_budget_and_survive_a_reboot():
    d = fresh_dir("pins")
    flash = [10000000]
    space = lambda: (flash[0], 4096)  # noqa: E731
    cache = MediaCache(d, 3 * 4096, space, reserve=4096)
    tone, old, new = "1" * 64, "2" * 64, "3" * 64
    cache.pin(tone, True)  # asked before the fetch: pinned when it is added
    put(cache.part_path(tone), bytes(8000))
    cache.add(tone, 8000, "mp3")
    assert cache.pinned() == [tone]
    # The schedule's budget is untouched by the two pinned blocks: three blocks of its own.
    assert cache.budget() == 5 * 4096 and cache.free() == 3 * 4096
    put(cache.part_path(old), bytes(4096 * 2))
    cache.add(old, 4096 * 2, "mp3")
    # A new item of two blocks: only the unpinned "old" may go, though "tone" is older.
    assert cache.make_room(4096 * 2, [], new) == [old]
    assert cache.has(tone)
    # The flash fills up: heal evicts nothing pinned.
    flash[0] = 0
    assert cache.heal([]) == [] and cache.has(tone)
    flash[0] = 10000000
    # A reboot: the flag is in the index.
    again = MediaCache(d, 3 * 4096, space, reserve=4096)
    assert again.pinned() == [tone]
    assert again.pin(tone, False) and not again.pin(tone, False)
    third = MediaCache(d, 3 * 4096, space, reserve=4096)
    assert third.pinned() == [] and third.make_room(4096 * 3, [], new) == [tone]
    # An index written before pins (three fields an entry) reads as unpinned.
    put(third.part_path(old), bytes(100))
    third.add(old, 100, "mp3")
    put(d + "/index.json", ('[["%s", 100, "mp3"]]' % old).encode())
    fourth = MediaCache(d, 3 * 4096, space, reserve=4096)
    assert fourth.shas() == [old] and fourth.pinned() == []
    remove_tree(d)


def test_a_pinned_item_to_come_does_not_take_the_schedules_room():
    d = fresh_dir("pin-room")
    cache = MediaCache(d, 2 * 4096, lambda: (10000000, 4096), reserve=4096)
    item, tone = "4" * 64, "5" * 64
    put(cache.part_path(item), bytes(4096 * 2))
    cache.add(item, 4096 * 2, "mp3")
    assert cache.make_room(4096, [], tone) == [item]  # unpinned: it needs the room
    put(cache.part_path(item), bytes(4096 * 2))
    cache.add(item, 4096 * 2, "mp3")
    cache.pin(tone, True)
    assert cache.make_room(4096, [], tone) == []      # pinned: the schedule keeps its room
    cache.pin(tone, False)
    assert cache.make_room(4096, [], tone) == [item]  # the wish is forgotten
    remove_tree(d)


def test_a_refused_command_is_spent_and_a_crash_loop_is_counted():
    refusal = ["storage"]
    guard = DurableGuard(KEY, "rx-1", lambda cmd: refusal[0])
    payload = M.sign_command(KEY, "rx-1", M.VOLUME, {"vol": 5}, 1800000000001,
                             1800000060000, "c1")
    for expected in ("storage", "replay"):
        try:
            guard.check(payload, 1800000000000)
            raise AssertionError("accepted")
        except ProtocolError as e:
            assert e.reason == expected
    assert guard.last_ctr == 1800000000001 and isinstance(guard, CommandGuard)
    refusal[0] = None
    later = M.sign_command(KEY, "rx-1", M.VOLUME, {"vol": 6}, 1800000000002,
                           1800000060000, "c2")
    assert guard.check(later, 1800000000000)["ctr"] == 1800000000002
    assert crashes_before(2, "watchdog") == 2 and crashes_before(2, "power-on") == 0
    assert crashes_before("x", "hard") == 0
    assert highest([{"boot": 3}, {"boot": "9"}, {"boot": 4}, {}], "boot") == 4


def test_the_birth_carries_how_the_boot_began():
    msg = M.decode(M.birth("rx-1", 2, 1, "0.1.0", {}, "wifi",
                           {"reset": "brown-out", "brownouts": 1, "safe": None}))
    assert msg["reset"] == "brown-out" and msg["brownouts"] == 1 and "safe" not in msg
