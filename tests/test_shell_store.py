"""What survives a reboot (firmware/store.py): the event outbox and the state file, in a real
directory standing in for the receiver's flash."""

from firmware.store import Outbox, StateFile


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
