"""The core's timing decisions: amplifier relay, start lead, time-sync cadence, fetch retries,
link up/down (firmware/core.py, firmware/sync_cadence.py, firmware/fetch_policy.py).

Runs under CPython (pytest) and under MicroPython with the ESP32's numbers (make
test-micropython): plain functions and asserts only. Time is network ms, passed in; nothing
sleeps. Each test drives the core as the shell does: ``tick(now)`` at ``next_due(now)``.
"""

from firmware import core as C
from firmware import fetch_policy as FP
from firmware import sync_cadence as SC
from protocol import messages as M

try:
    from test_core import DEV, KEY, SHA, SHA2, SITE, T0, Head, events, media, starts
except ImportError:  # CPython: tests/mpy is a package
    from .test_core import DEV, KEY, SHA, SHA2, SITE, T0, Head, events, media, starts

SETTLE = 300


def new_core(cached=(SHA, SHA2), settle=SETTLE, burst=5, period_ms=300000, rand=None,
             synced=True):
    core = C.ReceiverCore(DEV, SITE, KEY, amp_settle_ms=settle, timesync_burst=burst,
                          timesync_ms=period_ms, random_below=rand)
    if synced:
        core.set_synced(T0)
    core.set_cached(cached)
    return core


def fetch_args():
    a = media()
    out = {}
    for name in ("item", "url", "sha", "size", "dur", "codec", "rate"):
        out[name] = a[name]
    return out


def of(acts, kind):
    return [a for a in acts if a[0] == kind]


def amp(acts):
    return [a[1] for a in acts if a[0] == C.AMP]


def run_until(core, now, end, log=None):
    """Tick the core at each time it names (as the shell's scheduler does) up to ``end``;
    return (time, action) pairs."""
    out = [] if log is None else log
    while True:
        due = core.next_due(now)
        if due is None or due > end:
            return out
        now = max(now, due)
        for act in core.tick(now):
            out.append((now, act))


# -- amplifier relay ------------------------------------------------------------------------

def test_the_relay_closes_amp_settle_ms_before_the_first_sample_and_opens_when_idle():
    core, head = new_core(), Head()
    at = T0 + 10000
    acts = core.on_command(head.cmd(M.PLAY, media(at=at, dur=5000)), T0)
    assert not amp(acts)  # open while nothing is near
    log = run_until(core, T0, at)
    (on_at, _), = [(t, a) for t, a in log if a[0] == C.AMP]
    (start_at, start), = [(t, a) for t, a in log if a[0] == C.START]
    assert on_at == at - SETTLE  # closed exactly the settle time before the first sample
    assert start_at == at - C.START_LEAD_MS and start[4] == at  # handed over early, plays at at
    acts = core.finished(start[1], at + 5000)
    assert amp(acts) == [False]  # nothing else to play: open again


def test_an_item_that_starts_now_waits_for_the_relay_to_settle():
    core, head = new_core(), Head()
    acts = core.on_command(head.cmd(M.PLAY, media(prio=M.PRIO_EMERGENCY)), T0)
    kinds = [a[0] for a in acts]
    assert kinds.index(C.AMP) < kinds.index(C.START) and amp(acts) == [True]
    (_, item, skip, vol, first_at), = starts(acts)
    assert skip == 0 and first_at == T0 + SETTLE  # the first sample after the relay settled
    assert events(acts, M.EV_STARTED)[0]["t"] == T0


def test_a_slow_counter_write_delays_the_relay_and_the_first_sample_alike():
    # The shell makes each counter durable before the command acts (recovery.DurableGuard):
    # a flash write of 40 ms means the relay closes 40 ms after the command arrived, so the
    # first sample must wait the settle time from then, not from the arrival.
    from firmware.recovery import DurableGuard

    written = T0 + 40
    guard = DurableGuard(KEY, DEV, lambda cmd: written)
    core = C.ReceiverCore(DEV, SITE, KEY, amp_settle_ms=SETTLE, guard=guard)
    core.set_synced(T0)
    core.set_cached((SHA, SHA2))
    acts = core.on_command(Head().cmd(M.PLAY, media(prio=M.PRIO_EMERGENCY)), T0)
    (_, _, _, _, first_at), = starts(acts)
    assert amp(acts) == [True] and first_at == written + SETTLE
    assert events(acts, M.EV_STARTED)[0]["t"] == written


