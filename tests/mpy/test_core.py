"""The receiver core: command acceptance, schedule, preemption, media, streams, proof of play.

Runs under CPython (pytest) and under MicroPython (make test-micropython): plain functions and
asserts only. Time is network ms, passed in; nothing sleeps.
"""

from firmware import core as C
from firmware import fetch_policy as FP
from protocol import messages as M
from protocol.frames import CODEC_ADPCM, FLAG_LAST, pack_frame
from protocol.signing import HmacKey, seal

KEY = b"k" * 32
OTHER_KEY = b"x" * 32
DEV = "rx-01"
SITE = "xa-01"
SHA = "ab" * 32
SHA2 = "cd" * 32
T0 = 1800000000000  # network ms


class Head:
    """A tiny head-end: signs commands with a growing counter."""

    def __init__(self, key=KEY, dev=DEV):
        self.key = key
        self.dev = dev
        self.ctr = 0

    def cmd(self, kind, args, exp=T0 + 3600000, ctr=None):
        if ctr is None:
            self.ctr += 1
            ctr = self.ctr
        return M.sign_command(self.key, self.dev, kind, args, ctr, exp, "c%d" % ctr)


def media(bid="b1", item="m1", sha=SHA, at=None, dur=10000, prio=M.PRIO_NORMAL, vol=None):
    a = {"bid": bid, "item": item, "url": "http://h/m/" + item, "sha": sha, "size": 1000,
         "dur": dur, "codec": "adpcm", "rate": 16000, "prio": prio}
    if at is not None:
        a["at"] = at
    if vol is not None:
        a["vol"] = vol
    return a


def new_core(cached=(SHA, SHA2), state=None):
    core = C.ReceiverCore(DEV, SITE, KEY, volume=60, emergency_volume=95, state=state)
    core.set_synced(T0)
    core.set_cached(cached)
    return core


def kinds(acts):
    return [a[0] for a in acts]


def events(acts, kind=None):
    out = [a[1] for a in acts if a[0] == C.EVENT]
    if kind is not None:
        out = [e for e in out if e["k"] == kind]
    return out


def starts(acts):
    return [a for a in acts if a[0] == C.START]


# -- command acceptance -------------------------------------------------------------------

def test_valid_play_is_acked_and_scheduled():
    core, head = new_core(), Head()
    acts = core.on_command(head.cmd(M.PLAY, media(at=T0 + 5000)), T0)
    acks = events(acts, M.EV_ACK)
    assert acks[0]["ok"] is True and acks[0]["cmd"] == "c1"
    assert len(core.schedule) == 1 and not starts(acts)
    assert acts[-1][0] == C.PERSIST and acts[-1][1]["ctr"] == 1


def test_bad_signature_changes_nothing_and_is_reported():
    core = new_core()
    acts = core.on_command(Head(key=OTHER_KEY).cmd(M.PLAY, media(at=T0 + 5000)), T0)
    assert len(core.schedule) == 0
    ack = events(acts, M.EV_ACK)[0]
    assert ack["ok"] is False and ack["reason"] == "bad-signature" and ack["cmd"] is None
    rej = events(acts, M.EV_REJECTED)[0]
    assert rej["reason"] == "bad-signature" and rej["topic"] == "cmd"
    assert core.counters["rejected"] == 1


def test_replayed_counter_is_rejected():
    core, head = new_core(), Head()
    payload = head.cmd(M.PLAY, media(at=T0 + 5000))
    core.on_command(payload, T0)
    acts = core.on_command(payload, T0 + 10)
    assert events(acts, M.EV_REJECTED)[0]["reason"] == "replay"
    assert events(acts, M.EV_ACK)[0]["cmd"] == "c1"  # authentic, so the id can be named
    older = head.cmd(M.STOP, {}, ctr=1)
    acts = core.on_command(older, T0 + 20)
    assert events(acts, M.EV_REJECTED)[0]["reason"] == "replay"
    assert len(core.schedule) == 1 and core.counters["replay"] == 2


def test_replay_window_survives_a_reboot():
    core, head = new_core(), Head()
    payload = head.cmd(M.VOLUME, {"vol": 30})
    state = core.on_command(payload, T0)[-1][1]
    rebooted = new_core(state=state)
    assert rebooted.volume == 30
    acts = rebooted.on_command(payload, T0 + 1000)
    assert events(acts, M.EV_REJECTED)[0]["reason"] == "replay"


