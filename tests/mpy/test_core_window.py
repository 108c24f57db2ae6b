"""The receiver's schedule window (issue 10, delivered ahead): media fetched ahead within the
cache budget, earliest first; an occurrence held in the window and sent again as a ``play``
plays once; the window plays on time with the link down; a new window replaces the old.

Runs under CPython (pytest) and under MicroPython (make test-micropython): plain functions and
asserts only. Time is network ms, passed in; nothing sleeps.
"""

from firmware import core as C
from protocol import messages as M

KEY = b"k" * 32
DEV = "rx-01"
SITE = "xa-01"
T0 = 1800000000000  # network ms
MIN = 60000


class Head:
    def __init__(self):
        self.ctr = 0

    def cmd(self, kind, args):
        self.ctr += 1
        return M.sign_command(KEY, DEV, kind, args, self.ctr, T0 + 86400000, "c%d" % self.ctr)


def play(bid, at, sha, size=1000, dur=10000):
    return {"bid": bid, "item": "m-" + bid, "url": "http://h/m/" + bid, "sha": sha,
            "size": size, "dur": dur, "codec": "adpcm", "rate": 16000, "prio": M.PRIO_NORMAL,
            "at": at}


def sha(n):
    return ("%02x" % n) * 32


def window(items, frm=T0, to=T0 + 48 * 60 * MIN):
    return {"from": frm, "to": to, "items": items}


def new_core(budget=None, cached=()):
    core = C.ReceiverCore(DEV, SITE, KEY, volume=60)
    core.set_synced(T0)
    core.set_cached(cached)
    core.cache_budget = budget
    core.link_up(T0)
    return core


def fetched_shas(acts):
    return [a[1]["sha"] for a in acts if a[0] == C.FETCH]


def events(acts, kind):
    return [a[1] for a in acts if a[0] == C.EVENT and a[1]["k"] == kind]


def starts(acts):
    return [a for a in acts if a[0] == C.START]


def test_the_windows_media_is_fetched_ahead_earliest_first_within_the_budget():
    core, head = new_core(budget=2500), Head()
    items = [play("b3", T0 + 30 * MIN, sha(3)), play("b1", T0 + 10 * MIN, sha(1)),
             play("b2", T0 + 20 * MIN, sha(2)), play("b1b", T0 + 25 * MIN, sha(1))]
    acts = core.on_command(head.cmd(M.SCHEDULE, window(items)), T0)
    assert events(acts, M.EV_ACK)[0]["ok"]
    # 1000 + 1000 fit 2500, the third does not: it waits (and is not reported failing).
    assert sorted(fetched_shas(acts)) == [sha(1), sha(2)]
    for n in (1, 2):
        core.media_ready(sha(n), T0 + 1000)
    assert fetched_shas(core.tick(T0 + 2000)) == []
    # What plays first is played first; a fetch ahead waits for room.
    core.tick(T0 + 10 * MIN)
    first = core.current
    assert first is not None and first.bid == "b1"
    acts = core.finished(first, T0 + 10 * MIN + 10000) + core.tick(T0 + 10 * MIN + 10001)
    # b2 still needs sha 2, b1b sha 1: with sha 3, 3000 > 2500: it waits for b2 to play.
    assert fetched_shas(acts) == []
    core.tick(T0 + 20 * MIN)
    assert core.current.bid == "b2"
    acts = core.finished(core.current, T0 + 20 * MIN + 10000)
    assert fetched_shas(acts) == [sha(3)]  # sha 1 and sha 3: 2000, it fits


def test_without_a_budget_everything_is_fetched_at_once():
    core, head = new_core(), Head()
    items = [play("b%d" % n, T0 + n * MIN, sha(n)) for n in range(1, 5)]
    acts = core.on_command(head.cmd(M.SCHEDULE, window(items)), T0)
    assert sorted(fetched_shas(acts)) == [sha(n) for n in range(1, 5)]


def test_an_occurrence_in_the_window_and_sent_again_as_a_play_plays_once():
    core, head = new_core(cached=(sha(1),)), Head()
    at = T0 + 10 * MIN
    core.on_command(head.cmd(M.SCHEDULE, window([play("b1", at, sha(1))])), T0)
    # The broadcast made 10 min ahead: the same id, acknowledged and ignored.
    acts = core.on_command(head.cmd(M.PLAY, play("b1", at, sha(1))), at - 5 * MIN)
    assert events(acts, M.EV_ACK)[0]["ok"]
    assert [it.bid for it in core.schedule] == ["b1"]
    acts = core.tick(at)
    assert [s[1].bid for s in starts(acts)] == ["b1"]
    done = core.finished(core.current, at + 10000)
    assert events(done, M.EV_ENDED)[0]["reason"] == M.END_FINISHED
    # After it played: neither the play again nor the next window brings it back.
    core.on_command(head.cmd(M.PLAY, play("b1", at, sha(1))), at + 10001)
    core.on_command(head.cmd(M.SCHEDULE, window([play("b1", at, sha(1))], frm=at - 1)),
                    at + 10002)
    assert len(core.schedule) == 0 and not starts(core.tick(at + 20000))


