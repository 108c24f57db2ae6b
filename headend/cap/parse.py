"""A CAP 1.2 message from bytes to a plain, immutable ``Alert``, or a clear CapError.

The steps, each a refusal of its own:

1. size: more than MAX_CAP_BYTES is refused before any parsing ("too-large", 413);
2. XML: defusedxml with DTDs, entities and external references all forbidden ("forbidden-xml":
   a billion-laughs or quadratic-blowup document is stopped at its DOCTYPE, before any entity
   is expanded), anything that is not well-formed is "malformed";
3. nesting deeper than any CAP element is "invalid-cap" (nothing deeper reaches the schema);
4. the root must be ``{urn:oasis:names:tc:emergency:cap:1.2}alert`` ("not-cap");
5. the CAP 1.2 schema (schema.py, "invalid-cap"): element order, enumerations, cardinalities,
   times with seconds and an offset;
6. what the schema cannot say ("invalid-cap"): identifiers without spaces or commas,
   references as sender,identifier,sent triples, polygons closed with at least four points in
   range, circles "lat,lon radius_km", at most MAX_AREA_SHAPES polygons and circles, derefUri
   as base64 whose SHA-1 matches ``digest``.

Times are aware datetimes in UTC. Whether an alert has expired depends on the clock, so
policy.py decides that, not the parser.
"""

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as DefusedElementTree
from defusedxml import DefusedXmlException

from headend.cap.area import Circle, LatLon, parse_cap_circle, parse_cap_polygon
from headend.cap.errors import CapError, CapTooLarge
from headend.cap.schema import CAP_NAMESPACE, validate_cap

MAX_CAP_BYTES = 256 * 1024
# Polygons and circles in one alert: real alerts carry a handful; the bound keeps the zone
# selection (each shape against each zone) well under a second.
MAX_AREA_SHAPES = 200
# alert/info/area/geocode/value is the deepest CAP path; a signature may nest a little more.
MAX_DEPTH = 12
DEFAULT_LANGUAGE = "en-US"  # CAP 1.2: an info without <language> is in en-US
_NS = "{%s}" % CAP_NAMESPACE
_OTHER_CAP_VERSIONS = ("urn:oasis:names:tc:emergency:cap:1.0",
                       "urn:oasis:names:tc:emergency:cap:1.1")
# CAP 1.2 forbids spaces, commas and the XML-restricted < and & in identifiers and senders.
_BAD_IDENTIFIER_RE = re.compile(r"[\s,<&]")
_ADDRESS_RE = re.compile(r'"([^"]*)"|(\S+)')


@dataclass(frozen=True, slots=True)
class Reference:
    """One earlier message this one refers to (CAP's sender,identifier,sent)."""

    sender: str
    identifier: str
    sent: datetime


@dataclass(frozen=True, slots=True)
class Resource:
    description: str
    mime_type: str
    size: int | None
    uri: str | None
    content: bytes | None  # the decoded derefUri, when the message carries the file itself
    digest: str | None  # SHA-1 of the file, lowercase hex

    def matches_digest(self, data: bytes) -> bool:
        """Whether ``data`` (e.g. the file fetched from ``uri``) is the file this names; a
        resource without a digest cannot be checked and does not match."""
        return self.digest is not None and hashlib.sha1(data).hexdigest() == self.digest


@dataclass(frozen=True, slots=True)
class Area:
    description: str
    polygons: tuple[tuple[LatLon, ...], ...]
    circles: tuple[Circle, ...]
    geocodes: tuple[tuple[str, str], ...]  # (valueName, value)
    altitude: float | None
    ceiling: float | None


@dataclass(frozen=True, slots=True)
class Info:
    language: str
    categories: tuple[str, ...]
    event: str
    response_types: tuple[str, ...]
    urgency: str
    severity: str
    certainty: str
    audience: str | None
    event_codes: tuple[tuple[str, str], ...]
    effective: datetime | None
    onset: datetime | None
    expires: datetime | None
    sender_name: str | None
    headline: str | None
    description: str | None
    instruction: str | None
    web: str | None
    contact: str | None
    parameters: tuple[tuple[str, str], ...]
    resources: tuple[Resource, ...]
    areas: tuple[Area, ...]


