"""Receiver configuration: defaults plus the device-local ``config.json`` in the storage dir.

The file is written once by the technician when provisioning (``docs/flashing.md``) and holds
the device's identity and secrets::

    {"device": "rx-0001", "site": "xa-01", "key": "<64 hex chars>",
     "broker": {"host": "broker.xa-01.lan", "port": 8883, "user": "rx-0001", "password": "...",
                "tls": true, "ca": "<the site's CA certificate: base64 DER, or PEM>",
                "server_name": "broker.xa-01.lan"},
     "link": {"type": "wifi", "ssid": "...", "password": "..."}}

With ``"tls": true`` the receiver verifies the broker: its certificate must chain to ``ca`` (the
site's CA, made by the head-end's provisioning; public, not a secret) and name ``server_name``
(default: ``host``). There is no unverified TLS: ``tls`` without ``ca`` is refused here.

Everything else has a default (``DEFAULTS``). Nested dicts are merged one level deep, so a file
may give only ``{"broker": {"host": ...}}``. ``redacted`` is the only form ever logged.
"""

import binascii
import json

from protocol.presence import period_s
from protocol.signing import key_from_hex
from protocol.topics import valid_id

CONFIG_FILE = "config.json"
# The last config.json that brought the receiver to its broker (remember_good): what load()
# falls back to when config.json is missing, torn or invalid, so a receiver whose file was
# damaged in the field still comes up, connects and says so in its birth.
GOOD_CONFIG_FILE = "config.good.json"
SECRET_KEYS = ("key", "password")

# Board pins (ESP32-WROVER defaults; see firmware/hw/esp32.py and docs/flashing.md). None of
# them is a strapping pin that must hold a level at reset (GPIO0, 12) or a line of the flash
# (GPIO6-11) or of the WROVER's PSRAM (GPIO16 CS, GPIO17 CLK): the VS1053's xDCS and RESET sat
# on 16/17 once, which would fight the PSRAM. 32/33 are free on a WROVER (no 32 kHz crystal).
DEFAULT_PINS = {"amp": 25, "amp_mute": None, "led": 2, "mains": 34, "dc_adc": 35, "amp_fault": 39,
                "vs_sck": 18, "vs_mosi": 23, "vs_miso": 19, "vs_xcs": 5, "vs_xdcs": 32,
                "vs_dreq": 4, "vs_reset": 33, "i2s_sck": 26, "i2s_ws": 27, "i2s_sd": 22}

# What each pin does, for validation: the board's own signals, then each sink's. Outputs (and
# the SPI/I2S clocks and data out) cannot sit on GPIO34-39, which are input only.
BOARD_OUTPUT_PINS = ("amp", "led")
# Outputs a board may have (None: it has not): the amplifier's mute line, on boards whose
# amplifier module brings one out (e.g. GPIO21), driven to ``amp_mute_level`` to mute.
OPTIONAL_OUTPUT_PINS = ("amp_mute",)
BOARD_INPUT_PINS = ("mains", "dc_adc", "amp_fault")
SINK_PINS = {"vs1053": (("vs_sck", "vs_mosi", "vs_xcs", "vs_xdcs", "vs_reset"),
                        ("vs_miso", "vs_dreq")),
             "i2s": (("i2s_sck", "i2s_ws", "i2s_sd"), ())}
# The classic ESP32's GPIOs (there is no 20, 24 or 28-31), the ones wired to the SPI flash inside
# every WROOM/WROVER module, the two more a WROVER gives its PSRAM, and the input-only ones.
ESP32_GPIOS = tuple(range(0, 20)) + (21, 22, 23, 25, 26, 27) + tuple(range(32, 40))
FLASH_GPIOS = (6, 7, 8, 9, 10, 11)
PSRAM_GPIOS = (16, 17)
INPUT_ONLY_GPIOS = (34, 35, 36, 37, 38, 39)