def test_the_window_plays_on_time_with_the_link_down():
    core, head = new_core(), Head()
    at = T0 + 3 * MIN
    core.on_command(head.cmd(M.SCHEDULE, window([play("b1", at, sha(1))])), T0)
    core.media_ready(sha(1), T0 + 2000)
    core.link_down(T0 + MIN)
    acts = core.tick(at - C.START_LEAD_MS)
    (start,) = starts(acts)
    assert start[1].bid == "b1" and start[2] == 0 and start[4] == at  # first sample at `at`
    assert events(acts, M.EV_STARTED)[0]["at"] == at
    ended = events(core.finished(start[1], at + 10000), M.EV_ENDED)[0]
    assert ended["bid"] == "b1" and ended["played"] == 10000


def test_a_new_window_drops_what_left_it_and_keeps_what_was_stopped_out():
    core, head = new_core(cached=(sha(1), sha(2))), Head()
    items = [play("b1", T0 + 10 * MIN, sha(1)), play("b2", T0 + 20 * MIN, sha(2))]
    core.on_command(head.cmd(M.SCHEDULE, window(items)), T0)
    # b2 cancelled (stop), b1 rejected (left out), b3 the moved occurrence.
    core.on_command(head.cmd(M.STOP, {"bid": "b2"}), T0 + 1000)
    moved = play("b3", T0 + 15 * MIN, sha(1))
    acts = core.on_command(head.cmd(M.SCHEDULE, window([items[1], moved], frm=T0 + 2000)),
                           T0 + 2000)
    assert events(acts, M.EV_ACK)[0]["ok"]
    assert [it.bid for it in core.schedule] == ["b3"]  # the stopped b2 never comes back
    # An empty window clears it; the state to flash says so.
    acts = core.on_command(head.cmd(M.SCHEDULE, window([], frm=T0 + 3000)), T0 + 3000)
    assert len(core.schedule) == 0 and acts[-1][0] == C.PERSIST
    assert acts[-1][1]["items"] == []


# -- the zone's volume limit ----------------------------------------------------------------

def acks(acts):
    return [(e["ok"], e.get("reason")) for e in events(acts, M.EV_ACK)]


def test_the_zones_volume_limit_comes_with_the_window_and_is_enforced():
    core, head = new_core(cached=(sha(1), sha(2))), Head()
    loud = play("b1", T0 + MIN, sha(1))
    loud["vol"] = 90
    # A window whose own play is above its limit is refused whole.
    acts = core.on_command(head.cmd(M.SCHEDULE, dict(window([loud]), vmax=60)), T0)
    assert acks(acts) == [(False, "volume-limit")] and len(core.schedule) == 0
    acts = core.on_command(head.cmd(M.SCHEDULE, dict(window([]), vmax=60)), T0)
    assert acks(acts) == [(True, None)] and core.volume_limit == 60
    assert acts[-1][0] == C.PERSIST and acts[-1][1]["vmax"] == 60
    # A signed command above it, from a head-end token in the wrong hands: refused.
    assert acks(core.on_command(head.cmd(M.PLAY, loud), T0)) == [(False, "volume-limit")]
    assert acks(core.on_command(head.cmd(M.VOLUME, {"vol": 95}), T0)) == [
        (False, "volume-limit")]
    assert core.volume == 60 and len(core.schedule) == 0
    # Within it: played at its own volume; an emergency is not held to it.
    quiet = play("b2", T0 + MIN, sha(2))
    quiet["vol"] = 50
    assert acks(core.on_command(head.cmd(M.PLAY, quiet), T0)) == [(True, None)]
    assert starts(core.tick(T0 + MIN))[0][3] == 50
    core.finished(core.current, T0 + MIN + 10000)
    alarm = play("e1", T0 + 2 * MIN, sha(1))
    alarm["prio"] = M.PRIO_EMERGENCY
    del alarm["at"]
    acts = core.on_command(head.cmd(M.PLAY, alarm), T0 + 2 * MIN)
    assert acks(acts) == [(True, None)] and starts(acts)[0][3] == 100


