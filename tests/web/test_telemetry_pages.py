"""The receiver page (latest state, charts over a day / week / month) and the map, through the
pages as an operator's browser sees them, then in a real Chromium (tests/browser/
telemetry.mjs: phone and desktop, the map without tiles; screenshots in test-artifacts/)."""

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import uvicorn

from headend.cap.demo_zones import demo_zones_document
from headend.i18n import translator
from headend.models import Zone
from headend.services import telemetry
from headend.services.devices import update_device
from headend.web.pages.map import map_data, zone_outline

from .conftest import PASSWORD
from .telemetry_seed import seed_history

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
SCRIPT = REPO / "tests" / "browser" / "telemetry.mjs"
SCREENSHOTS = ("receiver-week.png", "receiver-week-phone.png", "receiver-chart-phone.png",
               "receiver-day.png",
               "receiver-month.png", "map.png", "map-phone.png")
# Demo outlines (headend/cap/ninh_binh_demo_zones.json) for the test commune's villages, and
# receivers placed inside them.
OUTLINES = {"thon-dong": "xuan-ang", "thon-tay": "van-lam"}
PLACES = {"d1": (20.2095, 105.9200), "d2": (20.2140, 105.9170), "d3": (20.2050, 105.9245),
          "t1": (20.2080, 105.9330)}


def demo_area(zone_id):
    wanted = OUTLINES.get(zone_id)
    for zone in demo_zones_document()["zones"]:
        if zone["id"] == wanted:
            return zone["area"]
    return None


@pytest.fixture
def fleet(station, app):
    """d1 on mains with a month of history, d2 on battery (a fault), d3 never online, t1
    online; all but t2 placed on the map."""
    station.online("d1", "d2", "t1")
    station.heartbeat("d1", rssi=-61, dc=13.62, mains=1, amp=1, temp=40.5, heap=81920, off=-4,
                      err=1, sy=1)
    station.heartbeat("d2", rssi=-83, dc=11.9, mains=0)
    station.heartbeat("t1", rssi=-70, mains=1)
    with app.state.session_factory() as session:
        for device, (lat, lon) in PLACES.items():
            update_device(session, device_id=device, lat=lat, lon=lon)
        seed_history(session, app.state.settings, "d1", now=datetime.now(UTC))
    return station


def chart_labels(html):
    return re.findall(r'<svg[^>]*role="img" aria-label="([^"]*)"', html)


def test_the_receiver_page_shows_the_latest_state_and_charts_for_each_span(fleet, operator):
    page = operator.get("/receivers/d1")
    assert page.status_code == 200
    html = page.text
    assert "Loa D1" in html and "Trực tuyến" in html and "Thôn Đông" in html
    assert "-61 dBm, mạnh (Wi-Fi)" in html and "Điện lưới · 13,6 V" in html
    assert "40,5 °C" in html and "80 KB" in html and "-4 ms · đã đồng bộ" in html
    labels = chart_labels(html)
    titles = [label.split(" (")[0] for label in labels]
    assert titles[:4] == ["Tín hiệu", "Điện áp nguồn DC", "Thời gian có điện lưới",
                          "Nhiệt độ bo mạch"]
    assert "Khung âm thanh bị mất" not in titles and "Khung âm thanh bị mất" in html
    signal = labels[0]
    assert signal.startswith("Tín hiệu (dBm), 24 giờ: thấp nhất -")
    # The highest DC is the receiver's own latest heartbeat (13.62 V; the seeded ones 13.6).
    assert "cao nhất 13,62, mới nhất" in labels[1]
    for span, words in (("week", "7 ngày"), ("month", "30 ngày")):
        labels = chart_labels(operator.get("/receivers/d1?span=" + span).text)
        assert labels and all(", %s: " % words in label for label in labels)
    # Ticks in station time: the day chart's x labels are local hours, 3 h apart.
    ticks = re.findall(r'class="x-label"[^>]*>(\d\d):00<', html)
    assert ticks and all(int(h) % 3 == 0 for h in ticks)


def test_the_receiver_page_in_english_and_for_a_receiver_without_history(fleet, operator):
    operator.get("/lang/en?next=/receivers/t1")
    html = operator.get("/receivers/t1?span=week").text
    assert "Telemetry history" in html and "Signal (dBm), Week: lowest -70" in html
    html = operator.get("/receivers/d3").text
    assert "Offline" in html and "No figures in this range" in html


def test_the_receiver_page_refuses_an_unknown_receiver_or_span_with_a_page(fleet, operator):
    assert operator.get("/receivers/nope").status_code == 404
    page = operator.get("/receivers/d1?span=year")
    assert page.status_code == 404 and "Không tìm thấy" in page.text


def test_the_map_page_lists_every_receiver_with_its_state(fleet, operator):
    html = operator.get("/map").text
    states = dict(re.findall(r'<tr data-device="(\w+)" data-state="(\w+)"', html))
    assert states == {"d1": "online", "d2": "fault", "d3": "offline", "t1": "online",
                      "t2": "offline"}
    counts = dict(re.findall(r'data-count="(\w+)">(\d+)<', html))
    assert counts == {"online": "2", "fault": "1", "offline": "2"}
    data = json.loads(re.search(r'<script type="application/json" id="map-data">(.*?)</script>',
                                html, re.S).group(1))
    assert data["tiles"] == "" and sorted(r["id"] for r in data["receivers"]) == sorted(PLACES)
    assert {v["name"] for v in data["villages"]} == {"Thôn Đông", "Thôn Tây"}
    assert all(v["polygon"] is None for v in data["villages"])  # zones have no outline yet
    assert 'src="/static/leaflet.js"' in html and "chưa có tọa độ" in html  # t2