@dataclass(frozen=True, slots=True)
class Alert:
    identifier: str
    sender: str
    sent: datetime
    status: str  # Actual | Exercise | System | Test | Draft
    msg_type: str  # Alert | Update | Cancel | Ack | Error
    source: str | None
    scope: str  # Public | Restricted | Private
    restriction: str | None
    addresses: tuple[str, ...]
    codes: tuple[str, ...]
    note: str | None
    references: tuple[Reference, ...]
    incidents: tuple[str, ...]
    infos: tuple[Info, ...]


def _defused_root(data: bytes):
    try:
        return DefusedElementTree.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as error:
        raise CapError("forbidden-xml", type(error).__name__) from None
    except ParseError as error:
        raise CapError("malformed", str(error)) from None
    except LookupError as error:  # an encoding="..." Python does not know
        raise CapError("malformed", str(error)) from None


def _check_depth(root) -> None:
    """Refuse nesting no CAP message has, without recursion (a deep document must not be
    able to exhaust the stack of anything that walks it later)."""
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CapError("invalid-cap", "elements nested deeper than %d levels" % MAX_DEPTH)
        stack.extend((child, depth + 1) for child in element)


def _text(parent, name: str) -> str | None:
    element = parent.find(_NS + name)
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def _required(parent, name: str) -> str:
    # The schema requires the element; an empty one is still refused here, with its name.
    value = _text(parent, name)
    if value is None:
        raise CapError("invalid-cap", "<%s> is empty" % name)
    return value


def _texts(parent, name: str) -> tuple[str, ...]:
    return tuple(element.text.strip() for element in parent.findall(_NS + name)
                 if element.text and element.text.strip())


def _pairs(parent, name: str) -> tuple[tuple[str, str], ...]:
    return tuple(((element.findtext(_NS + "valueName") or "").strip(),
                  (element.findtext(_NS + "value") or "").strip())
                 for element in parent.findall(_NS + name))