def test_expired_command_is_rejected():
    core, head = new_core(), Head()
    acts = core.on_command(head.cmd(M.PLAY, media(), exp=T0 - 1), T0)
    assert events(acts, M.EV_REJECTED)[0]["reason"] == "expired"
    assert len(core.schedule) == 0 and core.current is None


def test_counter_far_ahead_of_the_clock_is_refused_and_does_not_raise_the_floor():
    core, head = new_core(), Head()
    ok = core.on_command(head.cmd(M.VOLUME, {"vol": 40}), T0)
    assert events(ok, M.EV_ACK)[0]["ok"] and core.volume == 40
    floor = core.export_state()["ctr"]
    for bad in (2 ** 63, T0 + 86400000, T0 + M.MAX_COUNTER_AHEAD_MS + 1):
        acts = core.on_command(head.cmd(M.VOLUME, {"vol": 10}, ctr=bad), T0)
        assert events(acts, M.EV_REJECTED)[0]["reason"] == "future-counter"
        ack = events(acts, M.EV_ACK)[0]
        assert ack["ok"] is False and ack["reason"] == "future-counter" and ack["cmd"] == "c%d" % bad
        assert C.PERSIST not in kinds(acts)
        assert core.volume == 40 and core.export_state()["ctr"] == floor
    assert core.counters["future-counter"] == 3
    # The next ordinary command (counter = the head-end's clock) is still accepted.
    acts = core.on_command(head.cmd(M.VOLUME, {"vol": 20}, ctr=T0 + 5), T0 + 10)
    assert events(acts, M.EV_ACK)[0]["ok"] and core.volume == 20
    assert core.export_state()["ctr"] == T0 + 5


def test_counter_within_the_bound_is_accepted():
    core, head = new_core(), Head()
    edge = T0 + M.MAX_COUNTER_AHEAD_MS
    acts = core.on_command(head.cmd(M.VOLUME, {"vol": 33}, ctr=edge), T0)
    assert events(acts, M.EV_ACK)[0]["ok"] and core.volume == 33
    assert acts[-1][0] == C.PERSIST and acts[-1][1]["ctr"] == edge


def test_held_command_with_a_future_counter_is_judged_by_the_synced_clock():
    core = C.ReceiverCore(DEV, SITE, KEY)
    head = Head()
    # Before sync the board's clock may say year 2000: nothing is judged yet.
    assert core.on_command(head.cmd(M.VOLUME, {"vol": 11}, ctr=2 ** 63), 946684800000) == []
    assert core.on_command(head.cmd(M.VOLUME, {"vol": 12}, ctr=T0), 946684800000) == []
    acts = core.set_synced(T0)
    assert events(acts, M.EV_REJECTED)[0]["reason"] == "future-counter"
    assert [e["ok"] for e in events(acts, M.EV_ACK)] == [False, True]
    assert core.volume == 12 and core.export_state()["ctr"] == T0


def test_future_counter_refused_after_a_restart_from_saved_state():
    core, head = new_core(), Head()
    state = core.on_command(head.cmd(M.VOLUME, {"vol": 30}), T0)[-1][1]
    core.on_command(head.cmd(M.VOLUME, {"vol": 10}, ctr=2 ** 63), T0)
    rebooted = new_core(state=core.export_state())
    assert rebooted.export_state()["ctr"] == state["ctr"]
    acts = rebooted.on_command(head.cmd(M.VOLUME, {"vol": 50}, ctr=T0 + 1), T0 + 1)
    assert events(acts, M.EV_ACK)[0]["ok"] and rebooted.volume == 50


def test_command_for_another_device_is_rejected():
    core = new_core()
    acts = core.on_command(Head(dev="rx-02").cmd(M.REBOOT, {}), T0)
    assert events(acts, M.EV_REJECTED)[0]["reason"] == "wrong-device"
    assert C.REBOOT not in kinds(acts)


def test_garbage_is_counted_and_never_raises():
    core = new_core()
    for junk in (b"", b"\xff" * 3, b"{}", b"x" * 70, seal(KEY, b"[1,2]"), seal(KEY, b"{\"v\":1}"),
                 seal(KEY, b"\xff\xfe"), bytearray(b"0" * 64 + b"\n{}")):
        core.on_command(junk, T0)
    assert core.counters["rejected"] == 8
    assert core.counters["malformed"] >= 5
    assert core.current is None and len(core.schedule) == 0


