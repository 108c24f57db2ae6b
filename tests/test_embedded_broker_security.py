"""`loaxa broker` (amqtt) with the head-end's exported accounts holds everyone to the same rules
as production Mosquitto (docs/protocol.md, "Broker ACL"): anonymous and wrong passwords are
refused, a receiver touches only its own topics, the head-end everything, and the head-end's
persistent session keeps receivers' reports while it is away."""

import queue
import subprocess
import sys

import paho.mqtt.client as mqtt
import pytest

from headend.security import mosquitto_hash
from headend.services.provisioning import device_acl_lines
from protocol import topics
from tools.broker_acl import Acl, verify_mosquitto_hash
from tools.testbrokers import (
    BrokerUnavailable,
    mosquitto_password_line,
    start_embedded_broker,
    start_mosquitto,
)

pytestmark = pytest.mark.integration
WAIT_S = 5
SITE = "xa1"
ACCOUNTS = {"dev1": "pw-one", "dev2": "pw-two", "headend": "pw-headend"}


def cmd(device):
    return topics.device_topic(SITE, device, topics.CMD)


def evt(device):
    return topics.device_topic(SITE, device, topics.EVENT)


STREAM = topics.stream_topic(SITE, "live")


class Client:
    """A paho client that records what it receives, for plain sequential test code."""

    def __init__(self, broker, client_id, username=None, password=None, clean=True):
        self.messages = queue.Queue()
        self.acks = queue.Queue()
        connected = queue.Queue()
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                clean_session=clean)
        if username:
            self.mqtt.username_pw_set(username, password)
        self.mqtt.on_connect = lambda c, u, f, rc, p: connected.put(rc)
        self.mqtt.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.mqtt.on_subscribe = lambda c, u, mid, rcs, p: self.acks.put(rcs)
        self.mqtt.connect(broker.host, broker.port, keepalive=5)
        self.mqtt.loop_start()
        self.result = connected.get(timeout=WAIT_S)

    def subscribe(self, topic):
        """True if the broker granted the subscription."""
        self.mqtt.subscribe(topic, qos=1)
        return not self.acks.get(timeout=WAIT_S)[0].is_failure

    def publish(self, topic, payload):
        self.mqtt.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)

    def received(self, count, timeout=WAIT_S):
        return {self.messages.get(timeout=timeout) for _ in range(count)}

    def nothing_more(self, timeout=0.5):
        try:
            self.messages.get(timeout=timeout)
        except queue.Empty:
            return True
        return False

    def close(self):
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


@pytest.fixture(scope="module", params=("amqtt", "mosquitto"))
def secure_broker(request, tmp_path_factory):
    """The embedded broker, and Mosquitto beside it: both must enforce the same rules."""
    directory = tmp_path_factory.mktemp("secure-" + request.param)
    try:
        broker = (start_embedded_broker(directory, accounts=ACCOUNTS) if request.param == "amqtt"
                  else start_mosquitto(directory, accounts=ACCOUNTS))
    except BrokerUnavailable as exc:
        pytest.skip(str(exc))
    yield broker
    broker.stop()


@pytest.fixture
def clients():
    made = []

    def connect(broker, client_id, username=None, password=None, clean=True):
        made.append(Client(broker, client_id, username, password, clean))
        return made[-1]

    yield connect
    for client in made:
        client.close()


def test_anonymous_unknown_and_wrong_passwords_are_refused(secure_broker, clients):
    for username, password in ((None, None), ("dev1", "pw-two"), ("nobody", "pw-one"),
                               ("dev1", "")):
        client = clients(secure_broker, "intruder", username, password)
        assert client.result.is_failure, (username, password)
    assert clients(secure_broker, "dev1", "dev1", "pw-one").result == 0


def test_a_receiver_touches_only_its_own_topics_and_the_headend_all(secure_broker, clients):
    headend = clients(secure_broker, "headend", "headend", "pw-headend")
    assert headend.subscribe("loaxa/v1/#")
    dev1 = clients(secure_broker, "dev1", "dev1", "pw-one")
    dev2 = clients(secure_broker, "dev2", "dev2", "pw-two")

    # subscriptions: its own commands and the streams; nobody else's, no wide filters.
    # The embedded broker refuses those outright; Mosquitto grants them and delivers nothing
    # (it checks "read" per message), which the deliveries below prove for both.
    assert dev1.subscribe(cmd("dev1")) and dev1.subscribe(STREAM)
    granted = [dev1.subscribe(topic) for topic in
               (cmd("dev2"), "loaxa/v1/%s/dev/+/cmd" % SITE, "loaxa/v1/#", evt("dev2"))]
    if secure_broker.name == "amqtt":
        assert not any(granted)
    assert dev2.subscribe(cmd("dev2"))

    # a receiver cannot command another, feed a stream, or forge another's report
    dev1.publish(cmd("dev2"), b"forged command")
    dev1.publish(STREAM, b"forged frame")
    dev1.publish(evt("dev2"), b"forged report")
    dev1.publish(evt("dev1"), b"own report")
    assert headend.received(1) == {(evt("dev1"), b"own report")}
    assert headend.nothing_more() and dev2.nothing_more(0.1)
    assert dev1.nothing_more(0.1)  # not even its own report back through "loaxa/v1/#"

    # the head-end commands each receiver and feeds the stream; each hears only its own
    headend.publish(cmd("dev2"), b"for dev2")
    headend.publish(cmd("dev1"), b"for dev1")
    headend.publish(STREAM, b"frame")
    assert dev1.received(2) == {(cmd("dev1"), b"for dev1"), (STREAM, b"frame")}
    assert dev2.received(1) == {(cmd("dev2"), b"for dev2")}
    assert dev1.nothing_more(0.2) and dev2.nothing_more(0.1)


