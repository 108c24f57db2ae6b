"""Issue 2 acceptance: simulated receivers running the real firmware, driven through a real
broker (Mosquitto and the embedded amqtt broker) by signed commands.

Each test runs a small fleet (simulator.scenario): receivers connect, sync their clocks with the
scripted operator, and the operator plays test tones served over HTTP. What a receiver played
is read from its recording sink (true time, host clock) and what it reported from the events
the operator received.

The acceptance tests run twice: with CPython receivers (many in this process) and with
MicroPython receivers, each its own process of the MicroPython that computes like an ESP32
(float32, 31-bit small ints, a WROVER's heap; simulator/mp_runtime.py), at least ten of
them (tests/integration/conftest.py): what runs on the pole is what is tested.
"""

import asyncio
import time

import pytest

from protocol import messages, topics
from simulator.fleet import generate_specs
from simulator.scenario import FleetScenario, now_ms

pytestmark = pytest.mark.integration

START_TOLERANCE_MS = 50.0
PREEMPT_WITHIN_S = 1.0
RESUBSCRIBE_WITHIN_S = 30.0


def address(broker):
    return (broker.host, broker.port)


def specs_with_bad_clocks(count, zones, seed):
    """Receivers whose clocks are off by up to ±2 s and drift up to ±100 ppm, the extremes
    included."""
    specs = generate_specs(count, zones=zones, offset_ms=2000, drift_ppm=100, seed=seed)
    for spec, offset, drift in zip(specs, (2000, -2000, 1999, -1999), (100, -100, -100, 100), strict=False):
        spec.offset_ms, spec.drift_ppm = offset, drift
    return specs


async def test_zone_plays_at_the_same_true_time_and_reports_it(mqtt_broker, runtime):
    """Acceptance 1: 20 receivers, 2 zones, clocks off by ±2 s / ±100 ppm."""
    specs = specs_with_bad_clocks(20, zones=2, seed=1)
    async with FleetScenario(address(mqtt_broker), specs, items=(("tin-sang", 1.0),),
                             keep_bytes=True, runtime=runtime) as sc:
        zone, others = sc.fleet.ids("thon-1"), sc.fleet.ids("thon-2")
        item = sc.items["tin-sang"]
        at = now_ms() + 3000
        bid = sc.operator.play_at(zone, item, at)

        await sc.operator.until(lambda: len(sc.proof_of_play(bid, zone)) == len(zone), 15)

        errors = sc.start_errors_ms(bid, at, zone)
        assert sorted(errors) == sorted(zone)
        late = {d: round(e, 1) for d, e in errors.items() if abs(e) > START_TOLERANCE_MS}
        assert not late, "started more than 50 ms off T (true time): %s" % late
        for device in zone:
            played = sc.fleet[device].sink.playbacks_of(bid=bid)
            assert len(played) == 1 and played[0].how == "closed"
            # It played the item it was told to: the bytes it decoded are the rendition's (all
            # of them, or the tail after a sample-accurate skip of a few ms).
            whole = item.renditions[played[0].codec].data()
            assert whole.endswith(bytes(played[0].data)), (played[0].skip_samples, len(whole) - played[0].bytes)
            assert len(whole) - played[0].bytes < len(whole) // 10
            # The power amplifier was switched on just before and off again after.
            switched = sc.fleet[device].platform.amp_changes
            assert [on for _, on in switched] == [True, False]
            assert switched[0][0] < played[0].started_true < played[0].ended_true <= switched[1][0]
        assert all(not sc.fleet[d].sink.playbacks for d in others)
        assert all(not sc.fleet[d].platform.amp_changes for d in others)
        assert not any(sc.operator.events_of(d, "started") for d in others)
        assert not sc.fleet.crashed()


