"""One head-end everywhere (issue 8, acceptance 3): the simulator drives receivers through the
head-end's own planning (headend/planning.py) and serves media through its own route
(headend/media_http.py); no module under simulator/ signs a command or serves media itself."""

import ast
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from headend import planning
from headend.settings import Settings
from protocol import messages, topics
from simulator.media import MediaServer, make_test_item
from simulator.operator import DeviceInfo, Operator

SIMULATOR = Path(__file__).resolve().parents[2] / "simulator"
SITE = "xa-mot"
KEYS = {"loa-1": "11" * 32, "loa-2": "22" * 32}

# What only the head-end may do: sign commands and time replies (protocol/), serve HTTP.
SIGNING = {"seal", "sign_command", "time_reply"}
HTTP_SERVER_MODULES = ("http.server", "socketserver", "wsgiref", "aiohttp", "tornado")
ROUTE_DECORATORS = {"get", "post", "put", "delete", "head", "route", "api_route", "websocket"}
ROUTE_CALLS = {"add_route", "add_api_route", "APIRouter", "Router", "Mount", "Route"}


# -- nothing of the head-end's is implemented under simulator/ ----------------------------------

def simulator_modules():
    return sorted(SIMULATOR.glob("*.py"))


def called_name(call):
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def head_end_work_in(path):
    """What in ``path`` signs for the head-end or serves HTTP by itself, as "line: what"."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and called_name(node) in SIGNING | ROUTE_CALLS:
            found.append("%d: calls %s" % (node.lineno, called_name(node)))
        elif isinstance(node, ast.ImportFrom):
            names = {a.name for a in node.names}
            if (node.module or "").startswith(HTTP_SERVER_MODULES) or names & SIGNING:
                found.append("%d: imports %s from %s" % (node.lineno, names, node.module))
        elif isinstance(node, ast.Import):
            found += ["%d: imports %s" % (node.lineno, a.name) for a in node.names
                      if a.name.startswith(HTTP_SERVER_MODULES)]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found += ["%d: route %s" % (d.lineno, node.name) for d in node.decorator_list
                      if isinstance(d, ast.Call) and called_name(d) in ROUTE_DECORATORS]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
            if text.startswith("HTTP/1."):  # an HTTP response written by hand
                found.append("%d: writes %r" % (node.lineno, text[:20]))
    return found


def test_the_checker_finds_what_it_looks_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from http.server import ThreadingHTTPServer\n"
                      "from protocol.signing import seal\n"
                      "import socketserver\n"
                      "payload = messages.sign_command(k, 'd', 'play', {}, 1, 2, 'c')\n"
                      "reply = M.time_reply(k, 'd', 1, 2, 3)\n"
                      "@app.get('/media/{name}')\n"
                      "def media(name):\n"
                      "    return b'HTTP/1.1 200 OK'\n")
    assert len(head_end_work_in(sample)) == 7


@pytest.mark.parametrize("path", simulator_modules(), ids=lambda p: p.name)
def test_no_simulator_module_signs_or_serves_by_itself(path):
    assert head_end_work_in(path) == []


# -- the operator plans as the head-end does ----------------------------------------------------

class RecordingClient:
    """Stands in for the operator's paho client: keeps what it would have published."""

    def __init__(self):
        self.published = []

    def publish(self, topic, payload, qos=0, retain=False):
        self.published.append((topic, payload, qos))


@pytest.fixture(scope="module")
def item(tmp_path_factory):
    return make_test_item(str(tmp_path_factory.mktemp("media")), "tin-mot", seconds=0.5)


def operator(settings=None):
    devices = [DeviceInfo("loa-1", KEYS["loa-1"], codec="mp3"),
               DeviceInfo("loa-2", KEYS["loa-2"], codec="adpcm")]
    op = Operator(SITE, devices, settings=settings)
    op._client = RecordingClient()
    return op


def command(op, cmd_id):
    sent = op.sent[cmd_id]
    return messages.open_command(op.devices[sent.device].key, sent.payload, sent.device)


def commands_of(op, bid):
    return {c["dev"]: c for c in (command(op, i) for i in op.sent_ids())
            if c["a"].get("bid") == bid}


def report_fetched(op, device, rendition, seq=1):
    """The operator receives ``device``'s report that it holds ``rendition``."""
    body = messages.event(seq, messages.EV_FETCHED, planning.now_ms(),
                          {"item": "tin-mot", "sha": rendition.sha256})
    payload = messages.seal_report(op.devices[device].key, topics.EVENT, messages.encode(body))

    class Message:
        topic = topics.device_topic(SITE, device, topics.EVENT)

    Message.payload = payload
    op._on_message(None, None, Message)