def parse_cap_time(text: str, name: str = "time") -> datetime:
    """A CAP dateTime ("2026-11-15T17:30:00+07:00") as an aware datetime in UTC; a time
    without an offset is refused."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CapError("invalid-cap", "<%s> %r is not a date and time" % (name, text[:40])) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CapError("invalid-cap", "<%s> %r has no UTC offset" % (name, text[:40]))
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise CapError("invalid-cap", "<%s> %r is out of range" % (name, text[:40])) from None


def _time(parent, name: str) -> datetime | None:
    text = _text(parent, name)
    return None if text is None else parse_cap_time(text, name)


def _identifier(parent, name: str) -> str:
    value = _required(parent, name)
    if _BAD_IDENTIFIER_RE.search(value):
        raise CapError("invalid-cap", "<%s> %r may not contain spaces, commas, < or &"
                       % (name, value[:60]))
    return value


def parse_references(text: str | None) -> tuple[Reference, ...]:
    """CAP <references>: whitespace-separated "sender,identifier,sent" triples."""
    references = []
    for triple in (text or "").split():
        parts = triple.split(",")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise CapError("invalid-cap", "reference %r is not sender,identifier,sent"
                           % triple[:80])
        references.append(Reference(parts[0], parts[1], parse_cap_time(parts[2], "references")))
    return tuple(references)


def parse_addresses(text: str | None) -> tuple[str, ...]:
    """CAP <addresses>: space-separated, an address with spaces in double quotes."""
    return tuple((quoted or bare).strip() for quoted, bare in _ADDRESS_RE.findall(text or "")
                 if (quoted or bare).strip())


def _resource(element) -> Resource:
    content = None
    encoded = _text(element, "derefUri")
    if encoded is not None:
        try:
            content = base64.b64decode("".join(encoded.split()), validate=True)
        except (binascii.Error, ValueError):
            raise CapError("invalid-cap", "a resource's <derefUri> is not base64") from None
    digest = _text(element, "digest")
    digest = digest.lower() if digest else None
    resource = Resource(
        description=_required(element, "resourceDesc"),
        mime_type=_required(element, "mimeType"),
        size=None if _text(element, "size") is None else int(_text(element, "size")),
        uri=_text(element, "uri"),
        content=content,
        digest=digest,
    )
    if content is not None and digest is not None and not resource.matches_digest(content):
        raise CapError("invalid-cap", "a resource's <digest> does not match its <derefUri>")
    return resource


def _decimal(parent, name: str) -> float | None:
    text = _text(parent, name)
    return None if text is None else float(text)


def _area(element) -> Area:
    return Area(
        description=_required(element, "areaDesc"),
        polygons=tuple(parse_cap_polygon(text) for text in _texts(element, "polygon")),
        circles=tuple(parse_cap_circle(text) for text in _texts(element, "circle")),
        geocodes=_pairs(element, "geocode"),
        altitude=_decimal(element, "altitude"),
        ceiling=_decimal(element, "ceiling"),
    )


def _info(element) -> Info:
    return Info(
        language=_text(element, "language") or DEFAULT_LANGUAGE,
        categories=_texts(element, "category"),
        event=_required(element, "event"),
        response_types=_texts(element, "responseType"),
        urgency=_required(element, "urgency"),
        severity=_required(element, "severity"),
        certainty=_required(element, "certainty"),
        audience=_text(element, "audience"),
        event_codes=_pairs(element, "eventCode"),
        effective=_time(element, "effective"),
        onset=_time(element, "onset"),
        expires=_time(element, "expires"),
        sender_name=_text(element, "senderName"),
        headline=_text(element, "headline"),
        description=_text(element, "description"),
        instruction=_text(element, "instruction"),
        web=_text(element, "web"),
        contact=_text(element, "contact"),
        parameters=_pairs(element, "parameter"),
        resources=tuple(_resource(child) for child in element.findall(_NS + "resource")),
        areas=tuple(_area(child) for child in element.findall(_NS + "area")),
    )


def _check_area_shapes(root) -> None:
    shapes = sum(1 for _ in root.iterfind("%sinfo/%sarea/%spolygon" % (_NS, _NS, _NS))) + sum(
        1 for _ in root.iterfind("%sinfo/%sarea/%scircle" % (_NS, _NS, _NS)))
    if shapes > MAX_AREA_SHAPES:
        raise CapError("invalid-cap", "%d polygons and circles, at most %d are accepted"
                       % (shapes, MAX_AREA_SHAPES))


def _alert(root) -> Alert:
    return Alert(
        identifier=_identifier(root, "identifier"),
        sender=_identifier(root, "sender"),
        sent=_time(root, "sent"),
        status=_required(root, "status"),
        msg_type=_required(root, "msgType"),
        source=_text(root, "source"),
        scope=_required(root, "scope"),
        restriction=_text(root, "restriction"),
        addresses=parse_addresses(_text(root, "addresses")),
        codes=_texts(root, "code"),
        note=_text(root, "note"),
        references=parse_references(_text(root, "references")),
        incidents=tuple((_text(root, "incidents") or "").split()),
        infos=tuple(_info(child) for child in root.findall(_NS + "info")),
    )


def parse_cap(data: bytes) -> Alert:
    """The Alert in ``data`` (the raw bytes of a CAP 1.2 document), or CapError."""
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError("parse_cap takes the document's bytes, not %s" % type(data).__name__)
    if len(data) > MAX_CAP_BYTES:
        raise CapTooLarge(len(data), MAX_CAP_BYTES)
    if not data.strip():
        raise CapError("malformed", "the document is empty")
    root = _defused_root(data)
    _check_depth(root)
    if root.tag != _NS + "alert":
        namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
        if namespace in _OTHER_CAP_VERSIONS:
            raise CapError("not-cap", "this is CAP %s; only CAP 1.2 is accepted"
                           % namespace.rsplit(":", 1)[-1])
        raise CapError("not-cap", "the root element is %r, not a CAP 1.2 <alert>" % root.tag[:120])
    validate_cap(root)
    _check_area_shapes(root)
    return _alert(root)
