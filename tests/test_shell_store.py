"""What survives a reboot (firmware/store.py): the event outbox and the state file, in a real
directory standing in for the receiver's flash."""

import builtins
import errno
import json
import os

import pytest

from firmware import store
from firmware.cache import MediaCache
from firmware.store import Outbox, StateFile, finish_atomic, is_no_space, write_atomic


def event(seq):
    return {"v": 1, "seq": seq, "k": "ack", "t": 1800000000000 + seq, "cmd": "c%d" % seq,
            "ok": True}


def test_outbox_keeps_order_across_reboots_and_survives_a_torn_line(tmp_path):
    path = str(tmp_path / "outbox.jsonl")
    box = Outbox(path)
    for seq in (1, 2, 3):
        box.append(event(seq))
    box.acked(1)
    box.close()
    with open(path, "ab") as f:
        f.write(b'{"v":1,"seq":4,"k":"ac')  # power cut in the middle of a write
    again = Outbox(path)
    # Trimming is lazy: an acked event may go out again (the head-end drops duplicates).
    assert [seq for seq, _ in again._pending][-2:] == [2, 3]
    assert again.peek()[1].startswith(b'{"v":1,"seq":')
    assert again.last_seq() == 3


def test_event_numbers_survive_an_emptied_outbox(tmp_path):
    path = str(tmp_path / "outbox.jsonl")
    box = Outbox(path)
    for seq in range(1, 41):
        box.append(event(seq))
        box.acked(seq)
    box.close()
    again = Outbox(path)
    assert len(again) <= Outbox._TRIM_EVERY and again.last_seq() == 40


def test_outbox_drops_the_oldest_beyond_its_limit(tmp_path):
    box = Outbox(str(tmp_path / "outbox.jsonl"), limit=5)
    for seq in range(1, 9):
        box.append(event(seq))
    assert len(box) == 5 and box.dropped == 3 and box.peek()[0] == 4
    box.close()
    assert Outbox(str(tmp_path / "outbox.jsonl"), limit=5).peek()[0] == 4


def test_state_file_is_replaced_whole(tmp_path):
    state = StateFile(str(tmp_path / "state.json"))
    assert state.load() == {}
    state.save({"boot": 3, "core": {"ctr": 9}})
    assert StateFile(str(tmp_path / "state.json")).load() == {"boot": 3, "core": {"ctr": 9}}
    (tmp_path / "state.json").write_text("{not json")
    assert state.load() == {}  # a corrupt file is a fresh start, not a crash loop


# -- the state file: write-temp-then-rename, a backup, a floor --------------------------------

def test_a_torn_state_file_falls_back_to_the_copy_before_it(tmp_path):
    path = str(tmp_path / "state.json")
    state = StateFile(path)
    state.load()
    state.save({"boot": 1, "core": {"ctr": 5}})
    state.save({"boot": 1, "core": {"ctr": 9}})
    with open(path, "w") as f:
        f.write('{"boot": 1, "core": {"ct')  # torn (FAT, a bad block): not JSON any more
    again = StateFile(path)
    assert again.load() == {"boot": 1, "core": {"ctr": 5}} and again.recovered == "bak"
    # The next save keeps the good backup, not the torn file, as the copy before it.
    again.save({"boot": 2, "core": {"ctr": 10}})
    assert not os.path.exists(path + ".tmp")
    third = StateFile(path)
    assert third.load()["core"]["ctr"] == 10 and third.recovered is None
    assert [c["core"]["ctr"] for c in third.copies] == [10, 5]


def test_a_power_cut_between_the_write_and_the_rename_loses_nothing(tmp_path):
    """Between the two renames of a save (or inside FAT's rename, which deletes the target
    first) only the complete temp file holds the newest state: it is read."""
    path = str(tmp_path / "state.json")
    state = StateFile(path)
    state.load()
    state.save({"core": {"ctr": 7}})
    os.rename(path, path + ".bak")
    with open(path + ".tmp", "w") as f:
        json.dump({"core": {"ctr": 8}}, f)
    again = StateFile(path)
    assert again.load() == {"core": {"ctr": 8}} and again.recovered == "tmp"
    assert [c["core"]["ctr"] for c in again.copies] == [8, 7]


def test_no_readable_copy_is_reported_lost_not_a_silent_fresh_start(tmp_path):
    path = str(tmp_path / "state.json")
    for suffix in ("", ".bak"):
        with open(path + suffix, "w") as f:
            f.write("\x00\x00garbage")
    state = StateFile(path)
    assert state.load() == {} and state.recovered == "lost"
    fresh = StateFile(str(tmp_path / "other.json"))
    assert fresh.load() == {} and fresh.recovered is None