def test_a_clock_resync_during_a_play_does_not_change_what_was_played():
    # 21 s heard, but the time sync moved the clock 21 s back meanwhile: the receiver must
    # still report 21 s played (issue 9: it reported 0 ms), and forward steps likewise.
    for step in (-21000, 5000):
        core, head = new_core(settle=0), Head()
        acts = core.on_command(head.cmd(M.PLAY, media(prio=M.PRIO_EMERGENCY, dur=30000)), T0)
        start, = starts(acts)
        core.clock_stepped(T0 + 10000 + step, step)
        acts = core.finished(start[1], T0 + 21000 + step)
        ended, = events(acts, M.EV_ENDED)
        assert ended["reason"] == M.END_FINISHED and ended["played"] == 21000


def test_a_late_item_with_the_relay_already_closed_is_not_held_back():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(bid="a", at=T0, dur=1000)), T0)
    acts = core.on_command(head.cmd(M.PLAY, media(bid="b", sha=SHA2, at=T0 + 1100)), T0)
    acts = core.finished(core.current, T0 + 1000)
    assert not amp(acts)  # the next item starts within the settle time: the relay stays closed
    start, = starts(acts)  # (100 ms ahead: in the lead window)
    assert start[1].bid == "b" and start[4] == T0 + 1100


def test_the_relay_opens_while_an_item_waits_for_its_media():
    core, head = new_core(cached=()), Head()
    core.link_up(T0)
    acts = core.on_command(head.cmd(M.PLAY, media(prio=M.PRIO_EMERGENCY)), T0)
    assert not amp(acts) and of(acts, C.FETCH)  # nothing to hear yet: no hum from the horn
    acts = core.media_ready(SHA, T0 + 4000)
    assert amp(acts) == [True] and starts(acts)[0][4] == T0 + 4000 + SETTLE


# -- the start lead ---------------------------------------------------------------------------

def test_a_command_in_the_lead_window_still_preempts_and_nothing_is_judged_early():
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(bid="a", at=T0 + 1000)), T0)
    assert starts(core.tick(T0 + 1000 - C.START_LEAD_MS))  # handed over, to play at T0 + 1000
    acts = core.on_command(head.cmd(M.PLAY, media(bid="e", sha=SHA2,
                                                  prio=M.PRIO_EMERGENCY)), T0 + 800)
    ended = events(acts, M.EV_ENDED)[0]
    assert ended["bid"] == "a" and ended["reason"] == "preempted" and ended["played"] == 0
    assert core.current.bid == "e"


def test_an_item_not_yet_cached_in_the_lead_window_is_failed_at_its_time_not_before():
    core, head = new_core(cached=()), Head()
    core.on_command(head.cmd(M.PLAY, media(at=T0 + 1000)), T0)
    assert not events(core.tick(T0 + 900), M.EV_ENDED)  # the fetch may still make it
    assert core.next_due(T0 + 900) <= T0 + 1000
    ended = events(core.tick(T0 + 1000), M.EV_ENDED)[0]
    assert ended["detail"] == "not-cached"


def test_a_busy_player_does_not_make_an_item_in_the_lead_window_wait():
    # "b" must start at its own time (in step with its neighbours), not from the beginning
    # when "a" ends 100 ms before it.
    core, head = new_core(), Head()
    core.on_command(head.cmd(M.PLAY, media(bid="a", at=T0, dur=900)), T0)
    core.on_command(head.cmd(M.PLAY, media(bid="b", sha=SHA2, at=T0 + 1000)), T0)
    assert not starts(core.tick(T0 + 800))
    (_, item, skip, _, first_at), = starts(core.finished(core.current, T0 + 900))
    assert item.bid == "b" and first_at == T0 + 1000 and skip == 0


# -- time-sync cadence ------------------------------------------------------------------------

def gaps(times):
    return [times[i + 1] - times[i] for i in range(len(times) - 1)]


def requests(log):
    return [t for t, a in log if a[0] == C.SYNC_REQUEST]


def test_a_connect_brings_a_burst_then_refinement_then_one_request_per_period():
    spread = 700
    draws = [spread]  # the burst's delay; then every refine period is its shortest

    def rand(n):
        return draws.pop() if draws else 0

    core = new_core(rand=rand)
    log = [(T0, a) for a in core.link_up(T0)]
    run_until(core, T0, T0 + 3600000, log)
    times = requests(log)
    burst = times[:5]
    assert burst == [T0 + spread + i * SC.BURST_GAP_MS for i in range(5)]
    refine = [t for t in times[5:] if t < burst[-1] + SC.REFINE_MS + SC.BURST_GAP_MS]
    assert refine[0] - burst[-1] == SC.BURST_GAP_MS + SC.REFINE_PERIOD_MS
    assert len(refine) == 11 and set(gaps(refine)) == {SC.REFINE_PERIOD_MS}
    assert set(gaps(times[4 + len(refine):])) == {SC.REFINE_PERIOD_MS, 300000}
    # The 4G budget (firmware/shell.py): one connect and an hour cost 5 + 12 + 11 exchanges.
    assert len(times) == 5 + 12 + 11