async def test_emergency_preempts_what_plays(mqtt_broker, runtime, fleet_size):
    """Acceptance 2: an emergency preempts a normal item within 1 s, reported "preempted"."""
    specs = generate_specs(fleet_size(6), zones=2, offset_ms=1500, drift_ppm=50, seed=2)
    items = (("ban-tin", 6.0), ("bao-lu", 1.0))
    async with FleetScenario(address(mqtt_broker), specs, items=items, runtime=runtime) as sc:
        ids = sc.fleet.ids()
        normal = sc.operator.play_at(ids, sc.items["ban-tin"], now_ms() + 1500)
        await sc.operator.until(
            lambda: all(sc.fleet[d].sink.current is not None for d in ids), 10)
        await asyncio.sleep(0.5)

        sent = time.time()
        alarm = sc.operator.emergency(ids, sc.items["bao-lu"])
        await sc.operator.until(lambda: len(sc.proof_of_play(alarm, ids)) == len(ids), 10)

        for device in ids:
            sink = sc.fleet[device].sink
            cut, = sink.playbacks_of(bid=normal)
            emergency, = sink.playbacks_of(bid=alarm)
            assert cut.how == "stopped" and cut.ended_true - sent < PREEMPT_WITHIN_S
            assert emergency.started_true - sent < PREEMPT_WITHIN_S
            assert emergency.volumes[0][1] == 100  # at emergency volume, whatever the default
            assert sc.operator.events_of(device, "ended", bid=normal, reason="preempted")
            assert sc.operator.events_of(device, "started", bid=alarm)


async def test_an_emergency_to_be_fetched_opens_with_the_pinned_tone_at_once(
        mqtt_broker, runtime, fleet_size):
    """The first sound of an emergency whose media is not on the receivers is the alert tone
    they hold (pinned): heard at once, the emergency right after it, reported once."""
    specs = generate_specs(fleet_size(4), zones=1, offset_ms=1500, drift_ppm=50, seed=5)
    items = (("coi", 2.0), ("bao-lu", 1.0))
    async with FleetScenario(address(mqtt_broker), specs, items=items, runtime=runtime) as sc:
        ids = sc.fleet.ids()
        tone, alert = sc.items["coi"], sc.items["bao-lu"]
        sc.operator.fetch(ids, tone)
        await sc.operator.until(lambda: all(
            sc.operator.holds(d, sc.operator.rendition_for(d, tone)) for d in ids), 10)
        sent = time.time()
        alarm = sc.operator.emergency(ids, alert, lead=tone)
        await sc.operator.until(lambda: len(sc.proof_of_play(alarm, ids)) == len(ids), 15)
        firsts = []
        for device in ids:
            opening, played = sc.fleet[device].sink.playbacks_of(bid=alarm)
            firsts.append(1000 * (opening.started_true - sent))
            assert opening.item == tone.id and played.item == alert.id
            assert opening.started_true - sent < PREEMPT_WITHIN_S  # the relay's settle, no fetch
            assert opening.how == "closed" and played.started_true >= opening.ended_true
            assert played.volumes[0][1] == opening.volumes[0][1] == 100
            assert [e.get("item") for e in sc.operator.events_of(device, "started", bid=alarm)] \
                == [alert.id]
            assert [e.get("reason") for e in sc.operator.events_of(device, "ended", bid=alarm)] \
                == ["finished"]
        print("\nfirst sound (the tone) after the call, ms: %s" % sorted(round(f) for f in firsts))
        assert not sc.fleet.crashed()


async def test_cut_link_still_plays_from_cache_and_reports_later(mqtt_broker, runtime, fleet_size):
    """Acceptance 3a: offline at air time, on time anyway, proof of play once back."""
    specs = specs_with_bad_clocks(fleet_size(4), zones=1, seed=3)
    async with FleetScenario(address(mqtt_broker), specs, items=(("tin-chieu", 1.0),),
                             runtime=runtime) as sc:
        ids = sc.fleet.ids()
        offline = ids[0]
        item = sc.items["tin-chieu"]
        at = now_ms() + 2500
        bid = sc.operator.play_at(ids, item, at)
        await sc.operator.until(
            lambda: all(sc.operator.events_of(d, "fetched", item=item.id) for d in ids), 5)
        fetches_before = len(sc.server.requests_for(item))
        sc.fleet.cut(offline)

        await sc.operator.until(lambda: len(sc.proof_of_play(bid, ids[1:])) == len(ids) - 1, 10)
        await sc.operator.until(lambda: sc.fleet[offline].sink.playbacks_of(bid=bid)
                                and sc.fleet[offline].sink.playbacks_of(bid=bid)[0].how, 5)
        error = sc.start_errors_ms(bid, at, [offline])[offline]
        assert abs(error) <= START_TOLERANCE_MS
        assert len(sc.server.requests_for(item)) == fetches_before  # from its cache
        assert not sc.operator.events_of(offline, "started", bid=bid)  # nothing got out

        sc.fleet.restore(offline)
        await sc.operator.until(lambda: sc.proof_of_play(bid, [offline]), 20)
        started, = sc.operator.events_of(offline, "started", bid=bid)
        assert abs(started.get("t") - at) <= START_TOLERANCE_MS  # it says when it played