def test_reports_sent_while_the_headend_is_away_wait_for_it(secure_broker, clients):
    """The head-end's persistent session (no clean start, QoS 1) survives its absence."""
    headend = clients(secure_broker, "headend", "headend", "pw-headend", clean=False)
    assert headend.subscribe(topics.uplink_filter(SITE, topics.EVENT))
    headend.close()
    dev1 = clients(secure_broker, "dev1", "dev1", "pw-one")
    for n in range(3):
        dev1.publish(evt("dev1"), b"played %d" % n)
    back = clients(secure_broker, "headend", "headend", "pw-headend", clean=False)
    assert back.received(3) == {(evt("dev1"), b"played %d" % n) for n in range(3)}


def test_new_accounts_are_picked_up_without_a_restart(tmp_path, clients):
    broker = start_embedded_broker(tmp_path, accounts={"dev1": "pw-one"})
    try:
        assert clients(broker, "dev3", "dev3", "pw-three").result.is_failure
        with open(tmp_path / "passwd", "a") as passwd:  # what a fresh export does
            passwd.write(mosquitto_password_line("dev3", "pw-three") + "\n")
        dev3 = clients(broker, "dev3", "dev3", "pw-three")
        assert dev3.result == 0 and dev3.subscribe(cmd("dev3"))
    finally:
        broker.stop()


def test_loaxa_broker_will_not_start_without_accounts_unless_told_it_is_a_test():
    run = subprocess.run([sys.executable, "-m", "tools.cli", "broker", "--port", "1"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert "--allow-anonymous is for tests only" in run.stderr


def test_headend_hashes_and_exported_acl_mean_what_mosquitto_means():
    hashed = mosquitto_hash("s3cret")
    assert verify_mosquitto_hash("s3cret", hashed)
    assert not verify_mosquitto_hash("s3cret!", hashed)
    assert not verify_mosquitto_hash("s3cret", "$7$garbage")
    acl = Acl.parse("\n".join(device_acl_lines() + ["user headend", "topic readwrite loaxa/v1/#"]))
    for leaf in topics.DEVICE_UPLINK:
        assert acl.allows("d1", "d1", "write", topics.device_topic(SITE, "d1", leaf))
        assert not acl.allows("d1", "d1", "write", topics.device_topic(SITE, "d2", leaf))
        assert not acl.allows("d1", "d1", "read", topics.device_topic(SITE, "d1", leaf))
    assert acl.allows("d1", "d1", "read", cmd("d1"), is_filter=True)
    assert acl.allows("d1", "d1", "read", "loaxa/v1/%s/stream/#" % SITE, is_filter=True)
    assert not acl.allows("d1", "d1", "write", STREAM)
    assert not acl.allows("d+", "d+", "read", "loaxa/v1/+/dev/+/cmd", is_filter=True)
    assert not acl.allows(None, None, "read", STREAM)
    assert acl.allows("headend", "x", "write", cmd("d1"))
    assert acl.allows("headend", "x", "read", topics.uplink_filter(SITE), is_filter=True)


def test_a_receiver_provisioned_through_the_api_can_log_in_at_once(tmp_path, clients):
    """With broker_accounts_dir set, provisioning rewrites the broker's accounts: a technician
    who provisions a receiver does not also have to remember an export."""
    from fastapi.testclient import TestClient

    from headend.app import create_app
    from headend.services.users import create_user
    from headend.settings import Settings

    accounts = tmp_path / "broker"
    settings = Settings(data_dir=tmp_path / "headend", site_id=SITE, mqtt_enabled=False,
                        mqtt_username="headend", mqtt_password="pw-headend",
                        broker_accounts_dir=accounts)
    app = create_app(settings)
    with TestClient(app) as client:
        with app.state.session_factory() as session:
            create_user(session, username="tech", password="tech-password-1", role="technician")
        token = client.post("/api/v1/auth/token", data={"username": "tech",
                                                        "password": "tech-password-1"})
        headers = {"Authorization": "Bearer %s" % token.json()["access_token"]}
        first = client.post("/api/v1/devices", json={"name": "Cổng chợ"}, headers=headers)
        assert first.status_code == 201
        broker = start_embedded_broker(tmp_path / "run", config_dir=accounts)
        try:
            second = client.post("/api/v1/devices", json={"name": "Nhà văn hoá"},
                                 headers=headers).json()
            made = clients(broker, second["id"], second["mqtt_user"], second["mqtt_password"])
            assert made.result == 0 and made.subscribe(cmd(second["id"]))
            assert not made.subscribe(cmd(first.json()["id"]))
        finally:
            broker.stop()


def test_a_receiver_cannot_take_over_the_headends_session(secure_broker, clients):
    """Connecting with the head-end's client id must not knock the head-end off the broker
    (amqtt refuses it; Mosquitto gives the intruder its own username as client id)."""
    headend = clients(secure_broker, "headend", "headend", "pw-headend")
    assert headend.subscribe(evt("dev1"))
    clients(secure_broker, "headend", "dev1", "pw-one")
    dev1 = clients(secure_broker, "dev1", "dev1", "pw-one")
    dev1.publish(evt("dev1"), b"still here")
    assert headend.received(1) == {(evt("dev1"), b"still here")}
    assert headend.mqtt.is_connected()
