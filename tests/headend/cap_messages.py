"""CAP 1.2 messages made for the tests, as a warning agency would send them (bytes).

Imported as a top-level module (pytest puts tests/headend on sys.path). The defaults make a
valid Actual Alert from Ninh Bình's hydro-meteorological station about a flash flood in the
demo commune, sent at 17:00 and expiring the next morning; every argument overrides a part.
"""

from datetime import UTC, datetime
from xml.sax.saxutils import escape

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
SENDER = "canhbao@kttv-ninhbinh.gov.vn"
SENT = "2026-11-15T17:00:00+07:00"
# 17:30 in Vietnam: half an hour after SENT, long before the default expiry.
NOW = datetime(2026, 11, 15, 10, 30, tzinfo=UTC)

HEADLINE = "Cảnh báo lũ quét và sạt lở đất"
DESCRIPTION = ("Lúc 17h00 ngày 15/11/2026, mưa lớn 150mm trên sông Ngô Đồng; "
               "nguy cơ lũ quét tại xã Ninh Hải.")
INSTRUCTION = "Người dân di chuyển lên vùng cao, gọi 0912 345 678 khi cần cứu hộ."

# A polygon drawn around the middle of Văn Lâm only (its outline: demo JSON).
VAN_LAM_POLYGON = "20.205,105.932 20.205,105.940 20.214,105.940 20.214,105.932 20.205,105.932"
# Around Huế, another province: none of the demo commune's villages.
HUE_POLYGON = "16.40,107.50 16.40,107.65 16.52,107.65 16.52,107.50 16.40,107.50"


def _element(name, value):
    return "" if value is None else "<%s>%s</%s>" % (name, escape(str(value)), name)


def cap_area(description="Xã Ninh Hải", polygons=(), circles=(), geocodes=()):
    parts = [_element("areaDesc", description)]
    parts += [_element("polygon", polygon) for polygon in polygons]
    parts += [_element("circle", circle) for circle in circles]
    parts += ["<geocode>%s%s</geocode>" % (_element("valueName", name), _element("value", value))
              for name, value in geocodes]
    return "<area>%s</area>" % "".join(parts)


def cap_resource(description="Bản tin ghi âm", mime_type="audio/mpeg", size=None, uri=None,
                 deref=None, digest=None):
    return "<resource>%s</resource>" % "".join((
        _element("resourceDesc", description), _element("mimeType", mime_type),
        _element("size", size), _element("uri", uri), _element("derefUri", deref),
        _element("digest", digest)))


def cap_info(language="vi-VN", category="Met", event="Lũ quét", urgency="Immediate",
             severity="Extreme", certainty="Observed", effective=None,
             expires="2026-11-16T05:00:00+07:00", headline=HEADLINE, description=DESCRIPTION,
             instruction=INSTRUCTION, resources=(), areas=None, response_type=None):
    if areas is None:
        areas = (cap_area(polygons=(VAN_LAM_POLYGON,)),)
    return "<info>%s</info>" % "".join((
        _element("language", language), _element("category", category),
        _element("event", event), _element("responseType", response_type),
        _element("urgency", urgency), _element("severity", severity),
        _element("certainty", certainty), _element("effective", effective),
        _element("expires", expires), _element("headline", headline),
        _element("description", description), _element("instruction", instruction),
        "".join(resources), "".join(areas)))


def cap_alert(identifier="KTTV-NB-2026-0001", sender=SENDER, sent=SENT, status="Actual",
              msg_type="Alert", scope="Public", restriction=None, addresses=None,
              references=None, infos=None, namespace=CAP_NS, prolog="", before_info=""):
    if infos is None:
        infos = (cap_info(),)
    body = "".join((
        _element("identifier", identifier), _element("sender", sender), _element("sent", sent),
        _element("status", status), _element("msgType", msg_type), _element("scope", scope),
        _element("restriction", restriction), _element("addresses", addresses),
        _element("references", references), before_info, "".join(infos)))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n%s<alert xmlns="%s">%s</alert>\n'
            % (prolog, namespace, body)).encode("utf-8")


def reference_to(identifier="KTTV-NB-2026-0001", sender=SENDER, sent=SENT):
    return "%s,%s,%s" % (sender, identifier, sent)