def test_authentic_command_with_bad_args_gets_a_negative_ack_only():
    core, head = new_core(), Head()
    body = M.command_body(DEV, M.VOLUME, {"vol": 500}, 1, T0 + 1000, "c-bad")
    acts = core.on_command(seal(KEY, body), T0)
    ack = events(acts, M.EV_ACK)[0]
    assert ack["ok"] is False and ack["reason"] == "bad-field" and ack["cmd"] == "c-bad"
    assert not events(acts, M.EV_REJECTED)
    assert core.volume == 60
    assert head  # counters were not consumed by the refused one: the next command is fine
    assert events(core.on_command(Head().cmd(M.VOLUME, {"vol": 20}), T0), M.EV_ACK)[0]["ok"]


def test_unsupported_codec_is_refused():
    core = C.ReceiverCore(DEV, SITE, KEY, codecs=("mp3",))
    core.set_synced(T0)
    acts = core.on_command(Head().cmd(M.PLAY, media()), T0)
    assert events(acts, M.EV_ACK)[0]["reason"] == "unsupported-codec"
    assert core.current is None


def test_rejected_events_are_rate_limited_but_counted():
    core = new_core()
    bad = Head(key=OTHER_KEY)
    emitted = 0
    for i in range(50):
        emitted += len(events(core.on_command(bad.cmd(M.REBOOT, {}), T0 + i), M.EV_REJECTED))
    assert emitted == C.REJECT_EVENTS_PER_MIN
    assert core.counters["rejected"] == 50
    acts = core.on_command(bad.cmd(M.REBOOT, {}), T0 + 61000)
    assert len(events(acts, M.EV_REJECTED)) == 1


def test_commands_before_clock_sync_are_held_until_sync():
    core = C.ReceiverCore(DEV, SITE, KEY)
    core.set_cached((SHA,))
    head = Head()
    # The board's clock is a year behind: the command would look valid for far too long and
    # "at" would be a year away. Held, it is judged on the synced clock.
    payload = bytearray(head.cmd(M.PLAY, media(at=T0 + 1000)))
    assert core.on_command(payload, T0 - 31536000000) == []
    payload[:] = b"\0" * len(payload)  # the MQTT buffer is reused after the callback
    acts = core.set_synced(T0 + 2000)
    assert events(acts, M.EV_ACK)[0]["ok"]
    assert starts(acts)[0][2] == 1000  # one second late, with a skip


def test_nothing_is_decided_on_an_unsynced_clock_however_long_it_waits():
    # After a power cut the board's RTC says 2000-01-01: an expiry or a start time read on it
    # means nothing, so held commands wait for the sync, not for a timeout.
    year_2000 = 946684800000
    core = C.ReceiverCore(DEV, SITE, KEY)
    core.set_cached((SHA,))
    head = Head()
    core.on_command(head.cmd(M.VOLUME, {"vol": 10}), year_2000)
    core.on_command(head.cmd(M.PLAY, media(at=T0 + 1000)), year_2000)
    for minutes in (1, 10, 60, 600):
        assert core.tick(year_2000 + minutes * 60000) == []
    assert core.volume == 70 and core.current is None
    acts = core.set_synced(T0)
    assert [e["ok"] for e in events(acts, M.EV_ACK)] == [True, True]
    assert core.volume == 10
    assert starts(core.tick(T0 + 1000))


def test_restored_schedule_is_not_dropped_as_missed_before_the_sync():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(at=T0 + 60000)), T0)
    state = core.export_state()
    # Rebooted with a clock that runs a day ahead and no sync yet: nothing is "missed".
    rebooted = C.ReceiverCore(DEV, SITE, KEY, state=state)
    rebooted.set_cached((SHA,))
    assert rebooted.tick(T0 + 86400000) == []
    assert [it.bid for it in rebooted.schedule] == ["b1"]
    rebooted.set_synced(T0 + 59000)
    assert starts(rebooted.tick(T0 + 60000))


def test_held_commands_keep_the_newest_when_too_many_wait():
    core = C.ReceiverCore(DEV, SITE, KEY)
    head = Head()
    for vol in range(C.MAX_HELD + 3):
        core.on_command(head.cmd(M.VOLUME, {"vol": vol}), T0)
    assert core.counters["held_overflow"] == 3
    acts = core.set_synced(T0)
    assert len(events(acts, M.EV_ACK)) == C.MAX_HELD
    assert core.volume == C.MAX_HELD + 2


# -- scheduling and proof of play ---------------------------------------------------------

