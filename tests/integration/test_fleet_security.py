"""Nobody else can make a speaker talk: per-device accounts and the broker ACL (Mosquitto).

Real receivers log in with their own accounts; a stolen device account cannot publish on another
device's command topic, and anonymous clients are refused.
"""

import threading

import paho.mqtt.client as mqtt
import pytest

from protocol import messages, topics
from simulator.fleet import generate_specs
from simulator.scenario import FleetScenario, now_ms

pytestmark = pytest.mark.integration


def connect_result(broker, username=None, password=None, timeout=5.0):
    """Connect with paho and return the CONNACK reason code (and the connected client)."""
    result = {}
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id="probe-%s" % (username or "anonymous"))
    if username:
        client.username_pw_set(username, password)

    def on_connect(c, userdata, flags, reason_code, properties):
        result["rc"] = reason_code
        done.set()

    client.on_connect = on_connect
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    if not done.wait(timeout):
        client.loop_stop()
        raise TimeoutError("no CONNACK")
    return result["rc"], client


async def test_acl_keeps_each_device_to_its_own_topics(secure_mosquitto_factory):
    specs = generate_specs(2, zones=1, seed=7)
    victim, thief = specs
    broker = secure_mosquitto_factory({s.mqtt_user: s.mqtt_password for s in specs})
    headend = (secure_mosquitto_factory.headend_user,
               broker.accounts[secure_mosquitto_factory.headend_user])
    async with FleetScenario((broker.host, broker.port), specs, items=(("tone", 1.0),),
                             operator_auth=headend) as sc:
        op = sc.operator
        # The thief holds its own account and (worst case) the victim's signing key as well:
        # the broker must still refuse to carry its publish to the victim's command topic.
        rc, client = connect_result(broker, thief.mqtt_user, thief.mqtt_password)
        assert not rc.is_failure
        args = dict(op.media_args(victim.id, sc.items["tone"]), bid="hijack",
                    prio=messages.PRIO_EMERGENCY)
        forged = messages.sign_command(bytes.fromhex(victim.key), victim.id, messages.PLAY, args,
                                       int(now_ms()) + 10 ** 9, int(now_ms()) + 30000, "hijack")
        info = client.publish(topics.device_topic(sc.site, victim.id, topics.CMD), forged, qos=1)
        info.wait_for_publish(5)
        client.disconnect()
        client.loop_stop()

        # The head-end's own command still gets through (the test would pass vacuously if the
        # victim were not listening at all).
        bid = op.play_at([victim.id], sc.items["tone"], None)
        await op.until(lambda: sc.proof_of_play(bid, [victim.id]), 10)
        assert not sc.fleet[victim.id].sink.playbacks_of(bid="hijack")
        assert not op.events_of(victim.id, "ack", cmd="hijack")


def test_anonymous_and_wrong_password_are_refused(secure_mosquitto_factory):
    spec, = generate_specs(1, seed=8)
    broker = secure_mosquitto_factory({spec.mqtt_user: spec.mqtt_password})
    rc, client = connect_result(broker)
    client.loop_stop()
    assert rc.is_failure
    rc, client = connect_result(broker, spec.mqtt_user, "not-the-password")
    client.loop_stop()
    assert rc.is_failure
    rc, client = connect_result(broker, spec.mqtt_user, spec.mqtt_password)
    client.disconnect()
    client.loop_stop()
    assert not rc.is_failure
