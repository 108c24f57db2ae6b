"""Why a receiver's part failed or was cut short, as the operator reads it on the pages: the
reason in Vietnamese (English one link away) and the receiver's own words beside it."""

import re

from headend.i18n.catalog import MESSAGES
from protocol import messages

from .test_pages import broadcast_id, row, upload_broadcast


def test_a_restart_and_a_sink_failure_show_their_reasons_on_both_pages(station, operator, tone):
    station.online("d1", "d2", "d3")
    bid = broadcast_id(upload_broadcast(operator, tone))
    item = station.commands("play")["d1"][0]["a"]["item"]
    for device in ("d1", "d2"):
        station.event(device, "started", bid=bid, item=item)
    station.report("d1", "status", messages.birth(
        "d1", 2, 1, "1.2.0", {"codecs": ["mp3"], "sink": "sim"}, "wifi"))  # d1 rebooted
    station.event("d2", "ended", bid=bid, item=item, reason="failed",
                  detail="vs1053: DREQ stuck low", played=300)
    page = operator.get("/broadcasts/" + bid).text
    d2 = row(page, "d2")
    assert MESSAGES["reason.sink-failed"][0] in d2 and "vs1053: DREQ stuck low" in d2
    assert 'data-reason="sink-failed"' in d2
    log = operator.get("/playlog").text
    cut = re.search(r'<tr data-outcome="interrupted">.*?</tr>', log, re.S).group(0)
    assert "Loa D1" in cut and "Bị gián đoạn" in cut
    assert MESSAGES["reason.receiver-restarted"][0] in cut
    operator.get("/lang/en?next=/playlog")
    log = operator.get("/playlog").text
    cut = re.search(r'<tr data-outcome="interrupted">.*?</tr>', log, re.S).group(0)
    assert "Interrupted" in cut and "the receiver restarted while playing it" in cut
    csv = operator.get("/playlog.csv").text.lstrip("\ufeff").splitlines()
    assert csv[0].endswith(",reason,reason_detail")
    assert any(line.startswith("d1,") and ",interrupted," in line
               and "receiver-restarted" in line for line in csv[1:])