def test_a_limit_lowered_under_the_default_volume_holds_what_plays_and_is_kept_in_flash():
    core, head = new_core(cached=(sha(1),)), Head()
    core.on_command(head.cmd(M.VOLUME, {"vol": 80}), T0)
    core.on_command(head.cmd(M.PLAY, play("b1", T0 + 1000, sha(1))), T0)
    assert starts(core.tick(T0 + 1000))[0][3] == 80
    acts = core.on_command(head.cmd(M.SCHEDULE, dict(window([], frm=T0 + 2000), vmax=40)),
                           T0 + 2000)
    assert (C.VOLUME, 40) in acts  # what plays comes down at once
    state = acts[-1][1]
    rebooted = C.ReceiverCore(DEV, SITE, KEY, volume=60, state=state)
    rebooted.set_synced(T0 + 3000)
    rebooted.set_cached((sha(1),))
    assert rebooted.volume_limit == 40 and rebooted.volume == 80
    rebooted.on_command(head.cmd(M.PLAY, play("b2", T0 + 4000, sha(1))), T0 + 3000)
    assert starts(rebooted.tick(T0 + 4000))[0][3] == 40
    # A window without a limit lifts it.
    rebooted.on_command(head.cmd(M.SCHEDULE, window([], frm=T0 + 20000)), T0 + 20000)
    assert rebooted.volume_limit is None


HOUR = 60 * MIN
DAY = 24 * HOUR


def early_hours(start, hours=2, vmax=30):
    return {"from": start, "len": hours * HOUR, "vmax": vmax}


def test_the_early_morning_limit_holds_in_its_hours_every_day_and_only_then():
    # The hours begin an hour after T0, last two, and recur daily; the zone's own limit is 70.
    core, head = new_core(cached=(sha(1), sha(2))), Head()
    early = early_hours(T0 + HOUR)
    acts = core.on_command(head.cmd(M.SCHEDULE, dict(window([]), vmax=70, early=early)), T0)
    assert acks(acts) == [(True, None)] and core.early == early
    loud = play("b1", T0 + HOUR + 30 * MIN, sha(1))
    loud["vol"] = 60
    # Within the zone's limit but above the early one at its start: refused, as a window
    # item, as a play, and on the next day's hours too (a receiver offline for days).
    refused = core.on_command(head.cmd(M.SCHEDULE, dict(window([loud]), vmax=70, early=early)),
                              T0)
    assert acks(refused) == [(False, "volume-limit")]
    assert acks(core.on_command(head.cmd(M.PLAY, loud), T0)) == [(False, "volume-limit")]
    next_day = dict(loud, bid="b1d", at=loud["at"] + 3 * DAY)
    assert acks(core.on_command(head.cmd(M.PLAY, next_day), T0)) == [(False, "volume-limit")]
    # The same play after the hours is fine, and so is a default volume above the early limit
    # (it is for the whole day): held to the early limit in the hours.
    later = dict(loud, bid="b2", at=T0 + 4 * HOUR)
    assert acks(core.on_command(head.cmd(M.PLAY, later), T0)) == [(True, None)]
    assert acks(core.on_command(head.cmd(M.VOLUME, {"vol": 65}), T0)) == [(True, None)]
    quiet = dict(play("b3", T0 + HOUR + 10 * MIN, sha(2)))
    assert acks(core.on_command(head.cmd(M.PLAY, quiet), T0)) == [(True, None)]
    assert starts(core.tick(T0 + HOUR + 10 * MIN))[0][3] == 30
    core.finished(core.current, T0 + HOUR + 10 * MIN + 10000)
    # An emergency in the hours is not held to them.
    alarm = play("e1", None, sha(1))
    alarm["prio"] = M.PRIO_EMERGENCY
    del alarm["at"]
    acts = core.on_command(head.cmd(M.PLAY, alarm), T0 + HOUR + 30 * MIN)
    assert acks(acts) == [(True, None)] and starts(acts)[0][3] == 100
    core.finished(core.current, T0 + HOUR + 30 * MIN + 10000)
    assert starts(core.tick(T0 + 4 * HOUR))[0][3] == 60


def test_what_plays_as_the_early_hours_begin_comes_down_and_goes_back_up_when_they_end():
    core, head = new_core(cached=(sha(1),)), Head()
    early = early_hours(T0 + HOUR, hours=1, vmax=25)
    core.on_command(head.cmd(M.SCHEDULE, dict(window([]), early=early)), T0)
    long_play = play("b1", T0 + HOUR - MIN, sha(1), dur=3 * HOUR)
    long_play["vol"] = 80
    core.on_command(head.cmd(M.PLAY, long_play), T0)
    assert starts(core.tick(T0 + HOUR - MIN))[0][3] == 80
    assert (C.VOLUME, 25) in core.tick(T0 + HOUR)
    assert [a for a in core.tick(T0 + HOUR + MIN) if a[0] == C.VOLUME] == []
    assert (C.VOLUME, 80) in core.tick(T0 + 2 * HOUR + 1)
    # Kept in flash across a reboot, and lifted by a window without it.
    rebooted = C.ReceiverCore(DEV, SITE, KEY, volume=60, state=core.export_state())
    assert rebooted.early == early
    rebooted.set_synced(T0 + 3 * HOUR)
    rebooted.on_command(head.cmd(M.SCHEDULE, window([], frm=T0 + 3 * HOUR)), T0 + 3 * HOUR)
    assert rebooted.early is None
