"""A receiver's telemetry in words an operator reads at a glance (signal, power supply)."""

from typing import Any

from headend.i18n import Translator
from headend.services.devices import has_fault

LINK_NAMES = {"wifi": "Wi-Fi", "eth": "Ethernet", "ppp": "4G"}
# dBm thresholds for the words next to the number (Wi-Fi and 4G alike, roughly).
SIGNAL_GOOD = -65
SIGNAL_FAIR = -78


def _telemetry(device: Any) -> dict[str, Any]:
    telemetry = getattr(device, "telemetry", None)
    return telemetry if isinstance(telemetry, dict) else {}


def signal_text(t: Translator, device: Any) -> str:
    """"−61 dBm, mạnh (Wi-Fi)"; "—" before the first heartbeat."""
    telemetry = _telemetry(device)
    link = telemetry.get("ln") or getattr(device, "link", None)
    link_name = LINK_NAMES.get(link) if isinstance(link, str) else None
    link_name = link_name or t.maybe("link", link if isinstance(link, str) else None)
    rssi = telemetry.get("rssi")
    if not isinstance(rssi, int | float) or isinstance(rssi, bool):
        return link_name or "—"
    quality = t("signal.good" if rssi >= SIGNAL_GOOD else
                "signal.fair" if rssi >= SIGNAL_FAIR else "signal.weak")
    text = "%d dBm, %s" % (rssi, quality)
    return "%s (%s)" % (text, link_name) if link_name else text


def supply_text(t: Translator, device: Any) -> tuple[str, bool]:
    """("Điện lưới · 13,6 V", ok) ; ok is False on battery or with an amplifier fault."""
    telemetry = _telemetry(device)
    mains, volts = telemetry.get("mains"), telemetry.get("dc")
    parts = []
    if mains == 1:
        parts.append(t("supply.mains"))
    elif mains == 0:
        parts.append(t("supply.battery"))
    if isinstance(volts, int | float) and not isinstance(volts, bool):
        number = "%.1f" % volts
        parts.append((number.replace(".", ",") if t.language == "vi" else number) + " V")
    if telemetry.get("af"):
        parts.append(t("supply.amp_fault"))
    return (" · ".join(parts) or "—"), not has_fault(telemetry)
