"""The simulated board: what the firmware does to it is recorded, what it reads can be set."""

from simulator.clock import TICKS_PERIOD
from simulator.host import HostPlatform


def test_relay_and_led_changes_are_recorded_once_each(tmp_path):
    board = HostPlatform("r01", storage_dir=str(tmp_path))
    board.amplifier(True)
    board.amplifier(True)
    board.amplifier(False)
    board.led("play")
    assert [on for _, on in board.amp_changes] == [True, False]
    assert [p for _, p in board.led_changes] == ["play"]


def test_sensors_read_what_a_test_sets(tmp_path):
    board = HostPlatform("r01", storage_dir=str(tmp_path))
    board.mains, board.dc_volts = 0, 11.9  # on the backup battery
    assert board.supply() == {"mains": 0, "dc": 11.9}
    board.link.cut()
    assert board.link_info()["rssi"] is None
    board.link.restore()
    assert board.link_info() == {"type": "wifi", "rssi": -61}


def test_flash_outlives_the_board_object(tmp_path):
    HostPlatform("r01", storage_dir=str(tmp_path))
    (tmp_path / "state.json").write_text("{}")
    again = HostPlatform("r01", storage_dir=str(tmp_path))
    assert (tmp_path / "state.json").exists() and again.storage_dir == str(tmp_path)


def test_ticks_start_just_before_the_wrap(tmp_path):
    assert HostPlatform("r01", storage_dir=str(tmp_path)).ticks_ms() > TICKS_PERIOD - 5000
    assert HostPlatform("r02", storage_dir=str(tmp_path), ticks_near_wrap=False).ticks_ms() < 5000


def test_reboot_is_handed_to_the_simulator_and_randomness_is_per_device(tmp_path):
    asked = []
    board = HostPlatform("r01", storage_dir=str(tmp_path), on_reboot=asked.append, seed=5)
    board.reboot()
    assert asked == [board]
    same = HostPlatform("r01", storage_dir=str(tmp_path), seed=5)
    other = HostPlatform("r02", storage_dir=str(tmp_path), seed=5)
    draws = [board.random_below(1000) for _ in range(5)]
    assert draws == [same.random_below(1000) for _ in range(5)]
    assert draws != [other.random_below(1000) for _ in range(5)]


def test_a_battery_drains_once_the_mains_goes(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("simulator.host.time.time", lambda: clock[0])
    board = HostPlatform("r01", storage_dir=str(tmp_path))
    board.battery_v, board.battery_drain_v_per_s, board.battery_cutoff_v = 12.5, 0.5, 11.0
    assert board.supply() == {"mains": 1, "dc": 13.6} and not board.battery_empty()
    board.mains = 0
    clock[0] += 2.0
    assert board.supply() == {"mains": 0, "dc": 11.5} and not board.battery_empty()
    clock[0] += 1.0
    assert board.supply()["dc"] == 11.0 and board.battery_empty()
    board.mains = 1  # the charger's voltage again
    assert board.supply() == {"mains": 1, "dc": 13.6} and not board.battery_empty()
    assert [m for _, m in board.mains_changes] == [0, 1]