async def test_receivers_come_back_after_a_broker_restart(mqtt_broker):
    """Acceptance 3b: after a broker restart, receivers resubscribe within 30 s."""
    specs = generate_specs(4, zones=1, offset_ms=500, seed=4)
    async with FleetScenario(address(mqtt_broker), specs, items=(("tone", 1.0),)) as sc:
        ids = sc.fleet.ids()
        mqtt_broker.restart()
        restarted = time.time()
        # A birth is published once the session is up and its subscriptions are back.
        await sc.operator.until(lambda: all(
            any(b.at > restarted for b in sc.operator.births_of(d)) for d in ids),
            RESUBSCRIBE_WITHIN_S)
        await sc.operator.until(sc.operator.connected.is_set, 10)

        bid = sc.operator.play_at(ids, sc.items["tone"], None)
        await sc.operator.until(lambda: len(sc.proof_of_play(bid, ids)) == len(ids), 10)
        assert time.time() - restarted < RESUBSCRIBE_WITHIN_S + 10
        assert all(sc.fleet[d].sink.playbacks_of(bid=bid) for d in ids)


async def test_forged_replayed_and_expired_commands_change_nothing(mqtt_broker, runtime, fleet_size):
    """Acceptance 4a: bad signature, replayed or older counter, expired: rejected, no effect."""
    specs = generate_specs(fleet_size(3), zones=1, seed=5)
    async with FleetScenario(address(mqtt_broker), specs, items=(("tone", 1.0),),
                             runtime=runtime) as sc:
        ids = sc.fleet.ids()
        op = sc.operator
        item = sc.items["tone"]
        setup = {d: op.send(d, messages.VOLUME, {"vol": 40}) for d in ids}
        await op.until(lambda: all(op.ack_of(c) for c in setup.values()), 5)
        wrong_key = bytes(32)

        for device in ids:
            args = dict(op.media_args(device, item), bid="forged", prio=messages.PRIO_EMERGENCY)
            op.send(device, messages.PLAY, args, key=wrong_key)
            op.replay(setup[device])
            op.send(device, messages.PLAY, dict(args, bid="older"), ctr=1)
            op.send(device, messages.PLAY, dict(args, bid="stale"), exp_ms=int(now_ms()) - 1000)

        reasons = ("bad-signature", "replay", "expired")
        await op.until(lambda: all(
            len(op.events_of(d, "rejected", reason="replay")) == 2
            and all(op.events_of(d, "rejected", reason=r) for r in reasons) for d in ids), 10)
        await asyncio.sleep(0.5)
        for device in ids:
            sim = sc.fleet[device]
            assert sim.sink.playbacks == []
            assert sim.receiver.core.volume == 40  # the replayed command did not apply again
            assert sim.receiver.core.counters["rejected"] == 4
        assert not sc.fleet.crashed()


def dropped_count(receiver):
    """Messages a receiver counted as unusable and dropped: by its core (cmd, time, stream)
    and by its MQTT client (too large to read)."""
    stats = receiver.stats
    return (sum(stats.get(k, 0) for k in ("malformed", "bad_frames", "bad_time"))
            + receiver.mqtt.stats["oversized"])


def malformed_payloads():
    junk = [b"", b"\x00\xff garbage", b"{}", b'{"v":1}', b"0" * 64 + b"\n{not json",
            b"x" * 20000]
    return junk


