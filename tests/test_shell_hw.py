"""The hardware layer (firmware/hw/) on CPython, with fake ``machine``/``network``/``esp32``
modules standing in for the ESP32 at the register and pin level.

What this proves: the VS1053 register values and SPI framing, the late-start accounting of both
sinks, the I2S sink's decode-and-skip path with the real ADPCM decoder, supply-voltage and
epoch conversions, Wi-Fi retry logic, pin validation, and that a sink failing mid-play ends the
play "failed" with the sink's reason. The sinks' timing on a board that keeps time (DREQ, the
I2S DMA buffer, allocation per frame) is tested under MicroPython too: tests/mpy/test_sinks.py.
What it cannot prove (docs/flashing.md lists it): that the chips and the radio behave as their
datasheets say.
"""

import importlib
import sys
import time
import types

import pytest

from firmware import config


class FakePin:
    OUT, IN, PULL_UP = 1, 0, 2

    def __init__(self, pin, mode=None, pull=None, value=None):
        self.pin = pin
        self.pull = pull
        self.level = 1 if value is None else value
        self.history = []

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = v
        self.history.append(v)


class FakeSPI:
    def __init__(self, *args, **kwargs):
        self.writes = []
        self.mode_reads = []  # what SCI_MODE reads return, in order (then 0x0800)

    def init(self, **kwargs):
        pass

    def write(self, data):
        self.writes.append(bytes(data))

    def write_readinto(self, out, into):
        self.writes.append(bytes(out))
        if out[1] == 0x01:  # SCI_STATUS: SS_VER 4, a VS1053
            value = 0x0040
        else:
            value = self.mode_reads.pop(0) if self.mode_reads else 0x0800
        into[2], into[3] = value >> 8, value & 0xFF


class FakeI2S:
    TX, MONO = 2, 0
    shifts = []

    def __init__(self, *args, **kwargs):
        self.kwargs = kwargs
        self.data = bytearray()
        self.closed = False
        self.handler = None
        FakeI2S.last = self

    def irq(self, handler):
        self.handler = handler

    def write(self, buf, off=0, n=-1):
        n = len(buf) - off if n < 0 else n
        self.data += bytes(buf[off:off + n])
        if self.handler is not None:  # non-blocking mode: "in DMA memory" at once here
            self.handler(self)
        return n

    def deinit(self):
        self.closed = True

    @staticmethod
    def shift(buf, bits, shift):
        FakeI2S.shifts.append(shift)


class FakeADC:
    ATTN_11DB = 3

    def __init__(self, pin, atten=None):
        self.uv = 1100000

    def read_uv(self):
        return self.uv


class FakeWLAN:
    connect_after = 3  # polls until "associated"

    def __init__(self, interface):
        self.polls = 0
        self.connects = 0
        self.is_active = False

    def active(self, on=None):
        self.is_active = on if on is not None else self.is_active
        return self.is_active

    def connect(self, ssid, password):
        self.connects += 1
        self.polls = 0

    def disconnect(self):
        pass

    def isconnected(self):
        self.polls += 1
        return self.connects > 0 and self.polls > self.connect_after

    def status(self, what):
        return -67


@pytest.fixture
def board(monkeypatch):
    """Install the fake ESP32 modules; yield an import function for firmware.hw modules."""
    machine = types.ModuleType("machine")
    machine.Pin, machine.SPI, machine.I2S, machine.ADC = FakePin, FakeSPI, FakeI2S, FakeADC
    machine.WDT = lambda timeout: types.SimpleNamespace(feed=lambda: None)
    machine.reset = lambda: None
    network = types.ModuleType("network")
    network.STA_IF = 0
    network.WLAN = FakeWLAN
    network.hostname = lambda name: None
    esp32 = types.ModuleType("esp32")
    esp32.raw_temperature = lambda: 122
    for name, module in (("machine", machine), ("network", network), ("esp32", esp32)):
        monkeypatch.setitem(sys.modules, name, module)

    def load(name):
        monkeypatch.delitem(sys.modules, name, raising=False)
        return importlib.import_module(name)

    FakeI2S.shifts = []
    return load