def test_item_starts_at_its_time_with_started_event():
    # Handed to the player START_LEAD_MS ahead, to start at its time: events say ``at``.
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(at=T0 + 5000)), T0)
    lead = T0 + 5000 - C.START_LEAD_MS
    assert core.next_due(T0) == lead
    assert not starts(core.tick(lead - 1))
    acts = core.tick(lead)
    (_, item, skip, vol, first), = starts(acts)
    assert item.bid == "b1" and skip == 0 and vol == 60 and first == T0 + 5000
    ev = events(acts, M.EV_STARTED)[0]
    assert ev["bid"] == "b1" and ev["item"] == "m1" and ev["at"] == T0 + 5000
    assert ev["t"] == T0 + 5000 and ev["skip"] == 0
    acts = core.finished(item, T0 + 15000)
    ended = events(acts, M.EV_ENDED)[0]
    assert ended["reason"] == "finished" and ended["played"] == 10000
    assert core.current is None


def test_late_start_skips_into_the_item():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(at=T0 - 3000)), T0)
    assert core.current is not None
    acts = core.tick(T0)
    assert not starts(acts)  # already started by the command itself
    rebooted_core = new_core()
    acts = rebooted_core.on_command(Head().cmd(M.PLAY, media(at=T0 - 3000)), T0)
    assert starts(acts)[0][2] == 3000
    assert events(acts, M.EV_STARTED)[0]["skip"] == 3000


def test_item_wholly_in_the_past_is_reported_missed():
    core, head = new_core(), Head()
    acts = core.on_command(head.cmd(M.PLAY, media(at=T0 - 20000, dur=10000)), T0)
    ended = events(acts, M.EV_ENDED)[0]
    assert ended["reason"] == "failed" and ended["detail"] == "missed"
    assert ended["played"] == 0 and core.current is None


def test_missing_media_is_fetched_then_fails_at_air_time_if_still_missing():
    core, head = new_core(cached=()), Head()
    acts = core.on_command(head.cmd(M.PLAY, media(at=T0 + 5000)), T0)
    fetch = [a for a in acts if a[0] == C.FETCH][0][1]
    assert fetch["sha"] == SHA and fetch["url"] == "http://h/m/m1" and fetch["size"] == 1000
    assert SHA in core.needed_media()
    assert not [a for a in core.tick(T0 + 100) if a[0] == C.FETCH]  # not twice
    acts = core.tick(T0 + 5000)
    ended = events(acts, M.EV_ENDED)[0]
    assert ended["detail"] == "not-cached" and not starts(acts)


def test_fetched_media_plays_and_failed_fetch_is_retried():
    core, head = new_core(cached=()), Head()
    core.on_command(head.cmd(M.PLAY, media(at=T0 + 100000)), T0)
    core.link_up(T0)
    acts = []
    t = T0
    for attempt in range(FP.ATTEMPTS):  # the backoff grows: 2 s, then 4 s
        acts = core.media_failed(SHA, t, "http 503")
        t += FP.BACKOFF_MS * (attempt + 1)
        if attempt + 1 < FP.ATTEMPTS:
            assert not events(acts)  # not yet reported
            assert not [a for a in core.tick(t - 1) if a[0] == C.FETCH]
            assert [a for a in core.tick(t) if a[0] == C.FETCH]
    assert events(acts, M.EV_FETCH_FAILED)[0]["reason"] == "http 503"
    t -= FP.BACKOFF_MS * FP.ATTEMPTS
    assert not [a for a in core.tick(t + 2000) if a[0] == C.FETCH]
    assert [a for a in core.tick(t + FP.RETRY_MS) if a[0] == C.FETCH]  # still needed
    acts = core.media_ready(SHA, T0 + 40000)
    assert events(acts, M.EV_FETCHED)[0]["sha"] == SHA
    assert starts(core.tick(T0 + 100000))


def test_emergency_now_waits_for_its_media_then_preempts():
    core, head = new_core(cached=(SHA,)), Head()
    core.on_command(head.cmd(M.PLAY, media(at=T0)), T0)
    normal = core.current
    acts = core.on_command(head.cmd(M.PLAY, media(bid="e1", item="m2", sha=SHA2,
                                                  prio=M.PRIO_EMERGENCY)), T0 + 2000)
    assert core.current is normal and [a for a in acts if a[0] == C.FETCH]
    acts = core.media_ready(SHA2, T0 + 2500)
    assert [a for a in acts if a[0] == C.STOP][0][1:] == (normal, "preempted")
    ended = events(acts, M.EV_ENDED)[0]
    assert ended["bid"] == "b1" and ended["reason"] == "preempted" and ended["played"] == 2500
    (_, item, skip, vol, first), = starts(acts)
    assert item.bid == "e1" and skip == 0 and vol == 95 and first == T0 + 2500  # emergency volume from config
    assert events(acts, M.EV_STARTED)[0]["at"] is None


