"""Nhận cụm loa: a technician on a phone claims the receiver on a pole with the id and the code
from its label; a wrong code gets a clear Vietnamese message and changes nothing; other roles
are kept out."""

from tools.device_label import claim_code

from .conftest import SITE


def test_a_technician_claims_a_receiver_with_the_labels_code(station, browser):
    assert browser.login("technician").status_code == 303
    page = browser.get("/claim?device=d1")
    assert page.status_code == 200
    html = page.text
    assert "Nhận cụm loa tại cột" in html and 'href="/claim"' in html
    assert 'name="device"' in html and 'value="d1"' in html and "Thôn Tây" in html
    assert 'inputmode="decimal"' in html and "Lấy vị trí hiện tại" in html
    # a wrong code: refused, said so, nothing moved
    code = claim_code(station.keys["d1"], SITE, "d1")
    wrong = "0000-0000" if code != "0000-0000" else "1111-1111"
    r = browser.submit("/claim", "/claim", {"device": "d1", "code": wrong, "zone": "thon-tay",
                                            "lat": "21,03", "lon": "105.85"})
    assert r.status_code == 422
    assert "Mã xác nhận không khớp với cụm loa" in r.text and "nhãn dán" in r.text
    assert 'value="21,03"' in r.text  # what was typed stays in the form
    assert "Thôn Đông" in browser.get("/receivers/d1").text
    # the right one (as typed from the label, lower case)
    r = browser.submit("/claim", "/claim", {"device": "d1", "code": code.lower(),
                                            "zone": "thon-tay", "lat": "21,03", "lon": "105.85"})
    assert r.status_code == 303 and r.headers["location"].startswith("/receivers/d1")
    with station.app.state.session_factory() as session:
        from headend.models import Receiver

        row = session.get(Receiver, "d1")
        assert (row.zone_id, row.lat, row.lon) == ("thon-tay", 21.03, 105.85)


def test_the_page_in_english_and_for_other_roles(station, browser):
    browser.login("technician")
    browser.get("/lang/en")
    assert "Claim a receiver at its pole" in browser.get("/claim").text
    browser.client.cookies.clear()
    browser.login("operator")
    assert browser.get("/claim").status_code in (403, 303)
    assert 'href="/claim"' not in browser.get("/receivers").text