def test_map_data_draws_outlines_and_keeps_names_out_of_the_script(fleet, app):
    t = translator("vi")
    zone = SimpleNamespace(id="x", name="Thôn </script><b>", area=demo_area("thon-dong"))
    bad = SimpleNamespace(id="y", name="Thôn Y", area={"polygon": [[1, "a"], [2, 3], [4, 5]]})
    device = SimpleNamespace(id="r1", name="Loa", lat=20.21, lon=105.92, online=True,
                             offline_reason=None, zone="x", zone_name=zone.name,
                             telemetry={"mains": 1}, link="wifi")
    data = map_data(t, [device], [(zone, 1, 1), (bad, 0, 0)], tiles="", attribution="")
    assert [v["id"] for v in data["villages"]] == ["x"]
    assert data["villages"][0]["polygon"] == zone_outline(zone) and len(zone_outline(zone)) > 3
    assert zone_outline(bad) is None


def test_the_leaflet_files_served_are_the_npm_package_of_package_json():
    lock = json.loads((REPO / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/leaflet"]["version"]
    served = (REPO / "headend" / "static" / "leaflet.js").read_text()
    assert ("Leaflet %s" % version) in served[:300]
    installed = REPO / "node_modules" / "leaflet" / "dist"
    if installed.exists():  # after npm install: the copy is exactly the package's
        for name in ("leaflet.js", "leaflet.css"):
            assert (installed / name).read_bytes() == (REPO / "headend" / "static" /
                                                       name).read_bytes()


# -- in Chromium ---------------------------------------------------------------------------

class Server:
    """The app on 127.0.0.1 (a free port) in a thread, for the browser."""

    def __init__(self, app):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the head-end did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.mark.integration
@pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("node") is None,
                    reason="needs Debian's chromium and node (make setup installs both)")
def test_charts_and_the_map_without_tiles_in_chromium(fleet, app, monkeypatch):
    if not (REPO / "node_modules" / "playwright-core").exists():
        pytest.skip("npm package playwright-core missing: run make setup")
    # The villages' outlines as the CAP work will store them (Zone.area).
    monkeypatch.setattr(Zone, "area", property(lambda zone: demo_area(zone.id)), raising=False)
    for name in SCREENSHOTS + ("telemetry-failure.png",):
        (ARTIFACTS / name).unlink(missing_ok=True)
    with Server(app) as server:
        env = dict(os.environ, LOAXA_URL=server.url, LOAXA_USER="viewer",
                   LOAXA_PASSWORD=PASSWORD, DEVICE="d1", PLACED=str(len(PLACES)),
                   ARTIFACTS_DIR=str(ARTIFACTS), CHROMIUM=CHROMIUM)
        run = subprocess.run(["node", str(SCRIPT)], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["requests"] == [] and "error" not in seen, seen
    charts = seen["charts"]
    assert len(charts) >= 8 and all(c["lines"] >= 1 and c["width"] > 300 for c in charts)
    rssi = charts[0]
    assert rssi["label"].startswith("Tín hiệu (dBm), 7 ngày") and rssi["points"] >= 160
    assert seen["day"] == seen["month"] == len(charts)
    assert not seen["phoneOverflow"] and not seen["mapPhoneOverflow"]
    shown = seen["map"]
    assert shown["tiles"] == 0
    colours = sorted(f for f in shown["fills"] if f != "#9db6d3")
    assert colours == sorted(["#1b7f3b", "#b77400", "#c0211a", "#1b7f3b"])  # d1 d2 d3 t1
    assert shown["fills"].count("#9db6d3") == 2  # the two villages' outlines
    assert sorted(shown["villages"]) == ["Thôn Tây", "Thôn Đông"]
    for name in SCREENSHOTS:
        assert (ARTIFACTS / name).stat().st_size > 5_000, name


def test_spans_cover_a_day_a_week_a_month():
    assert {name: span.length.days for name, span in telemetry.SPANS.items()} == {
        "day": 1, "week": 7, "month": 30}


def test_a_chart_breaks_its_line_where_buckets_are_missing():
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from headend.services.telemetry import Point
    from headend.web.charts import line_chart

    since = datetime(2026, 12, 1, 17, tzinfo=UTC)  # 00:00 local
    hour = timedelta(hours=1)
    points = [Point(since + i * hour, 1.0, 1.5 + i, 2.0 + i, 120) for i in (0, 1, 2, 5, 7, 8)]
    chart = line_chart(points, key="err", title="Lỗi", unit="lần", since=since,
                       until=since + 24 * hour, step=3600, tick_every=3 * hour,
                       tz=ZoneInfo("Asia/Ho_Chi_Minh"), t=translator("vi"), span_text="24 giờ")
    assert len(chart.lines) == 2 and len(chart.bands) == 2 and len(chart.dots) == 1
    assert [label for _, label, _ in chart.x_ticks] == ["00:00", "03:00", "06:00", "09:00",
                                                     "12:00", "15:00", "18:00", "21:00"]
    assert [label for _, label in chart.y_ticks] == ["0", "5", "10"]
    assert chart.summary == ("Lỗi (lần), 24 giờ: thấp nhất 1, trung bình 5, cao nhất 10, "
                             "mới nhất 10")
    empty = line_chart([], key="err", title="Lỗi", unit="lần", since=since,
                       until=since + 24 * hour, step=3600, tick_every=3 * hour,
                       tz=ZoneInfo("Asia/Ho_Chi_Minh"), t=translator("vi"), span_text="24 giờ")
    assert empty.empty and empty.summary.endswith("không có số liệu")
