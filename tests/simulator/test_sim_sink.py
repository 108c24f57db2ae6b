"""The recording sink: what a receiver played, how long it lasts, and when it was heard."""

import hashlib

import pytest

from protocol.media import ADPCM_BLOCK_BYTES, adpcm_samples_per_block
from simulator import sink as sink_module
from simulator.media import make_test_item
from simulator.sink import RecordingSink


class FakeTime:
    """True time for the sink; ``asyncio.sleep`` in the sink advances it instead of waiting."""

    def __init__(self):
        self.s = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.s

    async def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.s += seconds


@pytest.fixture
def fake_time(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(sink_module.asyncio, "sleep", fake.sleep)
    return fake


@pytest.fixture(scope="module")
def item(tmp_path_factory):
    return make_test_item(str(tmp_path_factory.mktemp("media")), "tone", seconds=1.0)


async def play_whole(sink, data, chunk):
    for pos in range(0, len(data), chunk):
        await sink.write(memoryview(data)[pos:pos + chunk])
    sink.close()


async def test_adpcm_playback_lasts_as_long_as_its_blocks(fake_time):
    sink = RecordingSink(("adpcm",), buffer_ms=100, now=fake_time, context=lambda: {"item": "x"})
    blocks = bytes(ADPCM_BLOCK_BYTES * 32)
    sink.open("adpcm", 16000)
    await play_whole(sink, blocks, ADPCM_BLOCK_BYTES * 2)
    played = sink.playbacks[0]
    expected_s = 32 * adpcm_samples_per_block() / 16000.0
    assert played.item == "x" and played.how == "closed"
    assert played.started_true == 1000.0
    assert played.ended_true == pytest.approx(1000.0 + expected_s)
    assert played.sha.hexdigest() == hashlib.sha256(blocks).hexdigest()
    # Paced like a DMA buffer: the writer was held back so it never ran more than 100 ms ahead.
    assert fake_time.sleeps and fake_time.s == pytest.approx(played.ended_true - 0.1, abs=0.05)


async def test_mp3_duration_comes_from_the_frame_headers(fake_time, item):
    sink = RecordingSink(("mp3",), now=fake_time)
    data = item.renditions["mp3"].data()
    sink.open("mp3", item.renditions["mp3"].rate)
    await play_whole(sink, data, 333)  # arbitrary pieces, not frame-aligned
    played = sink.playbacks[0]
    assert played.duration_s == pytest.approx(1.0, abs=0.1)
    assert played.bytes == len(data)


async def test_stop_cuts_short_and_a_new_open_ends_the_previous(fake_time):
    sink = RecordingSink(("adpcm",), now=fake_time)
    sink.open("adpcm", 16000, skip_samples=505)
    await sink.write(bytes(ADPCM_BLOCK_BYTES * 4))
    sink.set_volume(80)
    sink.open("adpcm", 16000)
    first, second = sink.playbacks
    assert first.how == "stopped" and first.ended_true == fake_time.s
    assert first.skip_samples == 505
    assert first.volumes[-1][1] == 80
    assert sink.current is second
    sink.stop()
    assert second.how == "stopped" and second.started_true is None  # nothing was heard


async def test_skipped_samples_are_not_heard_so_a_late_start_ends_on_time(fake_time):
    # A receiver that came in 505 samples late into a two-block frame hears only the rest:
    # the frame ends when it would have, and the next write (queued on time) is no gap.
    sink = RecordingSink(("adpcm",), now=fake_time, buffer_ms=0)
    sink.open("adpcm", 16000, skip_samples=505)
    started = fake_time.s
    await sink.write(bytes(ADPCM_BLOCK_BYTES * 2))
    assert fake_time.s == pytest.approx(started + 505 / 16000)
    await sink.write(bytes(ADPCM_BLOCK_BYTES))
    sink.close()
    played = sink.playbacks[0]
    assert played.gaps == []
    assert played.ended_true == pytest.approx(started + 2 * 505 / 16000)


async def test_a_late_write_is_recorded_as_a_gap(fake_time):
    sink = RecordingSink(("adpcm",), now=fake_time, buffer_ms=0)
    sink.open("adpcm", 16000)
    await sink.write(bytes(ADPCM_BLOCK_BYTES))
    fake_time.s += 1.0  # the firmware fell behind
    await sink.write(bytes(ADPCM_BLOCK_BYTES))
    sink.close()
    assert len(sink.playbacks[0].gaps) == 1


def test_refuses_a_codec_it_does_not_decode():
    with pytest.raises(ValueError):
        RecordingSink(("mp3",)).open("adpcm", 16000)
