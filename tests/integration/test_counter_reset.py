"""Issue 9, left over: a receiver stuck on a huge command-counter floor, brought back by the
head-end's signed, one-use ``reset_floor`` (docs/protocol.md).

End to end: the head-end as its own process, a real Mosquitto, a simulated receiver running the
real firmware (CPython receivers: the test reads their core's counters) whose state file says
its floor is ten years ahead, as a receiver that accepted a command from a head-end whose clock
had jumped would have it. Everything the admin does goes through the HTTP API; a sniffer on the
broker keeps the reset as it went out, to replay it after a reboot.
"""

import asyncio
import json
import os
import threading
import time

import httpx
import paho.mqtt.client as mqtt
import pytest
from polling import until
from site_setup import provision_site

from headend.process import HeadendProcess
from protocol import messages, topics
from protocol.signing import key_from_hex
from simulator.fleet import Fleet

pytestmark = pytest.mark.integration

SITE = "xa-reset"
PASSWORD = "reset-admin-pass"
TEN_YEARS_MS = 10 * 365 * 86400000


class Sniffer:
    """A client on the broker that keeps every command sent to one receiver, and can publish
    one again (an attacker who recorded the traffic)."""

    def __init__(self, broker, site, device):
        self.topic = topics.device_topic(site, device, topics.CMD)
        self.payloads = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sniffer")
        self.client.on_connect = lambda c, *_: c.subscribe(self.topic, 1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the sniffer never subscribed"

    def _on_message(self, _client, _userdata, msg):
        with self._lock:
            self.payloads.append(bytes(msg.payload))

    def sent(self, key, device, kind):
        """The commands of ``kind`` seen so far, as (payload, opened body)."""
        with self._lock:
            payloads = list(self.payloads)
        out = []
        for payload in payloads:
            body = messages.open_command(key, payload, device)
            if body["k"] == kind:
                out.append((payload, body))
        return out

    def replay(self, payload):
        self.client.publish(self.topic, payload, qos=1).wait_for_publish(5)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()




def write_stuck_state(board_dir, floor):
    """The state file a receiver left in flash after accepting a counter ``floor``."""
    os.makedirs(board_dir, exist_ok=True)
    with open(os.path.join(board_dir, "state.json"), "w") as f:
        json.dump({"boot": 3, "core": {"ctr": floor, "seq": 0, "vol": 70}}, f)


def flash_floors(board_dir):
    """The counter floor in each copy of the receiver's state file (firmware/store.py)."""
    floors = []
    for name in ("state.json", "state.json.tmp", "state.json.bak"):
        path = os.path.join(board_dir, name)
        if os.path.exists(path):
            with open(path) as f:
                floors.append(json.load(f)["core"]["ctr"])
    return floors


async def test_a_stuck_receiver_is_reset_once_and_a_replayed_reset_is_refused(tmp_path,
                                                                             mosquitto_broker):
    broker = mosquitto_broker
    spec, = provision_site(tmp_path / "headend", broker, site=SITE, receivers=1,
                           zones=[("thon-1", "Thôn 1")], prefix="r-",
                           users=[("boss", "admin")], password=PASSWORD)
    device, key = spec.id, key_from_hex(spec.key)
    boards = tmp_path / "boards"
    stuck = int(time.time() * 1000) + TEN_YEARS_MS
    write_stuck_state(str(boards / device), stuck)

    server = HeadendProcess(tmp_path / "headend", mqtt=(broker.host, broker.port),
                            env={"LOAXA_SITE_ID": SITE})
    fleet = Fleet([spec], site=SITE, broker=(broker.host, broker.port), workdir=str(boards))
    sniffer = Sniffer(broker, SITE, device)
    await asyncio.to_thread(server.start)
    http = httpx.AsyncClient(base_url=server.url, timeout=10)

    def log():
        return server.log_text()[-2000:]

    def receiver():
        return fleet[device].receiver

    def floor():
        return receiver().core.export_state()["ctr"]

    async def online():
        r = await http.get("/api/v1/devices/" + device, headers=headers)
        return r.status_code == 200 and r.json()["online"]

    async def set_volume(vol):
        r = await http.post("/api/v1/devices/%s/commands" % device, headers=headers,
                            json={"kind": "volume", "args": {"vol": vol}})
        assert r.status_code == 202, r.text

    try:
        r = await http.post("/api/v1/auth/token", data={"username": "boss", "password": PASSWORD})
        headers = {"Authorization": "Bearer " + r.json()["access_token"]}
        await fleet.start()
        await until(online, 30, "the receiver online at the head-end", log)
        await until(lambda: receiver().core.synced, 20, "the receiver's clock synced", log)
        assert floor() == stuck and receiver().core.volume == 70

        # Stuck: the head-end's commands (counter = its clock) are all refused as replays.
        await set_volume(30)
        await until(lambda: receiver().core.counters.get("replay", 0) >= 1, 10,
                    "the volume refused as a replay", log)
        assert receiver().core.volume == 70 and floor() == stuck

        # The admin resets the floor: signed for the nonce of this boot's birth.
        first_nonce = receiver().core.reset_nonce
        assert first_nonce
        r = await http.post("/api/v1/devices/%s/reset-counter" % device, headers=headers)
        assert r.status_code == 202, r.text
        await until(lambda: floor() < stuck, 10, "the floor brought down", log)
        (reset_payload, reset_body), = sniffer.sent(key, device, messages.RESET_FLOOR)
        assert reset_body["a"]["nonce"] == first_nonce and floor() == reset_body["ctr"]
        assert receiver().core.reset_nonce is None  # used up
        reset_floor = floor()

        # A second reset this boot: the head-end still holds the used nonce, so it signs one;
        # the receiver refuses it (one use) and its floor stays.
        r = await http.post("/api/v1/devices/%s/reset-counter" % device, headers=headers)
        assert r.status_code == 202, r.text
        await until(lambda: receiver().core.counters.get("bad-nonce", 0) == 1, 10,
                    "a second reset of the same boot refused", log)
        assert floor() == reset_floor

        # In flash, every copy of the state file holds the lowered floor (the backup copy too,
        # which said ten years ahead until the reset): a power cut now comes back unstuck.
        assert flash_floors(str(boards / device)) == [reset_floor, reset_floor]

        # A reboot straight after the reset: the lowered floor is what it boots with, and the
        # new boot has a new nonce.
        await fleet.restart(device)
        # (Synced at once from its RTC, which kept time: wait for the broker link too, or a
        # command sent now would find no subscription.)
        await until(lambda: receiver() is not None and receiver().core.synced
                    and receiver().mqtt.connected, 20, "the receiver back and connected", log)
        assert floor() == reset_floor
        assert receiver().core.reset_nonce not in (None, first_nonce)

        # The head-end's next ordinary command is taken...
        await set_volume(33)
        await until(lambda: receiver().core.volume == 33, 10, "the volume taken", log)
        taken_floor = floor()
        assert reset_floor < taken_floor < stuck
        # ... and the recorded reset, replayed after the reboot, is refused, changing nothing.
        sniffer.replay(reset_payload)
        await until(lambda: receiver().core.counters.get("bad-nonce", 0) == 1, 10,
                    "the replayed reset refused", log)
        assert floor() == taken_floor and receiver().core.volume == 33
        assert not fleet.crashed()
    finally:
        await fleet.stop()
        sniffer.close()
        await http.aclose()
        await asyncio.to_thread(server.stop)
