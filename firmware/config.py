"""Receiver configuration: defaults plus the device-local ``config.json`` in the storage dir.

The file is written once by the technician when provisioning (``docs/flashing.md``) and holds
the device's identity and secrets::

    {"device": "rx-0001", "site": "xa-01", "key": "<64 hex chars>",
     "broker": {"host": "10.0.0.2", "port": 1883, "user": "rx-0001", "password": "...",
                "tls": false},
     "link": {"type": "wifi", "ssid": "...", "password": "..."}}

Everything else has a default (``DEFAULTS``). Nested dicts are merged one level deep, so a file
may give only ``{"broker": {"host": ...}}``. ``redacted`` is the only form ever logged.
"""

import json

from protocol.signing import key_from_hex
from protocol.topics import valid_id

CONFIG_FILE = "config.json"
SECRET_KEYS = ("key", "password")

# Board pins (ESP32-WROVER defaults; see firmware/hw/esp32.py and docs/flashing.md).
DEFAULT_PINS = {"amp": 25, "led": 2, "mains": 34, "dc_adc": 35, "amp_fault": 39,
                "vs_sck": 18, "vs_mosi": 23, "vs_miso": 19, "vs_xcs": 5, "vs_xdcs": 16,
                "vs_dreq": 4, "vs_reset": 17, "i2s_sck": 26, "i2s_ws": 27, "i2s_sd": 22}

DEFAULTS = {
    "device": None,
    "site": None,
    "key": None,                 # hex, 32 bytes: the per-device HMAC key
    "broker": {"host": None, "port": 1883, "user": None, "password": None, "tls": False},
    "link": {"type": "wifi", "ssid": None, "password": None, "timeout_s": 30},
    "heartbeat_s": None,         # None: by link type (LINK_PERIODS_S)
    "keepalive_s": None,
    "timesync_s": 300,           # between single exchanges after the connect burst (drift is
                                 # estimated, so 5 min keeps a LAN receiver within a few ms)
    "timesync_burst": 5,
    "volume": 70,
    "emergency_volume": 100,
    "cache_bytes": 2000000,
    "amp_settle_ms": 300,        # relay on this long before the first sample
    "jitter_slots": 16,
    "jitter_slot_bytes": 4096,
    "sink": "vs1053",            # or "i2s"
    "pins": DEFAULT_PINS,
    # Supply sensing calibration (firmware/hw/esp32.py).
    "dc_divider": 11.0,          # volts at the input per volt at the ADC pin
    "dc_offset_v": 0.0,          # calibration: added after scaling
}


# Heartbeat and MQTT keepalive periods by link type, when config.json does not set them. On a
# paid 4G link (ppp) every packet costs ~40 B of TCP/IP and ~29 B of TLS: 60 s keeps a receiver
# at ~0.6 MB/day on the wire with TLS, against ~1.1 MB/day at 30 s (bench/bench_link_bytes.py).
LINK_PERIODS_S = {"wifi": 30, "eth": 30, "ppp": 60}


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
    period = LINK_PERIODS_S.get(cfg["link"].get("type"), 30)
    for name in ("heartbeat_s", "keepalive_s"):
        if cfg[name] is None:
            cfg[name] = period
    for name in ("heartbeat_s", "keepalive_s", "timesync_s"):
        if not isinstance(cfg[name], int) or cfg[name] < 1:
            raise ConfigError("%s must be a positive integer" % name)
    return cfg


def load(storage_dir, overrides=None):
    """Defaults, then ``storage_dir/config.json``, then ``overrides``; validated."""
    cfg = DEFAULTS
    try:
        with open(storage_dir + "/" + CONFIG_FILE) as f:
            cfg = merge(cfg, json.load(f))
    except OSError:
        pass
    except ValueError:
        raise ConfigError("%s/%s is not valid JSON" % (storage_dir, CONFIG_FILE))
    if overrides:
        cfg = merge(cfg, overrides)
    return validate(cfg)


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