def test_until_the_first_reply_requests_repeat_every_few_seconds():
    core = new_core(synced=False)
    log = [(T0, a) for a in core.link_up(T0)]
    run_until(core, T0, T0 + 30000, log)
    times = requests(log)
    assert len(times) == 5 + 5  # the burst, then one per UNSYNCED_RETRY_MS
    assert times[6] - times[5] == SC.UNSYNCED_RETRY_MS


def test_no_request_while_the_link_is_down_and_a_burst_at_each_reconnect():
    core = new_core()
    log = [(T0, a) for a in core.link_up(T0)]
    run_until(core, T0, T0 + 2000, log)
    assert len(requests(log)) == 5
    core.link_down(T0 + 2000)
    assert core.next_due(T0 + 2000) is None  # nothing scheduled, nothing to send
    assert not requests(run_until(core, T0 + 2000, T0 + 3600000))
    log = [(T0 + 3600000, a) for a in core.link_up(T0 + 3600000)]
    run_until(core, T0 + 3600000, T0 + 3602000, log)
    assert len(requests(log)) == 5


def test_a_first_sync_that_moves_the_clock_by_years_keeps_the_burst_going():
    # The RTC said 2000-01-01 after a power cut; the first reply moves the clock to 2027.
    year_2000 = 946684800000
    core = new_core(synced=False)
    log = [(year_2000, a) for a in core.link_up(year_2000)]
    assert requests(log) == [year_2000]
    step = T0 - year_2000
    acts = core.clock_stepped(T0 + 20, step)
    acts += core.set_synced(T0 + 20)
    assert not of(acts, C.SYNC_REQUEST)
    assert core.next_due(T0 + 20) == T0 + SC.BURST_GAP_MS  # 250 ms after the first, as planned
    log = run_until(core, T0 + 20, T0 + 2000)
    assert len(requests(log)) == 4


# -- fetch retries ------------------------------------------------------------------------------

def attempts_and_reports(core, now, end, detail):
    """Fail every FETCH the core asks for up to ``end``; return (attempt times, reports)."""
    times, reports = [], []
    while True:
        due = core.next_due(now)
        if due is None or due > end:
            return times, reports
        now = max(now, due)
        for act in core.tick(now):
            if act[0] == C.FETCH:
                times.append(now)
                reports += events(core.media_failed(act[1]["sha"], now, detail),
                                  M.EV_FETCH_FAILED)


def test_a_fetch_is_retried_with_backoff_and_fetch_failed_is_reported_once():
    core, head = new_core(cached=(), burst=0), Head()
    core.link_up(T0)
    acts = core.on_command(head.cmd(M.FETCH, fetch_args()), T0)
    first = of(acts, C.FETCH)[0][1]
    assert first["sha"] == SHA
    reports = events(core.media_failed(SHA, T0 + 100, "http 503"), M.EV_FETCH_FAILED)
    times, more = attempts_and_reports(core, T0 + 100, T0 + 3600000, "http 503")
    reports += more
    assert times == [T0 + 100 + FP.BACKOFF_MS, T0 + 100 + 3 * FP.BACKOFF_MS]  # 2 s, then 4 s
    assert len(reports) == 1 and reports[0]["reason"] == "http 503"
    assert reports[0]["item"] == "m1" and SHA not in core.needed_media()  # given up


def test_a_scheduled_item_is_fetched_again_quietly_until_it_arrives():
    core, head = new_core(cached=(), burst=0), Head()
    core.link_up(T0)
    at = T0 + 600000
    assert of(core.on_command(head.cmd(M.PLAY, media(at=at)), T0), C.FETCH)
    reports = events(core.media_failed(SHA, T0, "connect failed"), M.EV_FETCH_FAILED)
    times, more = attempts_and_reports(core, T0, T0 + 300000, "connect failed")
    reports += more
    assert len(reports) == 1  # once, after ATTEMPTS attempts
    assert len(times) > FP.ATTEMPTS and times[-1] - times[-2] == FP.RETRY_MS  # then quietly
    acts = core.media_ready(SHA, T0 + 300000)
    assert events(acts, M.EV_FETCHED)[0]["sha"] == SHA
    assert starts(core.tick(at - C.START_LEAD_MS))


