"""Clock estimation: wrapping ticks, NTP-style offset with round-trip filtering, drift.

Plain asserts, runs under CPython and MicroPython. The "true" network clock of a simulated
receiver is ``network = local + local * ppm / 1e6 + offset``, with random queueing delay on each
leg, computed in integer ms: under the ESP32's float32 an epoch time in a float is 131 s coarse,
so a test computing its expectations in floats would test nothing.
"""

from firmware.clock import ClockEstimator, TickExtender

WRAP = 1 << 30  # MicroPython's ticks_ms period


class Lcg:
    """Deterministic noise that MicroPython and CPython both produce (no random.Random there)."""

    def __init__(self, seed):
        self.state = seed

    def random(self):
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return self.state / 0x80000000


class WrappingTicks:
    def __init__(self, start):
        self.t = start

    def ticks_ms(self):
        return self.t % WRAP

    def ticks_diff(self, a, b):
        d = (a - b) & (WRAP - 1)
        return d - WRAP if d >= WRAP // 2 else d


def test_tick_extender_counts_across_the_wrap():
    ticks = WrappingTicks(WRAP - 1500)
    ext = TickExtender(ticks.ticks_ms, ticks.ticks_diff)
    total = 0
    for step in (1000, 1000, 5000, 400000000, 400000000):
        ticks.t += step
        total += step
        assert ext.now() == total


def exchange(rng, local, ppm, offset, base_delay=5, jitter=40, spike=0):
    """One request/reply: returns (t0, t1, t2, t3) and the local time it ended (all int ms)."""
    t0 = local
    up = base_delay + int(rng.random() * jitter) + spike
    down = base_delay + int(rng.random() * jitter)
    t1 = true_network(t0 + up, ppm, offset)
    t2 = t1 + 2  # head-end turnaround
    t3 = t0 + up + down + 2
    return (t0, t1, t2, t3), t3


def true_network(local, ppm, offset):
    return offset + local + local * ppm // 1000000


def test_offset_of_a_single_symmetric_exchange():
    clock = ClockEstimator()
    assert not clock.synced
    clock.seed(1000, 5000)
    assert clock.network_ms(1000) == 5000
    assert clock.add_sample(1000, 2005000, 2005001, 1010)
    assert clock.synced and clock.delay == 9
    assert abs(clock.network_ms(1005) - 2005000) <= 1
    assert abs(clock.local_ms(clock.network_ms(123456)) - 123456) <= 1


def test_min_delay_sample_wins_over_queued_ones():
    rng = Lcg(1)
    clock = ClockEstimator()
    local = 10000
    offset = 1800000000000 - 2000
    for i in range(8):
        # Most replies sat in a queue on the way up (asymmetric); one went straight through.
        sample, local = exchange(rng, local, 0, offset, jitter=2, spike=0 if i == 5 else 300)
        clock.add_sample(*sample)
        local += 200
    assert abs(clock.network_ms(local) - true_network(local, 0, offset)) <= 3


def test_impossible_samples_are_refused():
    clock = ClockEstimator()
    assert not clock.add_sample(100, 5000, 5000, 90)      # received before sent
    assert not clock.add_sample(100, 5000, 6000, 200)     # head-end held it longer than the trip
    assert not clock.synced


def test_drift_is_learned_and_keeps_time_while_offline():
    rng = Lcg(7)
    for ppm, offset in ((100, 1800000002000), (-100, 1799999998000)):
        clock = ClockEstimator()
        local = 50000
        for _ in range(5):  # the connect burst
            sample, local = exchange(rng, local, ppm, offset, jitter=10)
            clock.add_sample(*sample)
            local += 200
        for _ in range(20):  # then one every 60 s
            local += 60000
            sample, local = exchange(rng, local, ppm, offset, jitter=10)
            clock.add_sample(*sample)
        assert clock.drift_known
        assert abs(clock.drift - ppm * 1e-6) < 20e-6
        # Link cut for an hour: the estimate must still be within a few ms.
        later = local + 3600000
        assert abs(clock.network_ms(later) - true_network(later, ppm, offset)) < 50
        # And the other way round: when to start something scheduled 10 minutes ahead.
        target = true_network(later + 600000, ppm, offset)
        assert abs(true_network(clock.local_ms(target), ppm, offset) - target) < 50


def test_epoch_times_keep_every_millisecond():
    # On the ESP32 an epoch time that passes through a float is rounded to 131,072 ms: a
    # bulletin would start up to a minute off. Every result here must be exact, and an int.
    clock = ClockEstimator()
    clock.seed(0, 1800000000000)
    for local in (1, 999, 65537, 123456789):
        network = clock.network_ms(local)
        assert isinstance(network, int)
        assert network == 1800000000000 + local
        assert clock.local_ms(network) == local
        assert clock.local_ms(network + 1) == local + 1
    assert clock.add_sample(1000, 1800000001007, 1800000001008, 1012)
    assert clock.network_ms(1006) - clock.network_ms(1005) == 1