TONE = "ef" * 32


def with_lead(args, sha=TONE, codec="adpcm"):
    args["lead"] = {"item": "tone", "sha": sha, "dur": 3000, "codec": codec, "rate": 22050}
    return args


def test_an_emergency_opens_with_its_pinned_tone_while_its_media_is_fetched():
    core, head = new_core(cached=(SHA, TONE)), Head()
    core.on_command(head.cmd(M.PLAY, media(at=T0)), T0)
    normal = core.current
    acts = core.on_command(head.cmd(M.PLAY, with_lead(media(
        bid="e1", item="m2", sha=SHA2, prio=M.PRIO_EMERGENCY))), T0 + 2000)
    # The tone at once (the normal programme preempted and reported so), the media fetched.
    assert [a for a in acts if a[0] == C.STOP][0][1:] == (normal, "preempted")
    (_, tone, skip, vol, _), = starts(acts)
    assert tone.sha == TONE and tone.bid == "e1" and tone.args["rate"] == 22050
    assert skip == 0 and vol == 95
    assert [a[1]["sha"] for a in acts if a[0] == C.FETCH] == [SHA2]
    assert events(acts, M.EV_STARTED) == []  # the tone is not the emergency: not reported
    # Fetched while the tone plays: the emergency follows it, not cutting it.
    acts = core.media_ready(SHA2, T0 + 3000)
    assert not starts(acts) and core.current is tone
    acts = core.finished(tone, T0 + 5000)
    assert events(acts, M.EV_ENDED) == []
    (_, item, skip, vol, first), = starts(acts)
    assert item.bid == "e1" and item.sha == SHA2 and skip == 0 and first == T0 + 5000
    assert [e["bid"] for e in events(acts, M.EV_STARTED)] == ["e1"]
    ended = events(core.finished(item, T0 + 15000), M.EV_ENDED)
    assert [(e["bid"], e["reason"]) for e in ended] == [("e1", "finished")]
    # Nothing of the tone is kept as something to play again after a reboot.
    assert core.export_state()["items"] == []


def test_a_tone_that_ends_before_the_media_arrives_leaves_the_emergency_waiting():
    core, head = new_core(cached=(TONE,)), Head()
    acts = core.on_command(head.cmd(M.PLAY, with_lead(media(
        bid="e1", item="m2", sha=SHA2, prio=M.PRIO_EMERGENCY))), T0)
    tone = starts(acts)[0][1]
    assert not starts(core.finished(tone, T0 + 3000)) and core.current is None
    (_, item, _, _, _), = starts(core.media_ready(SHA2, T0 + 8000))
    assert item.sha == SHA2 and item.bid == "e1"


def test_no_tone_when_the_media_is_held_the_tone_is_not_or_its_codec_is_foreign():
    for cached, codec in (((SHA2, TONE), "adpcm"), ((), "adpcm"), ((TONE,), "mp3")):
        core, head = new_core(cached=cached), Head()
        core.codecs = ("adpcm",)
        acts = core.on_command(head.cmd(M.PLAY, with_lead(media(
            bid="e1", item="m2", sha=SHA2, prio=M.PRIO_EMERGENCY), codec=codec)), T0)
        assert not [s for s in starts(acts) if s[1].sha == TONE], (cached, codec)


def test_a_cancel_or_a_newer_emergency_during_the_tone_is_reported_once():
    core, head = new_core(cached=(SHA, TONE)), Head()
    core.on_command(head.cmd(M.PLAY, with_lead(media(
        bid="e1", item="m2", sha=SHA2, prio=M.PRIO_EMERGENCY))), T0)
    acts = core.on_command(head.cmd(M.PLAY, media(bid="e2", prio=M.PRIO_EMERGENCY)), T0 + 500)
    assert core.current.bid == "e2" and events(acts, M.EV_ENDED) == []  # the tone: unreported
    # The older emergency, once fetched, is over for good: preempted, reported once.
    acts = core.media_ready(SHA2, T0 + 900)
    assert [(e["bid"], e["reason"]) for e in events(acts, M.EV_ENDED)] == [("e1", "preempted")]
    assert core.current.bid == "e2"
    core, head = new_core(cached=(TONE,)), Head()
    core.on_command(head.cmd(M.PLAY, with_lead(media(
        bid="e1", item="m2", sha=SHA2, prio=M.PRIO_EMERGENCY))), T0)
    acts = core.on_command(head.cmd(M.STOP, {"bid": "e1"}), T0 + 500)
    assert core.current is None and len(core.schedule) == 0
    assert not starts(core.media_ready(SHA2, T0 + 900))


