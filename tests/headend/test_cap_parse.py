"""CAP parsing: what a warning agency's message becomes, and every way a message is refused.

Hostile XML is refused before it costs anything: the memory tests measure, with tracemalloc
(which sees expat's own buffers), that a billion-laughs or quadratic-blowup document peaks
under a couple of MB, against a control that shows the same measurement catches a blowup.
"""

import base64
import hashlib
import threading
import tracemalloc
import xml.etree.ElementTree as StdlibElementTree
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cap_messages import (
    DESCRIPTION,
    HEADLINE,
    SENDER,
    cap_alert,
    cap_area,
    cap_info,
    cap_resource,
    reference_to,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headend.cap.area import Circle
from headend.cap.errors import CapError
from headend.cap.parse import MAX_CAP_BYTES, parse_cap
from headend.errors import Invalid

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'

BILLION_LAUGHS = XML_DECLARATION + b"""<!DOCTYPE alert [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol9;</identifier></alert>
"""


def quadratic_blowup(entity_size, references):
    """One big internal entity referenced many times: no nesting for a naive limit to catch."""
    return (XML_DECLARATION + b'<!DOCTYPE alert [<!ENTITY a "' + b"a" * entity_size + b'">]>\n'
            + b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><note>'
            + b"&a;" * references + b"</note></alert>")


EXTERNAL_ENTITY = XML_DECLARATION + b"""<!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&xxe;</identifier></alert>
"""
EXTERNAL_DTD = XML_DECLARATION + (
    b'<!DOCTYPE alert SYSTEM "http://127.0.0.1:9/cap.dtd">\n'
    b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"/>\n')
PLAIN_DTD = XML_DECLARATION + b'<!DOCTYPE alert [<!ELEMENT alert ANY>]>\n' + cap_alert().split(b"\n", 1)[1]
PARAMETER_ENTITY = XML_DECLARATION + (
    b'<!DOCTYPE alert [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd"> %remote;]>\n'
    b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"/>\n')


def without(element: bytes, document: bytes | None = None) -> bytes:
    document = document or cap_alert()
    assert element in document
    return document.replace(element, b"")


def replaced(old: bytes, new: bytes, document: bytes | None = None) -> bytes:
    document = document or cap_alert()
    assert old in document
    return document.replace(old, new)


# (name, document, error code, words the English message must contain)
REFUSED = [
    ("empty", b"", "malformed", "empty"),
    ("truncated", cap_alert()[:300], "malformed", "well-formed"),
    ("not XML", b"this is not xml at all", "malformed", "well-formed"),
    ("not UTF-8", replaced(b"L\xc5\xa9 qu\xc3\xa9t", b"L\xff qu\xe9t"), "malformed", "well-formed"),
    ("unknown encoding", replaced(b'encoding="UTF-8"', b'encoding="UTF-9"'), "malformed",
     "unknown encoding"),
    ("external entity", EXTERNAL_ENTITY, "forbidden-xml", "DTD"),
    ("external DTD", EXTERNAL_DTD, "forbidden-xml", "DTD"),
    ("parameter entity", PARAMETER_ENTITY, "forbidden-xml", "DTD"),
    ("billion laughs", BILLION_LAUGHS, "forbidden-xml", "DTD"),
    ("quadratic blowup", quadratic_blowup(50_000, 4_000), "forbidden-xml", "DTD"),
    ("a harmless DTD", PLAIN_DTD, "forbidden-xml", "DTD"),
    ("another root", XML_DECLARATION + b"<feed xmlns='http://www.w3.org/2005/Atom'/>", "not-cap",
     "not a CAP 1.2"),
    ("no namespace", cap_alert(namespace=""), "not-cap", "not a CAP 1.2"),
    ("CAP 1.1", cap_alert(namespace="urn:oasis:names:tc:emergency:cap:1.1"), "not-cap",
     "CAP 1.1; only CAP 1.2"),
    ("status enumeration", cap_alert(status="Real"), "invalid-cap", "Actual"),
    ("msgType enumeration", cap_alert(msg_type="Warning"), "invalid-cap", "Alert"),
    ("scope enumeration", cap_alert(scope="Everyone"), "invalid-cap", "Public"),
    ("category enumeration", cap_alert(infos=(cap_info(category="Weather"),)), "invalid-cap", "Met"),
    ("urgency enumeration", cap_alert(infos=(cap_info(urgency="Now"),)), "invalid-cap", "Immediate"),
    ("severity enumeration", cap_alert(infos=(cap_info(severity="High"),)), "invalid-cap", "Extreme"),
    ("certainty enumeration", cap_alert(infos=(cap_info(certainty="Sure"),)), "invalid-cap", "Observed"),
    ("responseType enumeration", cap_alert(infos=(cap_info(response_type="Run"),)), "invalid-cap",
     "Evacuate"),
    ("lowercase enumeration", cap_alert(status="actual"), "invalid-cap", "Actual"),
    ("naive sent", cap_alert(sent="2026-11-15T17:00:00"), "invalid-cap", "UTC offset"),
    ("naive expires", cap_alert(infos=(cap_info(expires="2026-11-16T05:00:00"),)), "invalid-cap",
     "UTC offset"),
    ("Z is not CAP", cap_alert(sent="2026-11-15T10:00:00Z"), "invalid-cap", "UTC offset"),
    ("no seconds", cap_alert(sent="2026-11-15T17:00+07:00"), "invalid-cap", "UTC offset"),
    ("month 13", cap_alert(sent="2026-13-15T17:00:00+07:00"), "invalid-cap", "<sent>"),
    ("no identifier", without(b"<identifier>KTTV-NB-2026-0001</identifier>"), "invalid-cap",
     "identifier"),
    ("elements out of order", replaced(b"<status>Actual</status><msgType>Alert</msgType>",
                                       b"<msgType>Alert</msgType><status>Actual</status>"),
     "invalid-cap", "status"),
    ("an unknown element", cap_alert(before_info="<priority>1</priority>"), "invalid-cap",
     "priority"),
    ("info without event", cap_alert(infos=(cap_info(event=None),)), "invalid-cap", "event"),
    ("two scopes", replaced(b"<scope>Public</scope>", b"<scope>Public</scope><scope>Public</scope>"),
     "invalid-cap", "scope"),
    ("identifier with a space", cap_alert(identifier="KTTV NB 1"), "invalid-cap", "spaces"),
    ("identifier with a comma", cap_alert(identifier="KTTV,1"), "invalid-cap", "commas"),
    ("reference not a triple", cap_alert(msg_type="Update", references="KTTV-1"), "invalid-cap",
     "sender,identifier,sent"),
    ("reference naive time", cap_alert(msg_type="Update",
                                       references="%s,KTTV-1,2026-11-15T17:00:00" % SENDER),
     "invalid-cap", "UTC offset"),
    ("polygon not closed", cap_alert(infos=(cap_info(areas=(cap_area(polygons=(
        "20.20,105.93 20.20,105.94 20.21,105.94 20.21,105.93",)),)),)), "invalid-cap", "not closed"),
    ("polygon of three points", cap_alert(infos=(cap_info(areas=(cap_area(polygons=(
        "20.20,105.93 20.20,105.94 20.20,105.93",)),)),)), "invalid-cap", "at least 4"),
    ("latitude out of range", cap_alert(infos=(cap_info(areas=(cap_area(polygons=(
        "95.0,105.93 20.20,105.94 20.21,105.94 95.0,105.93",)),)),)), "invalid-cap", "in range"),
    ("longitude out of range", cap_alert(infos=(cap_info(areas=(cap_area(polygons=(
        "20.20,205.93 20.20,105.94 20.21,105.94 20.20,205.93",)),)),)), "invalid-cap", "in range"),
    ("polygon of words", cap_alert(infos=(cap_info(areas=(cap_area(polygons=(
        "north of the river",)),)),)), "invalid-cap", "latitude,longitude"),
    ("polygon with NaN", cap_alert(infos=(cap_info(areas=(cap_area(polygons=(
        "nan,105.93 20.20,105.94 20.21,105.94 nan,105.93",)),)),)), "invalid-cap", "in range"),
    ("circle without radius", cap_alert(infos=(cap_info(areas=(cap_area(circles=(
        "20.2167,105.9333",)),)),)), "invalid-cap", "radius_km"),
    ("circle with a negative radius", cap_alert(infos=(cap_info(areas=(cap_area(circles=(
        "20.2167,105.9333 -2",)),)),)), "invalid-cap", "radius_km"),
    ("circle beyond the Earth", cap_alert(infos=(cap_info(areas=(cap_area(circles=(
        "20.2167,105.9333 30000",)),)),)), "invalid-cap", "Earth"),
    ("too many circles", cap_alert(infos=(cap_info(areas=(cap_area(circles=(
        "20.2167,105.9333 1",) * 201),)),)), "invalid-cap", "at most 200"),
    ("area without areaDesc", cap_alert(infos=(cap_info(areas=(
        "<area><polygon>20.2,105.9 20.2,106 20.3,106 20.2,105.9</polygon></area>",)),)),
     "invalid-cap", "areaDesc"),
    ("derefUri not base64", cap_alert(infos=(cap_info(resources=(cap_resource(deref="%%%"),)),)),
     "invalid-cap", "base64"),
    ("digest of another file", cap_alert(infos=(cap_info(resources=(cap_resource(
        deref=base64.b64encode(b"ID3 audio").decode(),
        digest=hashlib.sha1(b"other audio").hexdigest()),)),)), "invalid-cap", "digest"),
    ("size not a number", cap_alert(infos=(cap_info(resources=(cap_resource(size="big"),)),)),
     "invalid-cap", "size"),
    ("nested too deep", cap_alert(before_info="<a>" * 40 + "</a>" * 40), "invalid-cap",
     "nested deeper"),
]


@pytest.mark.parametrize("name, document, code, words", REFUSED, ids=[row[0] for row in REFUSED])
def test_a_bad_message_is_refused_with_its_code(name, document, code, words):
    with pytest.raises(CapError) as refused:
        parse_cap(document)
    error = refused.value
    assert error.code == code
    assert words in error.message
    assert isinstance(error, Invalid) and error.status == 422  # the API answers a 4xx
    body = error.as_dict()
    assert body["code"] == code and body["message_vi"] != body["detail"]


def test_a_document_over_the_limit_is_refused_before_parsing_with_413():
    huge = cap_alert(infos=(cap_info(description="mưa " * (MAX_CAP_BYTES // 4)),))
    assert len(huge) > MAX_CAP_BYTES
    with pytest.raises(CapError) as refused:
        parse_cap(huge)
    assert refused.value.code == "too-large" and refused.value.status == 413
    assert "%d bytes" % len(huge) in refused.value.message
    assert "quá lớn" in refused.value.message_vi


def test_a_document_just_under_the_limit_is_read():
    padding = MAX_CAP_BYTES - len(cap_alert(infos=(cap_info(description=""),))) - 100
    alert = parse_cap(cap_alert(infos=(cap_info(description="a" * padding),)))
    assert len(alert.infos[0].description) == padding


def test_the_error_names_the_problem_in_english_and_vietnamese():
    with pytest.raises(CapError) as refused:
        parse_cap(cap_alert(sent="2026-11-15T17:00:00"))
    assert refused.value.as_dict() == {
        "code": "invalid-cap",
        "detail": "the CAP message does not follow the CAP 1.2 standard: <sent> "
                  "'2026-11-15T17:00:00' is not a CAP time: it needs seconds and a UTC offset, "
                  "for example 2026-11-15T17:30:00+07:00",
        "message_vi": "bản tin CAP không đúng chuẩn CAP 1.2: <sent> '2026-11-15T17:00:00' is "
                      "not a CAP time: it needs seconds and a UTC offset, for example "
                      "2026-11-15T17:30:00+07:00",
    }


def test_only_bytes_are_parsed():
    with pytest.raises(TypeError):
        parse_cap(cap_alert().decode())
    assert parse_cap(bytearray(cap_alert())).identifier == "KTTV-NB-2026-0001"


def _peak_bytes(work):
    tracemalloc.start()
    try:
        work()
    except (CapError, StdlibElementTree.ParseError):
        pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_the_measurement_sees_an_expanding_entity():
    """Control: the standard library's parser expands an internal entity (5 MB here, under
    expat's own amplification guard), and tracemalloc counts that memory; so the flat peaks
    below mean something."""
    document = quadratic_blowup(50_000, 100)
    root = None

    def expand():
        nonlocal root
        root = StdlibElementTree.fromstring(document)

    peak = _peak_bytes(expand)
    assert len(root.find("{urn:oasis:names:tc:emergency:cap:1.2}note").text) == 5_000_000
    assert peak > 5_000_000


@pytest.mark.parametrize("document", [BILLION_LAUGHS, quadratic_blowup(50_000, 4_000)],
                         ids=["billion-laughs", "quadratic-blowup"])
def test_memory_stays_flat_on_entity_bombs(document):
    parse_cap(cap_alert())  # the schema and parser are loaded once, outside the measurement
    assert len(document) < MAX_CAP_BYTES  # it reaches the parser, not the size check
    peak = _peak_bytes(lambda: parse_cap(document))
    assert peak < 2_000_000


def test_memory_stays_flat_on_a_huge_document():
    huge = b"<alert>" + b"x" * (50 * 1024 * 1024) + b"</alert>"
    peak = _peak_bytes(lambda: parse_cap(huge))
    assert peak < 100_000


class _CountingHandler(BaseHTTPRequestHandler):
    requests = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.requests.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def listening_server():
    """An HTTP server on 127.0.0.1 that records every request made to it."""
    _CountingHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_validation_never_fetches_what_the_document_names(listening_server):
    url = "http://127.0.0.1:%d" % listening_server.server_port
    hinted = replaced(
        b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">',
        ('<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2" '
         'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
         'xsi:schemaLocation="urn:oasis:names:tc:emergency:cap:1.2 %s/evil.xsd">' % url).encode())
    assert parse_cap(hinted).identifier == "KTTV-NB-2026-0001"
    signed = cap_alert(infos=(cap_info(),)).replace(
        b"</alert>", ('<Signature xmlns="http://www.w3.org/2000/09/xmldsig#" '
                      'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                      'xsi:schemaLocation="http://www.w3.org/2000/09/xmldsig# %s/dsig.xsd">'
                      '<SignedInfo/></Signature></alert>' % url).encode())
    assert parse_cap(signed).identifier == "KTTV-NB-2026-0001"
    include = cap_alert(before_info='<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
                                    'href="%s/more.xml"/>' % url)
    with pytest.raises(CapError) as refused:
        parse_cap(include)
    assert refused.value.code == "invalid-cap"
    for dtd in (EXTERNAL_DTD.replace(b"127.0.0.1:9", url[7:].encode()),
                PARAMETER_ENTITY.replace(b"127.0.0.1:9", url[7:].encode())):
        with pytest.raises(CapError):
            parse_cap(dtd)
    assert _CountingHandler.requests == []


def test_a_full_alert_is_read_into_plain_values():
    audio = b"ID3\x03\x00fake mp3 bytes"
    document = cap_alert(
        addresses='ubnd.ninhhai@ninhbinh.gov.vn "Đài truyền thanh Ninh Hải"',
        msg_type="Update",
        references=" ".join((reference_to("KTTV-NB-2026-0001"),
                             reference_to("KTTV-NB-2026-0000", sent="2026-11-15T06:00:00-00:00"))),
        infos=(cap_info(language="en-US", headline="Flash flood warning", event="Flash flood"),
               cap_info(
                   effective="2026-11-15T17:05:00+07:00",
                   resources=(cap_resource(size=len(audio), uri="https://kttv.example/a.mp3",
                                           deref=base64.b64encode(audio).decode(),
                                           digest=hashlib.sha1(audio).hexdigest().upper()),),
                   areas=(cap_area(description="Thôn Văn Lâm và Hải Nham",
                                   polygons=("20.20,105.93 20.20,105.95 20.22,105.95 20.20,105.93",),
                                   circles=("20.2167,105.9333 1.5",),
                                   geocodes=(("vn-dvhc", "37"), ("loaxa-demo", "ninh-hai"))),),
               )))
    alert = parse_cap(document)
    assert alert.identifier == "KTTV-NB-2026-0001"
    assert alert.sender == SENDER
    assert alert.sent == datetime(2026, 11, 15, 10, 0, tzinfo=UTC)
    assert (alert.status, alert.msg_type, alert.scope) == ("Actual", "Update", "Public")
    assert alert.addresses == ("ubnd.ninhhai@ninhbinh.gov.vn", "Đài truyền thanh Ninh Hải")
    first, second = alert.references
    assert (first.sender, first.identifier, first.sent) == (
        SENDER, "KTTV-NB-2026-0001", datetime(2026, 11, 15, 10, 0, tzinfo=UTC))
    assert second.sent == datetime(2026, 11, 15, 6, 0, tzinfo=UTC)  # -00:00 is UTC

    english, vietnamese = alert.infos
    assert (english.language, english.headline) == ("en-US", "Flash flood warning")
    assert vietnamese.language == "vi-VN"
    assert vietnamese.categories == ("Met",)
    assert (vietnamese.urgency, vietnamese.severity, vietnamese.certainty) == (
        "Immediate", "Extreme", "Observed")
    assert vietnamese.effective == datetime(2026, 11, 15, 10, 5, tzinfo=UTC)
    assert vietnamese.expires == datetime(2026, 11, 15, 22, 0, tzinfo=UTC)
    assert vietnamese.expires.tzinfo is UTC
    assert (vietnamese.headline, vietnamese.description) == (HEADLINE, DESCRIPTION)

    (resource,) = vietnamese.resources
    assert (resource.mime_type, resource.size, resource.uri) == (
        "audio/mpeg", len(audio), "https://kttv.example/a.mp3")
    assert resource.content == audio
    assert resource.digest == hashlib.sha1(audio).hexdigest()  # lowercased
    assert resource.matches_digest(audio) and not resource.matches_digest(b"other")

    (area,) = vietnamese.areas
    assert area.description == "Thôn Văn Lâm và Hải Nham"
    assert area.polygons == (((20.20, 105.93), (20.20, 105.95), (20.22, 105.95), (20.20, 105.93)),)
    assert area.circles == (Circle(20.2167, 105.9333, 1.5),)
    assert area.geocodes == (("vn-dvhc", "37"), ("loaxa-demo", "ninh-hai"))


def test_an_info_without_language_is_english_and_a_message_may_have_no_info():
    alert = parse_cap(cap_alert(infos=(cap_info(language=None),)))
    assert alert.infos[0].language == "en-US"
    cancel = parse_cap(cap_alert(msg_type="Cancel", references=reference_to(), infos=()))
    assert cancel.infos == ()


def test_the_alert_is_immutable():
    alert = parse_cap(cap_alert())
    with pytest.raises(AttributeError):
        alert.status = "Test"
    assert isinstance(alert.infos, tuple) and isinstance(alert.infos[0].areas, tuple)


_VALID = cap_alert(
    msg_type="Update", references=reference_to(), addresses='a "b c"',
    infos=(cap_info(resources=(cap_resource(size=3, deref=base64.b64encode(b"abc").decode(),
                                            digest=hashlib.sha1(b"abc").hexdigest()),),
                    areas=(cap_area(polygons=("20.2,105.9 20.2,106 20.3,106 20.2,105.9",),
                                    circles=("20.2,105.9 2",), geocodes=(("a", "b"),)),)),))
_PIECES = [b"<", b">", b"&", b"&amp;", b"\x00", b"\xff", b",", b" ", b"-", b"+", b"9999", b"nan",
           b"1e400", b"]]>", b"<![CDATA[x]]>", b"<!-- c -->", b"<?pi x?>", b"24:00:00",
           b"UTF-9", b"<!DOCTYPE a>", b"</info>", b"<info>"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 4),
                                st.sampled_from(_PIECES)), min_size=1, max_size=4))
def test_a_damaged_message_is_refused_and_never_crashes(edits):
    """Any damage to a valid message (bytes cut, markup or odd values put in) gives an Alert or
    a CapError, nothing else."""
    document = bytearray(_VALID)
    for position, cut, piece in edits:
        document[position:position + cut] = piece
    try:
        parse_cap(bytes(document))
    except CapError as error:
        assert error.code in ("malformed", "forbidden-xml", "not-cap", "invalid-cap")