def sci_writes(spi):
    return [(w[1], (w[2] << 8) | w[3]) for w in spi.writes if len(w) == 4 and w[0] == 0x02]


def test_vs1053_volume_register_and_frame_rounding(board):
    vs = board("firmware.hw.vs1053")
    assert vs.volume_register(100) == 0x0000
    assert vs.volume_register(50) == 0x3232      # -25 dB both channels
    assert vs.volume_register(0) == 0xFEFE       # muted
    assert vs.late_start(0, 16000) == (0, 0)
    # A frame begun is dropped, the next held back to its time (576 - 100 samples: 29 ms).
    assert vs.late_start(100, 16000) == (1, 29)
    assert vs.late_start(576, 16000) == (1, 0)
    assert vs.late_start(1152 + 600, 44100) == (2, 12)


async def test_vs1053_sink_feeds_32_byte_chunks_and_drops_a_late_frame(board):
    vs = board("firmware.hw.vs1053")
    sink = vs.VS1053Sink(2, 18, 23, 19, 5, 16, 4, 17)
    spi = sink._spi
    # 0x8800: 3.5x the 12.288 MHz crystal (+1.0x for WMA/AAC), within the 55.3 MHz maximum.
    assert sci_writes(spi)[:3] == [(vs.SCI_MODE, vs.SM_SDINEW), (vs.SCI_CLOCKF, 0x8800),
                                   (vs.SCI_VOL, vs.volume_register(70))]
    sink.set_volume(80)
    assert sci_writes(spi)[-1] == (vs.SCI_VOL, 0x1414)
    spi.writes.clear()
    # Two MPEG-2 Layer III frames, 144 bytes each (32 kbit/s, 16 kHz).
    frames = bytes([0xFF, 0xF3, 0x48, 0xC4]) + b"\x01" * 140 + bytes([0xFF, 0xF3, 0x48, 0xC4]) + b"\x02" * 140
    sink.open("mp3", 16000, skip_samples=400)  # a late start, 400 samples into the first frame
    called = time.monotonic()
    await sink.write(frames)                   # the first frame is dropped
    # ... and the second is held back to its own time: 176 samples, 11 ms (a sleep's floor).
    assert time.monotonic() - called >= 0.010
    # Whole chunks only: the last 16 bytes wait in the stage for the next frame or the end fill.
    assert [len(w) for w in spi.writes] == [32, 32, 32, 32]
    assert spi.writes[0] == bytes([0xFF, 0xF3, 0x48, 0xC4]) + b"\x02" * 28
    assert sink.bytes_written == 128
    await sink.drain()
    assert spi.writes[4] == b"\x02" * 16 + bytes(16) and set(b"".join(spi.writes[5:])) == {0}
    assert sink.bytes_written == 160 + 64 * 32
    spi.mode_reads = [vs.SM_SDINEW | vs.SM_CANCEL, vs.SM_SDINEW]
    sink.stop()
    assert (vs.SCI_MODE, vs.SM_SDINEW | vs.SM_CANCEL) in sci_writes(spi)
    with pytest.raises(ValueError):
        sink.open("adpcm", 16000)


async def test_i2s_sink_decodes_blocks_and_skips_samples(board):
    i2s = board("firmware.hw.i2s_adpcm")
    from firmware.adpcm import decode_block

    assert i2s.split_skip(1200, 505) == (2, 190)
    assert i2s.volume_shift(100) == 0 and i2s.volume_shift(1) == -5 and i2s.volume_shift(0) == -6
    blocks = bytes([0x10, 0x00, 20, 0]) + bytes(range(252))
    blocks = blocks * 2
    sink = i2s.I2SAdpcmSink(0, 26, 27, 22)
    sink.set_volume(100)
    sink.open("adpcm", 16000, skip_samples=100)
    await sink.write(blocks)
    pcm = bytearray(1010)
    decode_block(blocks[:256], pcm)
    assert sink.samples_written == 2 * 505 - 100
    assert bytes(sink._i2s.data[:810]) == bytes(pcm[200:])  # the first 100 samples skipped
    assert sink._i2s.kwargs["rate"] == 16000 and FakeI2S.shifts == []
    assert sink._i2s.handler is not None  # non-blocking mode: I2S.write never holds the loop
    sink.set_volume(40)
    await sink.write(blocks[:256])
    assert FakeI2S.shifts == [-3]
    sink.stop()