DEFAULTS = {
    "device": None,
    "site": None,
    "key": None,                 # hex, 32 bytes: the per-device HMAC key
    "broker": {"host": None, "port": 1883, "user": None, "password": None, "tls": False,
               "ca": None, "server_name": None},
    "link": {"type": "wifi", "ssid": None, "password": None, "timeout_s": 30},
    "heartbeat_s": None,         # None: by link type (protocol.presence.LINK_PERIODS_S)
    "keepalive_s": None,
    "timesync_s": 300,           # between single exchanges after the connect burst (drift is
                                 # estimated, so 5 min keeps a LAN receiver within a few ms)
    "timesync_burst": 5,
    "volume": 70,
    "emergency_volume": 100,
    "cache_bytes": 2000000,
    "amp_settle_ms": 300,        # relay on this long before the first sample
    # How the amplifier is held when idle (firmware/core.py, ``amp_standby`` below): "off"
    # (the relay open: no idle draw or hum; a play waits amp_settle_ms), "standby" (powered
    # and muted at every hour: a play waits only amp_unmute_ms), or "HH:MM-HH:MM" (standby in
    # those local hours, off outside; may cross midnight). Standby needs pins.amp_mute: a
    # board without one keeps the relay off when idle whatever this says.
    "amp_hold": "off",
    "amp_unmute_ms": 20,         # mute released this long before the first sample
    "amp_mute_level": 1,         # the level of pins.amp_mute that mutes (1: active high)
    "utc_offset_min": 420,       # local time for amp_hold's hours (Vietnam: UTC+7, no DST)
    "stream_lead_ms": 100,       # live frames go to the sink this early, queued behind the
                                 # one playing (less than the sink's own buffer: VS1053 FIFO
                                 # and I2S DMA hold ~0.5 s, the simulator's 120 ms)
    "jitter_slots": 16,
    "jitter_slot_bytes": 4096,
    "sink": "vs1053",            # or "i2s"
    "pins": DEFAULT_PINS,
    "psram": True,               # the board has PSRAM (ESP32-WROVER, the reference board): its
                                 # GPIO16/17 are then taken; false on a WROOM, which frees them
    # Supply sensing calibration (firmware/hw/esp32.py).
    "dc_divider": 11.0,          # volts at the input per volt at the ADC pin
    "dc_offset_v": 0.0,          # calibration: added after scaling
    # Field recovery (firmware/shell.py, firmware/recovery.py).
    "offline_reboot_min": 30,    # reboot after this long without the broker (0: never); not
                                 # while playing or just before a start
    "ota_trial_s": 600,          # a new firmware must get its birth to the broker this soon
                                 # after its first boot, or it rolls back (firmware/ota.py)
    "fallback": None,            # set by load(): {"file", "error"} when config.json was refused
}


class ConfigError(ValueError):
    pass


def merge(base, override):
    """``base`` updated with ``override``, nested dicts merged one level deep (copies)."""
    out = {}
    for name in base:
        value = base[name]
        out[name] = dict(value) if isinstance(value, dict) else value
    for name in override:
        value = override[name]
        if isinstance(value, dict) and isinstance(out.get(name), dict):
            out[name].update(value)
        else:
            out[name] = value
    return out


def validate(cfg):
    """Refuse a configuration the receiver cannot run with; return it."""
    for name in ("device", "site"):
        if not valid_id(cfg.get(name)):
            raise ConfigError("%s must be 1-48 characters of A-Za-z0-9_-" % name)
    try:
        if len(key_from_hex(cfg.get("key") or "")) != 32:
            raise ConfigError("key must be 64 hex characters (32 bytes)")
    except ValueError:
        raise ConfigError("key must be 64 hex characters (32 bytes)")
    if not cfg["broker"].get("host"):
        raise ConfigError("broker.host is missing")
    validate_broker_tls(cfg["broker"])
    # Heartbeat and MQTT keepalive follow the link type when config.json does not set them
    # (protocol/presence.py: 60 s on a paid 4G link, 30 s otherwise).
    period = period_s(cfg["link"].get("type"))
    for name in ("heartbeat_s", "keepalive_s"):
        if cfg[name] is None:
            cfg[name] = period
    for name in ("heartbeat_s", "keepalive_s", "timesync_s", "ota_trial_s"):
        if not isinstance(cfg[name], int) or cfg[name] < 1:
            raise ConfigError("%s must be a positive integer" % name)
    validate_pins(cfg)
    validate_amp(cfg)
    minutes = cfg.get("offline_reboot_min")
    if not isinstance(minutes, int) or isinstance(minutes, bool) or minutes < 0:
        raise ConfigError("offline_reboot_min must be a whole number of minutes (0: never)")
    return cfg


