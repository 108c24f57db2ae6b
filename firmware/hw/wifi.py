"""Wi-Fi station link (network.WLAN): connect with a timeout, retry, report signal strength.

Ethernet (LAN8720 via network.LAN) and 4G over PPP (network.PPP) are planned behind the same
two methods (``up``, ``rssi``); docs/flashing.md says what works today.
"""

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

import network

_ATTEMPTS = 3
_POLL_S = 0.2


class WifiLink:
    kind = "wifi"

    def __init__(self, ssid, password, timeout_s=30, hostname=None):
        if not ssid:
            raise ValueError("link.ssid is not configured")
        self._ssid = ssid
        self._password = password
        self._timeout_s = timeout_s
        self._wlan = network.WLAN(network.STA_IF)
        if hostname:
            try:
                network.hostname(hostname)
            except Exception:
                pass  # older firmware: keep the default name

    def connected(self):
        return self._wlan.isconnected()

    async def up(self):
        """Return once associated and addressed; raise OSError after the retries."""
        wlan = self._wlan
        wlan.active(True)
        if wlan.isconnected():
            return
        for _ in range(_ATTEMPTS):
            wlan.connect(self._ssid, self._password)
            waited = 0.0
            while waited < self._timeout_s:
                if wlan.isconnected():
                    return
                await asyncio.sleep(_POLL_S)
                waited += _POLL_S
            wlan.disconnect()
        raise OSError("wifi: not connected to the configured network")

    def rssi(self):
        try:
            return wlan_rssi(self._wlan) if self._wlan.isconnected() else None
        except Exception:
            return None


def wlan_rssi(wlan):
    return wlan.status("rssi")
