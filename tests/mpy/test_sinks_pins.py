"""Which GPIOs a receiver's configuration may use (firmware/config.py ``validate_pins``): never
the SPI flash lines (GPIO6-11), not the PSRAM lines (GPIO16/17) on a board with PSRAM (the
WROVER reference board, ``"psram": true`` by default), no output on an input-only GPIO (34-39),
no GPIO twice, only GPIOs the ESP32 has; and the defaults pass.

Plain functions and asserts (see tests/mpy/): pytest and both MicroPythons run them.
"""

from firmware import config

BASE = {"device": "rx-1", "site": "xa", "key": "ab" * 32, "broker": {"host": "10.0.0.2"}}


def checked(overrides):
    return config.validate(config.merge(config.merge(config.DEFAULTS, BASE), overrides))


def refusal(overrides):
    try:
        checked(overrides)
    except config.ConfigError as e:
        return str(e)
    raise AssertionError("accepted: %r" % overrides)


def test_the_default_pins_pass_on_a_wrover_for_both_sinks():
    for sink in ("vs1053", "i2s"):
        cfg = checked({"sink": sink})
        assert cfg["psram"] is True
    used = [config.DEFAULT_PINS[name] for name in config.DEFAULT_PINS]
    for gpio in used:
        assert gpio not in config.FLASH_GPIOS and gpio not in config.PSRAM_GPIOS, gpio
    assert len(set(used)) == len(used)


def test_flash_lines_are_refused_on_every_board():
    for gpio in config.FLASH_GPIOS:
        for psram in (True, False):
            message = refusal({"psram": psram, "pins": {"vs_xcs": gpio}})
            assert "pins.vs_xcs" in message and "flash" in message, message


def test_psram_lines_are_refused_only_on_a_board_with_psram():
    message = refusal({"pins": {"vs_xdcs": 16}})
    assert "pins.vs_xdcs" in message and "PSRAM" in message, message
    assert "PSRAM" in refusal({"pins": {"vs_reset": 17}})
    cfg = checked({"psram": False, "pins": {"vs_xdcs": 16, "vs_reset": 17}})  # a WROOM
    assert (cfg["pins"]["vs_xdcs"], cfg["pins"]["vs_reset"]) == (16, 17)


def test_outputs_on_input_only_gpios_are_refused_inputs_are_not():
    for name in ("amp", "led", "vs_sck", "vs_mosi", "vs_xcs", "vs_xdcs", "vs_reset"):
        message = refusal({"pins": {name: 36}})
        assert "pins.%s" % name in message and "input only" in message, message
    assert "input only" in refusal({"sink": "i2s", "pins": {"i2s_sd": 37}})
    checked({"pins": {"vs_dreq": 36, "vs_miso": 38}})  # inputs may sit there


def test_one_gpio_for_two_signals_is_refused():
    message = refusal({"pins": {"vs_dreq": 25}})  # the amplifier relay's
    assert "pins.amp" in message and "pins.vs_dreq" in message and "GPIO25" in message, message
    # The other sink's pins do not count: an I2S board may reuse the VS1053's defaults.
    checked({"sink": "i2s", "pins": {"i2s_sck": 18, "i2s_ws": 23, "i2s_sd": 19}})


def test_only_gpios_the_esp32_has_are_accepted():
    for bad in (20, 24, 28, 40, -1, "5", None, True):
        message = refusal({"pins": {"led": bad}})
        assert "pins.led" in message and "GPIO number" in message, message