_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"


def validate_broker_tls(broker):
    """TLS is verified or not used: ``tls`` true needs the site's CA certificate in ``ca``.
    A receiver that accepted any certificate would hand its password and every command to
    whoever answers on the broker's address."""
    tls = broker.get("tls")
    if tls not in (True, False, None):
        raise ConfigError("broker.tls must be true or false")
    if not tls:
        return
    if not broker.get("ca"):
        raise ConfigError("broker.tls is true but broker.ca is missing: the receiver verifies "
                          "the broker against the site's CA certificate (provisioning writes "
                          "it) and does not connect without it")
    ca_der(broker["ca"])
    name = broker.get("server_name")
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigError("broker.server_name must be the name on the broker's certificate")


def ca_der(text):
    """The DER bytes of the one CA certificate in ``broker.ca`` (base64 of the DER, or PEM)."""
    if not isinstance(text, str):
        raise ConfigError("broker.ca must be a string (base64 DER or PEM)")
    if "PRIVATE KEY" in text:
        raise ConfigError("broker.ca holds a private key: give the CA's certificate only")
    start = text.find(_PEM_BEGIN)
    if start >= 0:
        end = text.find(_PEM_END, start)
        if end < 0:
            raise ConfigError("broker.ca: PEM without its END line")
        # The header's letters are base64 letters too: only what lies between counts.
        text = text[start + len(_PEM_BEGIN):end]
    try:
        der = binascii.a2b_base64(text)
    except ValueError:
        der = b""
    # One DER SEQUENCE whose length covers the rest: a copy cut short is refused here, with a
    # reason, rather than as a TLS failure at every connect.
    if len(der) < 4 or der[0] != 0x30 or _der_size(der) != len(der):
        raise ConfigError("broker.ca is not a certificate (base64 DER or PEM, copied whole)")
    return der


