"""Issue 10, delivered ahead, on both runtimes: a schedule window (signed ``schedule``, built by
headend/planning.py as the head-end builds it) reaches the receivers with its media; one loses
its link before air time and plays the window on time from its own clock; the others get the
same occurrence again as a ``play`` with the same broadcast id (the broadcast made 10 min
ahead) and play it once; the cut one reports both plays when its link is back.

Runs with CPython receivers and with MicroPython receivers (each its own process of the
MicroPython that computes like an ESP32, at least ten of them): what runs on the pole is what
is tested. The scripted operator stands in for the head-end (simulator/operator.py);
tests/integration/test_programmes_offline.py runs the same story with the head-end itself.
"""

import pytest
from test_fleet import START_TOLERANCE_MS, address, specs_with_bad_clocks

from simulator.scenario import FleetScenario, now_ms

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_a_window_plays_offline_once_and_is_reported_when_back(mqtt_broker, runtime,
                                                                     fleet_size):
    specs = specs_with_bad_clocks(fleet_size(3), zones=1, seed=5)
    async with FleetScenario(address(mqtt_broker), specs,
                             items=(("tin-sang", 1.0), ("tin-chieu", 1.0)),
                             runtime=runtime) as sc:
        ids = sc.fleet.ids()
        cut, online = ids[0], ids[1:]
        first, second = sc.items["tin-sang"], sc.items["tin-chieu"]
        at1 = int(now_ms()) + 8000
        at2 = at1 + 3000
        sc.operator.schedule(ids, [("w1", first, at1), ("w2", second, at2)])
        await sc.operator.until(lambda: all(
            sc.operator.events_of(d, "fetched", item=first.id)
            and sc.operator.events_of(d, "fetched", item=second.id) for d in ids), 15)
        sc.fleet.cut(cut)
        # The broadcast made 10 min ahead: the same id again, as a play, to those online.
        sc.operator.play_at(online, first, at1, bid="w1")

        await sc.operator.until(lambda: len(sc.proof_of_play("w2", online)) == len(online),
                                20)
        await sc.operator.until(lambda: sc.fleet[cut].sink.playbacks_of(bid="w2")
                                and sc.fleet[cut].sink.playbacks_of(bid="w2")[0].how, 10)
        for bid, at in (("w1", at1), ("w2", at2)):
            for device in ids:
                assert len(sc.fleet[device].sink.playbacks_of(bid=bid)) == 1, (device, bid)
            error = sc.start_errors_ms(bid, at, [cut])[cut]
            assert abs(error) <= START_TOLERANCE_MS, (bid, error)
        assert not sc.operator.events_of(cut, "started")  # nothing got out yet

        sc.fleet.restore(cut)
        await sc.operator.until(lambda: sc.proof_of_play("w1", [cut])
                                and sc.proof_of_play("w2", [cut]), 30)
        for bid, at in (("w1", at1), ("w2", at2)):
            started, = sc.operator.events_of(cut, "started", bid=bid)
            assert abs(started.get("t") - at) <= START_TOLERANCE_MS  # when it really played
        assert not sc.fleet.crashed()