def test_supply_temperature_and_clock_conversions(board):
    hw = board("firmware.hw.esp32")
    assert hw.dc_volts(1100000, 11.0, 0.1) == 12.2
    assert hw.epoch_offset_ms(2000) == 946684800000 and hw.epoch_offset_ms(1970) == 0
    cfg = config.merge(config.DEFAULTS, {"device": "rx-1", "sink": "i2s",
                                         "link": {"ssid": "xa", "password": "pw"}})
    platform = hw.Esp32Platform(cfg)
    assert platform.supply() == {"mains": 1, "dc": 12.1}
    assert platform.temperature() == 50  # 122 °F from the classic ESP32 sensor
    platform.amplifier(True)
    platform.amplifier(False)
    assert platform._amp.history == [1, 0]
    assert platform.link_info() == {"type": "wifi", "rssi": None}
    assert platform.sink.name == "i2s"
    # GPIO34-39 have no pulls: asking for one would be silently ignored, so the code does not
    # (the board's wiring has the resistor, docs/flashing.md).
    assert platform._fault.pin == 39 and platform._fault.pull is None
    assert platform.amplifier_fault() is False  # the external pull-up holds it high
    with pytest.raises(ValueError, match="not supported yet"):
        hw.make_link(config.merge(cfg, {"link": {"type": "ppp"}}))


async def test_wifi_connects_with_retries_then_gives_up(board):
    wifi = board("firmware.hw.wifi")
    link = wifi.WifiLink("xa", "pw", timeout_s=2)
    await link.up()
    assert link.connected() and link.rssi() == -67
    FakeWLAN.connect_after = 10 ** 6
    try:
        slow = wifi.WifiLink("xa", "pw", timeout_s=0.2)
        with pytest.raises(OSError):
            await slow.up()
        assert slow._wlan.connects == 3
    finally:
        FakeWLAN.connect_after = 3


def test_config_defaults_file_and_redaction(tmp_path):
    (tmp_path / "config.json").write_text(
        '{"device": "rx-1", "site": "xa", "key": "%s", "broker": {"host": "10.0.0.2", '
        '"password": "hunter2"}, "link": {"ssid": "xa", "password": "wifipw"}}' % ("ab" * 32))
    cfg = config.load(str(tmp_path))
    assert cfg["broker"]["port"] == 1883 and cfg["broker"]["host"] == "10.0.0.2"
    assert cfg["heartbeat_s"] == 30 and cfg["pins"]["amp"] == 25
    shown = repr(config.redacted(cfg))
    assert "hunter2" not in shown and "wifipw" not in shown and "ab" * 32 not in shown
    (tmp_path / "config.json").write_text('{"device": "rx 1"}')
    with pytest.raises(config.ConfigError, match="device"):
        config.load(str(tmp_path))
    with pytest.raises(config.ConfigError, match="key"):
        config.load(str(tmp_path), {"device": "rx-1", "site": "xa", "key": "00"})


def test_a_4g_receiver_defaults_to_the_economical_heartbeat(tmp_path):
    """On a paid 4G link (ppp) the heartbeat and keepalive default to 60 s (about half the
    bytes per day of 30 s); a value in config.json still wins."""
    base = {"device": "rx-1", "site": "xa", "key": "ab" * 32, "broker": {"host": "10.0.0.2"}}
    cfg = config.load(str(tmp_path), dict(base, link={"type": "ppp"}))
    assert (cfg["heartbeat_s"], cfg["keepalive_s"]) == (60, 60)
    cfg = config.load(str(tmp_path), dict(base, link={"type": "ppp"}, heartbeat_s=120))
    assert (cfg["heartbeat_s"], cfg["keepalive_s"]) == (120, 60)
    cfg = config.load(str(tmp_path), base)
    assert (cfg["heartbeat_s"], cfg["keepalive_s"]) == (30, 30)