def _der_size(der):
    """Total size of the DER element at the start of ``der`` (header included), or -1."""
    first = der[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count > 3 or len(der) < 2 + count:
        return -1
    size = 0
    for i in range(count):
        size = (size << 8) | der[2 + i]
    return 2 + count + size


def _hhmm(text):
    """Minutes of the day of "HH:MM", or None."""
    if len(text) != 5 or text[2] != ":" or not (text[:2] + text[3:]).isdigit():
        return None
    hours, minutes = int(text[:2]), int(text[3:])
    return hours * 60 + minutes if hours < 24 and minutes < 60 else None


def amp_standby(cfg):
    """What ``amp_hold`` asks of the core (``ReceiverCore(amp_standby=...)``): None (off),
    "always", or (from, to) minutes of the local day. Raises ConfigError if malformed."""
    hold = cfg.get("amp_hold")
    if hold == "off":
        return None
    if hold == "standby":
        return "always"
    if isinstance(hold, str) and len(hold) == 11 and hold[5] == "-":
        start, end = _hhmm(hold[:5]), _hhmm(hold[6:])
        if start is not None and end is not None and start != end:
            return (start, end)
    raise ConfigError('amp_hold must be "off", "standby" or "HH:MM-HH:MM" (local hours)')


def validate_amp(cfg):
    amp_standby(cfg)
    for name, lo, hi in (("amp_settle_ms", 0, 5000), ("amp_unmute_ms", 0, 1000),
                         ("utc_offset_min", -720, 840)):
        value = cfg.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ConfigError("%s must be a whole number from %d to %d" % (name, lo, hi))
    if cfg.get("amp_mute_level") not in (0, 1) or isinstance(cfg.get("amp_mute_level"), bool):
        raise ConfigError("amp_mute_level must be 0 or 1 (the level that mutes)")


def has_amp_mute(cfg):
    return cfg["pins"].get("amp_mute") is not None


def validate_pins(cfg):
    """Refuse pins the board cannot give: not an ESP32 GPIO, a flash line (always), a PSRAM line
    (when ``psram``), an output on an input-only GPIO, or one GPIO for two signals. Only the
    board's pins and those of the configured sink count (the other sink's defaults may overlap).
    A simulated sink ("sim", "fake") has no pins of its own."""
    pins = cfg["pins"]
    outputs, inputs = SINK_PINS.get(cfg.get("sink"), ((), ()))
    used = {}
    optional = [n for n in OPTIONAL_OUTPUT_PINS if pins.get(n) is not None]
    for names, output in ((BOARD_OUTPUT_PINS, True), (BOARD_INPUT_PINS, False),
                          (optional, True), (outputs, True), (inputs, False)):
        for name in names:
            gpio = pins.get(name)
            if not isinstance(gpio, int) or isinstance(gpio, bool) or gpio not in ESP32_GPIOS:
                raise ConfigError("pins.%s must be an ESP32 GPIO number, not %r" % (name, gpio))
            if gpio in FLASH_GPIOS:
                raise ConfigError("pins.%s: GPIO%d is wired to the SPI flash (GPIO6-11)"
                                  % (name, gpio))
            if gpio in PSRAM_GPIOS and cfg.get("psram", True):
                raise ConfigError("pins.%s: GPIO%d is a PSRAM line on this board (set "
                                  "\"psram\": false only on a board without PSRAM)" % (name, gpio))
            if output and gpio in INPUT_ONLY_GPIOS:
                raise ConfigError("pins.%s: GPIO%d is input only (GPIO34-39)" % (name, gpio))
            if gpio in used:
                raise ConfigError("pins.%s and pins.%s are both GPIO%d" % (used[gpio], name, gpio))
            used[gpio] = name


def _load_file(storage_dir, name, overrides, missing_ok):
    """Defaults, then ``storage_dir/name``, then ``overrides``; validated."""
    cfg = merge(DEFAULTS, {})
    try:
        with open(storage_dir + "/" + name) as f:
            data = json.load(f)
    except OSError:
        if not missing_ok:
            raise ConfigError("%s/%s is missing" % (storage_dir, name))
        data = {}
    except ValueError:
        raise ConfigError("%s/%s is not valid JSON" % (storage_dir, name))
    if not isinstance(data, dict):
        raise ConfigError("%s/%s is not a JSON object" % (storage_dir, name))
    cfg = merge(cfg, data)
    if overrides:
        cfg = merge(cfg, overrides)
    return validate(cfg)


def load(storage_dir, overrides=None):
    """Defaults, then ``storage_dir/config.json``, then ``overrides``; validated.

    A config.json that is missing, does not parse or does not validate gives way to
    config.good.json (the copy remember_good() kept when a config.json first reached the
    broker): the config returned then says so, ``"fallback": {"file": "config.good.json",
    "error": why config.json was refused}``, and the receiver reports it in its birth. Without
    a good copy (or with a bad one) the error about config.json is raised, as before."""
    try:
        return _load_file(storage_dir, CONFIG_FILE, overrides, True)
    except ConfigError as e:
        error = e
    try:
        cfg = _load_file(storage_dir, GOOD_CONFIG_FILE, overrides, False)
    except ConfigError:
        raise error
    cfg["fallback"] = {"file": GOOD_CONFIG_FILE, "error": str(error)[:120]}
    return cfg


def remember_good(storage_dir):
    """Keep config.json as config.good.json: called once the receiver has reached its broker
    with it. Written only when it differs (flash wear) and only a copy that loads and
    validates on its own. Returns True when the good copy was (re)written."""
    from firmware.store import write_atomic

    good = storage_dir + "/" + GOOD_CONFIG_FILE
    try:
        with open(storage_dir + "/" + CONFIG_FILE, "rb") as f:
            data = f.read()
    except OSError:
        return False  # the config came from elsewhere (the simulator): nothing to keep
    try:
        with open(good, "rb") as f:
            if f.read() == data:
                return False
    except OSError:
        pass
    try:
        _load_file(storage_dir, CONFIG_FILE, None, False)
    except ConfigError:
        return False  # changed since the boot and not valid: never keep a bad copy as good
    write_atomic(good, data)
    return True


def redacted(cfg):
    """A copy safe to print: secrets replaced by "***"."""
    out = {}
    for name in cfg:
        value = cfg[name]
        if isinstance(value, dict):
            value = redacted(value)
        elif name in SECRET_KEYS and value:
            value = "***"
        out[name] = value
    return out