class _FullFlash:
    """``open`` for the store module whose files take ``room`` bytes, then raise ENOSPC."""

    def __init__(self, room):
        self.room = room

    def __call__(self, path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        if "w" not in mode and "a" not in mode:
            return f
        flash = self

        class Writer:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

            def write(self, data):
                take = min(len(data), flash.room)
                f.write(data[:take])
                flash.room -= take
                if take < len(data):
                    raise OSError(errno.ENOSPC, "No space left on device")
                return take

        return Writer()


def test_a_write_that_finds_the_flash_full_leaves_the_old_state_and_no_temp_file(
        tmp_path, monkeypatch):
    path = str(tmp_path / "state.json")
    state = StateFile(path)
    state.load()
    state.save({"core": {"ctr": 3}})
    monkeypatch.setattr(store, "open", _FullFlash(10), raising=False)
    with pytest.raises(OSError) as failed:
        state.save({"core": {"ctr": 4}, "items": ["x" * 100]})
    assert is_no_space(failed.value)
    with pytest.raises(OSError):
        write_atomic(str(tmp_path / "index.json"), b"y" * 100)
    monkeypatch.undo()
    assert StateFile(path).load() == {"core": {"ctr": 3}}
    assert sorted(os.listdir(tmp_path)) == ["state.json"]  # no half-written temp files left


def test_an_interrupted_atomic_write_is_settled_before_reading(tmp_path):
    path = str(tmp_path / "outbox.jsonl")
    with open(path + ".tmp", "w") as f:
        f.write('#7\n')  # the rewrite was complete; the rename never happened (FAT window)
    assert Outbox(path).last_seq() == 7 and not os.path.exists(path + ".tmp")
    with open(path + ".tmp", "w") as f:
        f.write('#9\n{"v":1,"se')  # torn: the committed file wins
    finish_atomic(path)
    assert not os.path.exists(path + ".tmp") and Outbox(path).last_seq() == 7


# -- the media cache on real flash: statvfs budget, .part files, orphans ------------------------

def _fill(path, size):
    with open(path, "wb") as f:
        f.write(b"\0" * size)


def test_the_cache_budget_follows_the_free_flash_and_counts_downloads_in_progress(tmp_path):
    flash = {"free": 1000000}
    cache = MediaCache(str(tmp_path / "cache"), 2000000, lambda: (flash["free"], 4096),
                       reserve=100000)
    assert cache.budget() == 900000 and cache.free() == 900000  # the flash, not cache_bytes
    _fill(cache.part_path("a" * 64), 5000)
    flash["free"] -= 8192  # two blocks
    assert cache.used() == 5000
    assert cache.budget() == 900000 and cache.free() == 900000 - 8192
    flash["free"] = 10 ** 9
    assert cache.budget() == 2000000  # cache_bytes stays the upper bound
    flash["free"] = 50000  # fuller than the reserve: nothing fits
    assert cache.make_room(10, keep={"a" * 64}, sha="a" * 64) is None


def test_make_room_counts_the_part_already_downloaded_and_evicts_in_blocks(tmp_path):
    flash = {"free": 0}
    cache = MediaCache(str(tmp_path / "cache"), 10 ** 6, lambda: (flash["free"], 4096),
                       reserve=4096)
    for sha in ("b" * 64, "c" * 64):
        _fill(cache.part_path(sha), 4000)
        cache.add(sha, 4000, "mp3")
    _fill(cache.part_path("d" * 64), 6000)
    flash["free"] = 4096 + 4096  # one block above the reserve
    # "d" needs 3 blocks, has 2: one more fits without evicting anything.
    assert cache.make_room(9000, keep={"d" * 64}, sha="d" * 64) == []
    # One block more than that: the oldest unneeded item (one block) goes.
    assert cache.make_room(13000, keep={"d" * 64}, sha="d" * 64) == ["b" * 64]


def test_files_nobody_owns_are_swept_and_a_full_flash_heals(tmp_path):
    directory = str(tmp_path / "cache")
    flash = {"free": 10 ** 6}
    cache = MediaCache(directory, 10 ** 6, lambda: (flash["free"], 4096), reserve=65536)
    for sha in ("a" * 64, "b" * 64):
        _fill(cache.part_path(sha), 300)
        cache.add(sha, 300, "mp3")
    _fill(cache.part_path("c" * 64), 100)            # wanted download in progress
    _fill(cache.part_path("d" * 64), 100)            # nobody wants it any more
    _fill(directory + "/" + "e" * 32 + ".mp3", 300)  # finished, but the index lost it
    _fill(directory + "/index.json.tmp", 10)         # an interrupted index write
    again = MediaCache(directory, 10 ** 6, lambda: (flash["free"], 4096), reserve=65536)
    assert sorted(again.sweep({"c" * 64})) == ["d" * 32 + ".part", "e" * 32 + ".mp3"]
    assert sorted(os.listdir(directory)) == sorted(
        ["index.json", "a" * 32 + ".mp3", "b" * 32 + ".mp3", "c" * 32 + ".part"])
    flash["free"] = 1000  # ENOSPC somewhere: heal until the reserve is free again
    evicted = again.heal({"b" * 64, "c" * 64})
    assert evicted == ["a" * 64] and again.shas() == ["b" * 64]


def test_a_power_cut_between_index_and_rename_keeps_the_finished_download(tmp_path):
    directory = str(tmp_path / "cache")
    cache = MediaCache(directory, 10 ** 6)
    _fill(cache.part_path("a" * 64), 300)
    real_rename = os.rename

    def cut(src, dst):
        raise OSError(errno.EIO, "power cut")

    os.rename = cut
    try:
        with pytest.raises(OSError):
            cache.add("a" * 64, 300, "mp3")
    finally:
        os.rename = real_rename
    assert not cache.has("a" * 64)
    again = MediaCache(directory, 10 ** 6)
    assert again.shas() == [] and os.path.getsize(again.part_path("a" * 64)) == 300