def test_a_full_cache_gives_up_at_the_first_attempt():
    core, head = new_core(cached=(), burst=0), Head()
    core.link_up(T0)
    core.on_command(head.cmd(M.FETCH, fetch_args()), T0)
    acts = core.media_failed(SHA, T0 + 10, FP.CACHE_FULL)
    assert events(acts, M.EV_FETCH_FAILED)[0]["reason"] == "cache-full"
    assert attempts_and_reports(core, T0 + 10, T0 + 3600000, FP.CACHE_FULL) == ([], [])


def test_a_command_asking_again_after_giving_up_gets_its_own_answer():
    core, head = new_core(cached=(), burst=0), Head()
    core.link_up(T0)
    core.on_command(head.cmd(M.PLAY, media(at=T0 + 3600000)), T0)
    core.media_failed(SHA, T0, FP.CACHE_FULL)  # given up, reported
    acts = core.on_command(head.cmd(M.FETCH, fetch_args()), T0 + 1000)
    assert of(acts, C.FETCH)  # a new round at once
    acts = core.media_failed(SHA, T0 + 1100, FP.CACHE_FULL)
    assert len(events(acts, M.EV_FETCH_FAILED)) == 1


def test_a_fetch_failing_while_the_link_is_down_is_not_given_up_and_resumes_at_link_up():
    core, head = new_core(cached=(), burst=0), Head()
    core.link_up(T0)
    core.on_command(head.cmd(M.PLAY, media(at=T0 + 7200000)), T0)
    core.link_down(T0 + 50)
    reports = events(core.media_failed(SHA, T0 + 100, "connect failed"), M.EV_FETCH_FAILED)
    times, more = attempts_and_reports(core, T0 + 100, T0 + 3600000, "connect failed")
    assert not reports and not more  # an hour offline: the link's failure, not the media's
    assert times and times[1] - times[0] == FP.RETRY_MS  # slowly meanwhile
    acts = core.link_up(T0 + 3600010)
    assert of(acts, C.FETCH)  # the link is back: at once
    assert core.media_ready(SHA, T0 + 3600500)[0][1]["k"] == M.EV_FETCHED


def test_a_fetch_with_pin_pins_before_it_fetches_and_an_unpin_fetches_nothing():
    core, head = new_core(cached=()), Head()
    args = fetch_args()
    args["pin"] = True
    acts = core.on_command(head.cmd(M.FETCH, args), T0)
    kinds = [a[0] for a in acts]
    assert of(acts, C.PIN) == [(C.PIN, SHA, True)]
    assert kinds.index(C.PIN) < kinds.index(C.FETCH)  # the cache knows before it adds it
    args["pin"] = False
    core, head = new_core(cached=()), Head()
    acts = core.on_command(head.cmd(M.FETCH, args), T0)
    assert of(acts, C.PIN) == [(C.PIN, SHA, False)] and not of(acts, C.FETCH)
    assert not events(acts, M.EV_FETCHED)
    core, head = new_core(), Head()  # held: unpinned, and reported as held
    acts = core.on_command(head.cmd(M.FETCH, args), T0)
    assert of(acts, C.PIN) == [(C.PIN, SHA, False)] and events(acts, M.EV_FETCHED)
    del args["pin"]  # no pin: as before, no PIN action
    acts = new_core(cached=()).on_command(Head().cmd(M.FETCH, args), T0)
    assert not of(acts, C.PIN) and of(acts, C.FETCH)


def test_a_clock_step_keeps_the_backoff_length():
    core, head = new_core(cached=(), burst=0), Head()
    core.link_up(T0)
    core.on_command(head.cmd(M.FETCH, fetch_args()), T0)
    core.media_failed(SHA, T0, "http 503")
    core.clock_stepped(T0 + 40000, 40000)  # a reply moved the clock 40 s on
    assert not of(core.tick(T0 + 40000 + FP.BACKOFF_MS - 1), C.FETCH)
    assert of(core.tick(T0 + 40000 + FP.BACKOFF_MS), C.FETCH)


# -- the offline reboot's question --------------------------------------------------------------

def test_busy_within_says_whether_something_plays_or_starts_soon():
    core, head = new_core(), Head()
    assert not core.busy_within(T0, 120000)
    core.on_command(head.cmd(M.PLAY, media(at=T0 + 100000)), T0)
    assert core.busy_within(T0, 120000) and not core.busy_within(T0, 60000)
    assert not new_core(synced=False).busy_within(T0, 120000)