async def test_a_sink_failing_mid_play_ends_the_play_failed_with_its_reason(tmp_path):
    """A VS1053 whose DREQ sticks low 2 KB into an MP3: the write gives up (bounded, about a
    full FIFO's play time plus 0.3 s) and the proof of play says "failed" with the sink's own
    reason, never "finished" (and never the bare "player: SinkError")."""
    import hashlib

    from mpy import fake_machine, sink_rig
    from test_shell_receiver import (
        DEV,
        KEY_HEX,
        SITE,
        TOPIC,
        FakeMQTT,
        FakePlatform,
        Head,
        started,
        stop,
        until,
    )

    from firmware.cache import MediaCache
    from firmware.shell import Receiver
    from protocol import messages as M

    vs1053, _ = sink_rig.load_sinks()
    sink, chip = sink_rig.new_vs1053(vs1053, speed=4, stuck_after=2048)
    mp3 = sink_rig.mp3_frames(40)  # 1.4 s at 16 kHz
    sha = hashlib.sha256(mp3).hexdigest()
    cache = MediaCache(str(tmp_path / "cache"), 10 ** 6)
    with open(cache.part_path(sha), "wb") as f:
        f.write(mp3)
    cache.add(sha, len(mp3), "mp3")
    board = FakePlatform(str(tmp_path))
    board.sink = sink
    config = {"device": DEV, "site": SITE, "key": KEY_HEX, "broker": {"host": "127.0.0.1"},
              "amp_settle_ms": 0, "heartbeat_s": 3600}
    rx = Receiver(config, board, mqtt_factory=FakeMQTT)
    task = await started(rx)
    try:
        args = {"bid": "b1", "item": "m1", "url": "http://127.0.0.1:9/m1", "sha": sha,
                "size": len(mp3), "dur": 1440, "codec": "mp3", "rate": 16000,
                "at": rx.now() + 200, "prio": 0}
        rx._on_message(TOPIC + "cmd", Head().cmd(M.PLAY, args), False)
        await until(lambda: any(e["k"] == "ended" for e in rx.mqtt.sent("evt")), timeout=5)
        ended = [e for e in rx.mqtt.sent("evt") if e["k"] == "ended"][0]
        assert (ended["reason"], ended["detail"]) == ("failed", "vs1053: DREQ stuck low")
        assert chip.overruns == 0 and 2048 <= chip.sdi_bytes < len(mp3)
    finally:
        await stop(rx, task)
        fake_machine.reset_board()


async def test_vs1053_self_test_checks_the_chip_then_runs_its_quiet_sine_test(board):
    vs = board("firmware.hw.vs1053")
    sink = vs.VS1053Sink(2, 18, 23, 19, 5, 16, 4, 17)
    spi = sink._spi
    spi.writes.clear()
    spi.mode_reads = [vs.SM_SDINEW | vs.SM_TESTS]  # the chip reads back what was written
    await sink.self_test(-30, 20)
    assert sci_writes(spi) == [(vs.SCI_MODE, vs.SM_SDINEW | vs.SM_TESTS),
                               (vs.SCI_VOL, 0x3C3C),      # -30 dB on both channels
                               (vs.SCI_MODE, vs.SM_SDINEW),
                               (vs.SCI_VOL, vs.volume_register(70))]
    sdi = [w for w in spi.writes if len(w) == 8]
    assert sdi == [vs._SINE_ON, vs._SINE_OFF]
    # No chip on the bus (MISO floating): the test fails with the wiring to check.
    spi.mode_reads = [0xFFFF]
    with pytest.raises(vs.SinkError, match="no chip answers"):
        await sink.self_test(-30, 20)


async def test_i2s_self_test_writes_a_quiet_square_wave_through_the_driver(board):
    i2s = board("firmware.hw.i2s_adpcm")
    sink = i2s.I2SAdpcmSink(0, 26, 27, 22)
    await sink.self_test(-30, 100)
    data = FakeI2S.last.data
    assert len(data) == 2 * 800  # 100 ms at 8 kHz, 16-bit
    samples = [int.from_bytes(data[i:i + 2], "little", signed=True) for i in range(0, 64, 2)]
    assert samples[:8] == [1023] * 8 and samples[8:16] == [-1023] * 8  # about -30 dBFS
    assert FakeI2S.last.kwargs["rate"] == 8000 and FakeI2S.last.closed  # stopped after