def test_event_order_is_ack_then_stop_then_start():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(at=T0)), T0)
    acts = core.on_command(head.cmd(M.PLAY, media(bid="e1", item="m2", sha=SHA2,
                                                  prio=M.PRIO_EMERGENCY, vol=80)), T0 + 10)
    assert [e["k"] for e in events(acts)] == ["ack", "ended", "started"]
    seqs = [e["seq"] for e in events(acts)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert starts(acts)[0][3] == 80  # the command's own volume wins


def test_newest_emergency_wins():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(bid="e1", prio=M.PRIO_EMERGENCY)), T0)
    acts = core.on_command(head.cmd(M.PLAY, media(bid="e2", sha=SHA2,
                                                  prio=M.PRIO_EMERGENCY)), T0 + 100)
    assert events(acts, M.EV_ENDED)[0]["bid"] == "e1"
    assert core.current.bid == "e2"


def test_equal_priority_waits_and_starts_from_the_beginning():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(bid="a", at=T0, dur=60000)), T0)
    first = core.current
    core.on_command(head.cmd(M.PLAY, media(bid="b", sha=SHA2, at=T0 + 30000)), T0)
    assert not starts(core.tick(T0 + 30000))
    acts = core.finished(first, T0 + 60000)
    (_, item, skip, _, at), = starts(acts)
    assert item.bid == "b" and skip == 0 and at == T0 + 60000


def test_waiting_item_past_its_grace_is_skipped_as_preempted():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(bid="long", at=T0, dur=3600000)), T0)
    core.on_command(head.cmd(M.PLAY, media(bid="b", sha=SHA2, at=T0 + 1000)), T0)
    core.tick(T0 + 1000)
    acts = core.tick(T0 + 1001 + C.GRACE_MS)
    ended = events(acts, M.EV_ENDED)[0]
    assert ended["bid"] == "b" and ended["reason"] == "preempted" and ended["played"] == 0
    assert core.current.bid == "long"


def test_priority_preempts_normal_and_normal_does_not_preempt_priority():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(bid="p", at=T0, prio=M.PRIO_PRIORITY)), T0)
    core.on_command(head.cmd(M.PLAY, media(bid="n", sha=SHA2, at=T0 + 10)), T0)
    core.tick(T0 + 10)
    assert core.current.bid == "p"
    core2 = new_core()
    core2.on_command(head.cmd(M.PLAY, media(bid="n", at=T0)), T0)
    acts = core2.on_command(head.cmd(M.PLAY, media(bid="p", sha=SHA2, at=T0 + 10,
                                                   prio=M.PRIO_PRIORITY)), T0)
    # (10 ms ahead: in the lead window, so handed over at once, to start at T0 + 10)
    assert events(acts, M.EV_ENDED)[0]["reason"] == "preempted"
    assert starts(acts)[0][4] == T0 + 10
    assert core2.current.bid == "p"


def test_stop_with_bid_cancels_and_removes_it():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(bid="a", at=T0)), T0)
    core.on_command(head.cmd(M.PLAY, media(bid="later", at=T0 + 90000)), T0)
    acts = core.on_command(head.cmd(M.STOP, {"bid": "a"}), T0 + 1000)
    assert events(acts, M.EV_ENDED)[0]["reason"] == "cancelled"
    assert [a for a in acts if a[0] == C.STOP][0][2] == "cancelled"
    assert core.current is None and len(core.schedule) == 1
    core.on_command(head.cmd(M.STOP, {"bid": "later"}), T0 + 2000)
    assert len(core.schedule) == 0
    assert not starts(core.tick(T0 + 90000))


def test_stop_without_bid_stops_everything_due_but_keeps_the_future():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(bid="a", at=T0, dur=60000)), T0)
    core.on_command(head.cmd(M.PLAY, media(bid="b", at=T0 + 10)), T0)
    core.on_command(head.cmd(M.PLAY, media(bid="tomorrow", at=T0 + 86400000)), T0)
    core.tick(T0 + 10)
    core.on_command(head.cmd(M.STOP, {}), T0 + 20)
    assert core.current is None
    assert [it.bid for it in core.schedule] == ["tomorrow"]


