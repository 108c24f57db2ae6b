"""``POST /api/v1/devices/{id}/reset-counter``: a signed reset of a receiver's counter floor for
the nonce of its latest birth (docs/protocol.md, ``reset_floor``), checked by the receiver's
real core."""

from conftest import PASSWORD, login, now_ms

from firmware import core as C
from protocol import messages
from protocol.signing import key_from_hex

NONCE = "3c" * 32
STUCK = 2 ** 62  # a floor no honest counter reaches: every command is refused as a replay


def birth_with_nonce(commune, device, nonce=NONCE, boot=1, conn=1, key=None):
    body = messages.birth(device, boot, conn, "0.1.0", {"codecs": ["mp3"], "sink": "sim"},
                          "sim", {"nonce": nonce})
    return commune.sealed("status", device, body, key=key)


def reset(client, headers, device="a1"):
    return client.post("/api/v1/devices/%s/reset-counter" % device, headers=headers)


def stuck_receiver(commune, device, nonce=NONCE):
    """The receiver's own core, with a floor far in the future and this boot's nonce."""
    core = C.ReceiverCore(device, "xa-test", key_from_hex(commune.keys[device]),
                          state={"ctr": STUCK}, reset_nonce=nonce)
    core.set_synced(now_ms())
    return core


def acks(acts):
    return [a[1] for a in acts if a[0] == C.EVENT and a[1]["k"] == messages.EV_ACK]


def test_admin_resets_the_counter_of_a_receiver_stuck_on_a_huge_floor(client, commune,
                                                                       as_admin):
    commune.report(birth_with_nonce(commune, "a1"))
    r = reset(client, as_admin)
    assert r.status_code == 202, r.text
    cmd_id = r.json()["command_id"]
    sent = [c for c in commune.commands_to("a1") if c["k"] == messages.RESET_FLOOR]
    assert len(sent) == 1 and sent[0]["a"] == {"nonce": NONCE} and sent[0]["id"] == cmd_id
    # The receiver (its real core) takes it, and then the head-end's next command.
    core = stuck_receiver(commune, "a1")
    now = now_ms()
    payloads = [s.payload for s in commune.publisher.sent if s.device_id == "a1"]
    assert acks(core.on_command(payloads[-1], now))[0]["ok"] is True
    assert core.export_state()["ctr"] == sent[0]["ctr"]
    r = client.post("/api/v1/devices/a1/commands", json={"kind": "volume", "args": {"vol": 40}},
                    headers=as_admin)
    assert r.status_code == 202, r.text
    volume = [s.payload for s in commune.publisher.sent if s.device_id == "a1"][-1]
    assert acks(core.on_command(volume, now + 1))[0]["ok"] is True and core.volume == 40
    audit = client.get("/api/v1/audit", params={"action": "device.reset-counter"},
                       headers=as_admin).json()
    assert [(e["target"], e["username"]) for e in audit] == [("a1", "admin")]
    assert cmd_id in str(audit[0]["detail"])


def test_only_an_admin_may_reset_a_counter(client, commune):
    commune.report(birth_with_nonce(commune, "a1"))
    for role in ("technician", "operator", "viewer"):
        assert reset(client, login(client, role, PASSWORD)).status_code == 403, role
    assert not [c for c in commune.commands_to("a1") if c["k"] == messages.RESET_FLOOR]


def test_offline_or_unknown_receivers_get_no_reset(client, commune, as_admin):
    r = reset(client, as_admin)  # never seen: no birth, no nonce
    assert r.status_code == 409 and r.json()["code"] == "receiver-offline"
    commune.report(birth_with_nonce(commune, "a1"))
    commune.report(commune.death("a1"))
    r = reset(client, as_admin)
    assert r.status_code == 409 and r.json()["code"] == "receiver-offline"
    assert reset(client, as_admin, "nobody").status_code == 404
    assert not commune.publisher.sent


def test_a_birth_without_a_nonce_leaves_none_to_reset_with(client, commune, as_admin):
    commune.report(birth_with_nonce(commune, "a1"))
    # The reset was used: the next birth of that boot carries no nonce.
    commune.report(commune.birth("a1", conn=2))
    r = reset(client, as_admin)
    assert r.status_code == 409 and r.json()["code"] == "no-reset-nonce"
    assert "Cụm loa" in r.json()["message_vi"]


def test_the_reset_follows_the_latest_boot_and_an_old_one_is_refused(client, commune,
                                                                    as_admin):
    commune.report(birth_with_nonce(commune, "a1", nonce="11" * 32))
    assert reset(client, as_admin).status_code == 202
    old = [s.payload for s in commune.publisher.sent if s.device_id == "a1"][-1]
    commune.report(birth_with_nonce(commune, "a1", nonce="22" * 32, boot=2))
    assert reset(client, as_admin).status_code == 202
    sent = [c for c in commune.commands_to("a1") if c["k"] == messages.RESET_FLOOR]
    assert [c["a"]["nonce"] for c in sent] == ["11" * 32, "22" * 32]
    # The receiver in its second boot: the first boot's reset is refused, the new one taken.
    core = stuck_receiver(commune, "a1", nonce="22" * 32)
    now = now_ms()
    refused = acks(core.on_command(old, now))[0]
    assert refused["ok"] is False and refused["reason"] == "bad-nonce"
    new = [s.payload for s in commune.publisher.sent if s.device_id == "a1"][-1]
    assert acks(core.on_command(new, now))[0]["ok"] is True


def test_a_forged_birth_cannot_plant_a_nonce(client, commune, as_admin):
    commune.report(commune.birth("a1"))
    forged = birth_with_nonce(commune, "a1", conn=2, key="ee" * 32)
    commune.report(forged)
    r = reset(client, as_admin)
    assert r.status_code == 409 and r.json()["code"] == "no-reset-nonce"


def test_a_receiver_refusing_commands_as_replays_is_suggested_a_reset(client, commune,
                                                                      as_admin):
    def suggested():
        r = client.get("/api/v1/devices/a1", headers=as_admin)
        assert r.status_code == 200, r.text
        return r.json()["counter_reset_suggested"]

    commune.report(birth_with_nonce(commune, "a1"))
    assert suggested() is False
    for n in range(3):
        commune.report(commune.event("a1", messages.EV_ACK, cmd="c%d" % n, ok=False,
                                     reason="replay"),
                       commune.event("a1", messages.EV_REJECTED, topic="cmd", reason="replay"))
        assert suggested() is (n == 2)
    # Other refusals do not count; a command taken (after the reset) ends the suggestion.
    commune.report(commune.event("a1", messages.EV_REJECTED, topic="cmd", reason="expired"))
    assert suggested() is True
    commune.report(commune.event("a1", messages.EV_ACK, cmd="rst-1", ok=True))
    assert suggested() is False
    assert "counter_reset_suggested" not in client.get("/api/v1/devices",
                                                       headers=as_admin).json()[0]