async def test_malformed_payloads_are_counted_and_dropped(mqtt_broker):
    """Acceptance 4b: junk on cmd, time and stream topics never crashes a receiver."""
    specs = generate_specs(2, zones=1, seed=6)
    async with FleetScenario(address(mqtt_broker), specs, items=(("tone", 1.0),),
                             config_overrides={"heartbeat_s": 1}) as sc:
        ids = sc.fleet.ids()
        op = sc.operator
        # A live stream, so the receivers are subscribed to a stream topic too.
        stream = {"bid": "live1", "sid": "s1", "sno": 7, "key": "ab" * 32, "codec": "mp3",
                  "rate": 16000, "prio": messages.PRIO_LIVE}
        for device in ids:
            op.send(device, messages.STREAM, dict(stream, codec=sc.fleet[device].spec.codec))
        await op.until(lambda: all(op.events_of(d, "started", bid="live1") for d in ids), 5)
        await asyncio.sleep(0.3)  # the subscription is on the broker

        before = {d: dropped_count(sc.fleet[d].receiver) for d in ids}
        junk = malformed_payloads()
        for device in ids:
            for leaf in (topics.CMD, topics.TIME):
                for payload in junk:
                    op.publish_raw(topics.device_topic(sc.site, device, leaf), payload, qos=1)
        for payload in junk:
            op.publish_raw(topics.stream_topic(sc.site, "s1"), payload, qos=0)
        await asyncio.sleep(1.0)

        for device in ids:
            receiver = sc.fleet[device].receiver
            # Every piece of junk was counted somewhere, on every topic.
            assert dropped_count(receiver) - before[device] >= 3 * len(junk), receiver.stats
        assert not sc.fleet.crashed()
        # The technician sees it in the telemetry too.
        await op.until(lambda: all(op.heartbeats.get(d) and op.heartbeats[d].get("mal", 0)
                                   >= len(junk) for d in ids), 5)

        op.stop(ids, "live1")
        bid = op.play_at(ids, sc.items["tone"], None)
        await op.until(lambda: len(sc.proof_of_play(bid, ids)) == len(ids), 10)


async def test_slow_lossy_links_still_start_together(mosquitto_broker):
    """Time sync measures the round trip: 60 ms each way and lost time replies do not shift
    the start."""
    specs = specs_with_bad_clocks(4, zones=1, seed=10)
    sc = FleetScenario(address(mosquitto_broker), specs, items=(("tin-toi", 1.0),))
    for sim in sc.fleet:
        sim.link.set_latency(60)
        sim.link.set_loss(0.3)
    async with sc:
        ids = sc.fleet.ids()
        at = now_ms() + 3000
        bid = sc.operator.play_at(ids, sc.items["tin-toi"], at)
        await sc.operator.until(lambda: len(sc.proof_of_play(bid, ids)) == len(ids), 15)
        errors = sc.start_errors_ms(bid, at, ids)
        assert max(abs(e) for e in errors.values()) <= START_TOLERANCE_MS, errors
        assert sum(sc.fleet[d].link.dropped_publishes for d in ids) > 0


async def test_reboot_command_restarts_on_the_same_flash(mosquitto_broker):
    """A reboot keeps what flash keeps: volume, and the replay counter."""
    specs = generate_specs(2, zones=1, seed=11)
    async with FleetScenario(address(mosquitto_broker), specs, items=(("tone", 1.0),)) as sc:
        op = sc.operator
        device = specs[0].id
        volume = op.send(device, messages.VOLUME, {"vol": 30})
        await op.until(lambda: op.ack_of(volume), 5)
        op.send(device, messages.REBOOT, {})
        await op.until(lambda: any(b.get("boot") == 2 for b in op.births_of(device)), 15)
        await sc.wait_ready([device])

        assert sc.fleet[device].boots == 2
        assert sc.fleet[device].receiver.core.volume == 30
        op.replay(volume)
        await op.until(lambda: op.events_of(device, "rejected", reason="replay"), 5)
        bid = op.play_at([device], sc.items["tone"], None)
        await op.until(lambda: sc.proof_of_play(bid, [device]), 10)