def test_commands_expire_after_the_head_ends_command_ttl(monkeypatch):
    monkeypatch.setenv("LOAXA_COMMAND_TTL_S", "45")  # the head-end's setting, as it reads it
    op = operator()
    before = planning.now_ms()
    cmd_id = op.send("loa-1", messages.VOLUME, {"vol": 40})
    after = planning.now_ms()
    sent = command(op, cmd_id)
    assert before + 45000 <= sent["exp"] <= after + 45000
    assert before <= sent["ctr"] <= after  # protocol.messages.next_counter: the clock
    topic, _, qos = op._client.published[-1]
    assert (topic, qos) == (topics.device_topic(SITE, "loa-1", topics.CMD), planning.QOS_COMMAND)
    # The test override: a command as if signed a whole TTL before its (past) expiry.
    stale = command(op, op.send("loa-1", messages.VOLUME, {"vol": 40}, exp_ms=before - 1000))
    assert stale["exp"] == before - 1000


def test_emergency_timing_follows_the_head_end_rule(item):
    settings = Settings(site_id=SITE, emergency_lead_ms=250, emergency_volume=90,
                        public_base_url="http://10.0.0.5:8080")
    op = operator(settings)
    report_fetched(op, "loa-1", item.renditions["mp3"])
    assert op.holds("loa-1", item.renditions["mp3"]) and not op.malformed
    before = planning.now_ms()
    bid = op.emergency(["loa-1", "loa-2"], item)
    after = planning.now_ms()
    sent = commands_of(op, bid)
    # Held: together at now + the head-end's emergency lead; to be fetched: as soon as fetched.
    assert before + 250 <= sent["loa-1"]["a"]["at"] <= after + 250
    assert sent["loa-2"]["a"]["at"] is None
    for device, codec in (("loa-1", "mp3"), ("loa-2", "adpcm")):
        args = sent[device]["a"]
        assert (args["prio"], args["vol"]) == (messages.PRIO_EMERGENCY, 90)
        rendition = item.renditions[codec]
        assert args["url"] == "http://10.0.0.5:8080/media/%s.%s" % (rendition.sha256, codec)
        assert (args["sha"], args["size"], args["dur"]) == (
            rendition.sha256, rendition.size, rendition.duration_ms)


def test_a_programme_sent_now_starts_after_the_head_ends_lead(item):
    op = operator(Settings(site_id=SITE, now_lead_ms=4000))
    before = planning.now_ms()
    bid = op.play_at(["loa-1", "loa-2"], item, None)
    after = planning.now_ms()
    for sent in commands_of(op, bid).values():
        assert before + 4000 <= sent["a"]["at"] <= after + 4000
        assert sent["a"]["vol"] is None and sent["a"]["prio"] == messages.PRIO_NORMAL


def test_time_requests_get_the_head_ends_signed_reply():
    op = operator()
    arrived = time.time()
    op._answer_time("loa-2", messages.time_request(1234), arrived)
    answered = planning.now_ms()
    op._answer_time("loa-2", b"not json", arrived)  # no reply to a malformed one
    assert op.time_requests == 1
    (topic, payload, qos), = op._client.published
    assert (topic, qos) == (topics.device_topic(SITE, "loa-2", topics.TIME), 0)
    t0, t1, t2 = messages.open_time_reply(op.devices["loa-2"].key, payload, "loa-2")
    assert (t0, t1) == (1234, int(arrived * 1000))  # t1: when the request arrived
    assert t1 <= t2 <= answered                        # t2: when the reply left


# -- media through the head-end's route ---------------------------------------------------------

def fetch(url, range_header=None):
    headers = {"Range": range_header} if range_header else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
        return r.status, r.headers, r.read()


def test_the_media_server_answers_a_range_request_through_the_head_end_route(item):
    with MediaServer() as server:
        server.add(item)
        op = operator(Settings(site_id=SITE, public_base_url=server.base_url))
        url = op.media_args("loa-1", item)["url"]  # what a receiver is told to fetch
        data = item.renditions["mp3"].data()
        status, headers, body = fetch(url, "bytes=10-19")
        assert status == 206 and body == data[10:20]
        assert headers["Content-Range"] == "bytes 10-19/%d" % len(data)
        # The head-end's route answered: its media type and cache policy, its 404.
        assert headers["Content-Type"] == "audio/mpeg"
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
        with pytest.raises(urllib.error.HTTPError) as err:
            fetch(server.base_url + "/media/not-a-hash.mp3")
        assert err.value.code == 404 and b"no such media" in err.value.read()
        assert server.requests_for(item) == [(url[len(server.base_url):], "bytes=10-19")]