def test_repeated_play_of_the_same_broadcast_is_idempotent():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(bid="a", at=T0)), T0)
    item = core.current
    acts = core.on_command(head.cmd(M.PLAY, media(bid="a", at=T0)), T0 + 500)
    assert events(acts, M.EV_ACK)[0]["ok"] and not starts(acts) and core.current is item
    core.finished(item, T0 + 10000)
    assert not starts(core.on_command(head.cmd(M.PLAY, media(bid="a", at=T0)), T0 + 10001))


def test_schedule_replaces_its_window_only():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(bid="keep", at=T0 + 500000)), T0)
    core.on_command(head.cmd(M.PLAY, media(bid="old", at=T0 + 20000)), T0)
    items = [media(bid="n2", at=T0 + 40000), media(bid="n1", at=T0 + 30000, sha=SHA2)]
    acts = core.on_command(head.cmd(M.SCHEDULE, {"from": T0, "to": T0 + 100000,
                                                 "items": items}), T0)
    assert events(acts, M.EV_ACK)[0]["ok"]
    assert [it.bid for it in core.schedule] == ["n1", "n2", "keep"]


def test_schedule_survives_a_reboot():
    core, head = new_core(), Head()
    state = core.on_command(head.cmd(M.PLAY, media(bid="a", at=T0 + 60000)), T0)[-1][1]
    rebooted = new_core(state=state)
    acts = rebooted.tick(T0 + 60000)
    assert starts(acts)[0][1].bid == "a"
    assert events(acts, M.EV_STARTED)[0]["seq"] > 1  # event numbers go on across reboots


def test_volume_identify_reboot_fetch_actions():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(bid="a", at=T0)), T0)
    acts = core.on_command(head.cmd(M.VOLUME, {"vol": 40}), T0)
    assert (C.VOLUME, 40) in acts and core.volume == 40
    assert (C.IDENTIFY, 30) in core.on_command(head.cmd(M.IDENTIFY, {"secs": 30}), T0)
    assert (C.IDENTIFY, C.IDENTIFY_DEFAULT_S) in core.on_command(head.cmd(M.IDENTIFY, {}), T0)
    assert (C.REBOOT,) in core.on_command(head.cmd(M.REBOOT, {}), T0)
    acts = core.on_command(head.cmd(M.FETCH, media()), T0)
    assert events(acts, M.EV_FETCHED)[0]["sha"] == SHA  # already cached: said so at once
    core2 = new_core(cached=())
    acts = core2.on_command(head.cmd(M.FETCH, media()), T0)
    assert [a for a in acts if a[0] == C.FETCH]


def test_player_failure_is_reported_failed():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(bid="a", at=T0)), T0)
    acts = core.failed(core.current, T0 + 300, "read error")
    ended = events(acts, M.EV_ENDED)[0]
    assert ended["reason"] == "failed" and ended["detail"] == "read error"


def test_illegal_transition_is_a_named_error():
    core = new_core()
    try:
        core._transition("finish")
    except C.IllegalTransition as e:
        assert e.state == C.IDLE
    else:
        raise AssertionError("finish while idle must raise")


def test_stale_finish_is_ignored():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(bid="a", at=T0)), T0)
    first = core.current
    core.on_command(head.cmd(M.PLAY, media(bid="e", sha=SHA2, prio=M.PRIO_EMERGENCY)), T0 + 5)
    assert core.finished(first, T0 + 10) == []
    assert core.current.bid == "e"


# -- live streams -------------------------------------------------------------------------

SKEY = "5a" * 32


def stream_args(bid="live1", sid="s1", prio=M.PRIO_LIVE, until=None):
    a = {"bid": bid, "sid": sid, "sno": 7, "key": SKEY, "codec": "adpcm", "rate": 16000,
         "prio": prio}
    if until is not None:
        a["until"] = until
    return a


def frame(seq, play_at, last=False, sno=7, key=SKEY, samples=1600):
    hk = HmacKey(bytes(bytearray(int(key[i:i + 2], 16) for i in range(0, 64, 2))))
    return pack_frame(hk, CODEC_ADPCM, sno, seq, play_at, samples, b"\x01" * 404,
                      FLAG_LAST if last else 0)


def test_stream_subscribes_starts_and_buffers_frames():
    core, head = new_core(), Head()
    acts = core.on_command(head.cmd(M.STREAM, stream_args()), T0)
    assert (C.SUBSCRIBE, "loaxa/v1/xa-01/stream/s1") in acts
    assert starts(acts)[0][1].stream.sid == "s1"
    assert events(acts, M.EV_STARTED)[0]["sid"] == "s1"
    core.on_frame("s1", frame(1, T0 + 600), T0 + 100)
    core.on_frame("s1", frame(0, T0 + 500), T0 + 100)
    assert core.jitter.pop(T0 + 499) is None
    assert core.jitter.pop(T0 + 500).seq == 0
    assert core.jitter.pop(T0 + 600).seq == 1


def test_stream_rejects_forged_and_stale_frames():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.STREAM, stream_args()), T0)
    core.on_frame("s1", frame(0, T0 + 500, key="66" * 32), T0)
    core.on_frame("s1", frame(0, T0 + 500, sno=6), T0)
    core.on_frame("s1", b"LF\x01", T0)
    core.on_frame("nope", frame(0, T0 + 500), T0)
    assert len(core.jitter) == 0
    assert core.counters["bad_frames"] == 1 and core.counters["stale_frames"] == 1
    assert core.counters["malformed"] == 1 and core.counters["stray_frames"] == 1


def test_stream_ends_after_its_last_frame():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.STREAM, stream_args()), T0)
    core.on_frame("s1", frame(0, T0 + 500, last=True), T0 + 10)
    assert core.next_due(T0 + 10) == T0 + 600 + C.STREAM_END_MARGIN_MS
    acts = core.tick(T0 + 600 + C.STREAM_END_MARGIN_MS)
    ended = events(acts, M.EV_ENDED)[0]
    assert ended["reason"] == "finished" and ended["sid"] == "s1"
    assert (C.UNSUBSCRIBE, "loaxa/v1/xa-01/stream/s1") in acts


def test_stream_times_out_without_frames():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.STREAM, stream_args()), T0)
    core.on_frame("s1", frame(0, T0 + 500), T0 + 100)
    assert not events(core.tick(T0 + 100 + C.STREAM_TIMEOUT_MS - 1), M.EV_ENDED)
    ended = events(core.tick(T0 + 100 + C.STREAM_TIMEOUT_MS), M.EV_ENDED)[0]
    assert ended["reason"] == "failed" and ended["detail"] == "stream-timeout"


def test_stream_ends_at_until():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.STREAM, stream_args(until=T0 + 3000)), T0)
    core.on_frame("s1", frame(0, T0 + 500), T0 + 2500)
    acts = core.tick(T0 + 3000)
    assert events(acts, M.EV_ENDED)[0]["reason"] == "finished"
    assert [a for a in acts if a[0] == C.STOP]


def test_live_preempts_normal_and_emergency_preempts_live():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(bid="n", at=T0)), T0)
    acts = core.on_command(head.cmd(M.STREAM, stream_args()), T0 + 100)
    assert events(acts, M.EV_ENDED)[0]["bid"] == "n"
    acts = core.on_command(head.cmd(M.PLAY, media(bid="e", prio=M.PRIO_EMERGENCY)), T0 + 200)
    assert events(acts, M.EV_ENDED)[0]["sid"] == "s1"
    assert (C.UNSUBSCRIBE, "loaxa/v1/xa-01/stream/s1") in acts


def test_live_waits_behind_emergency_while_the_stream_lives():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(bid="e", prio=M.PRIO_EMERGENCY)), T0)
    core.on_command(head.cmd(M.STREAM, stream_args()), T0 + 10)
    assert core.current.bid == "e"
    core.on_frame("s1", frame(0, T0 + 3000), T0 + 2000)
    assert len(core.jitter or ()) == 0  # not buffered while waiting
    acts = core.finished(core.current, T0 + 5000)
    assert starts(acts)[0][1].bid == "live1"


def test_items_missed_while_powered_off_are_reported_after_boot():
    core, head = new_core(), Head()
    state = core.on_command(head.cmd(M.PLAY, media(bid="a", at=T0 + 1000, dur=5000)), T0)[-1][1]
    rebooted = new_core(state=state)
    acts = rebooted.tick(T0 + 3600000)
    ended = events(acts, M.EV_ENDED)[0]
    assert ended["bid"] == "a" and ended["detail"] == "missed"
    assert acts[-1][0] == C.PERSIST and acts[-1][1]["items"] == []
