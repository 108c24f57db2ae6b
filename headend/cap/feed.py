"""A CAP feed (Atom 1.0 or RSS 2.0 whose entries are CAP alerts) from bytes to its entries.
No IO: headend/services/cap_feeds.py fetches the feed and what its entries link to.

The feed is parsed by the same defused path as a CAP message (parse.py: no DTD, no entities,
no external references; a billion-laughs feed is refused at its DOCTYPE). Each entry either
embeds the CAP ``<alert>`` (in Atom ``<content>`` or as a child of the RSS ``<item>``) or
links to it: an Atom ``<link>`` or RSS ``<enclosure>`` whose type names CAP or XML first,
else the entry's plain link. An embedded alert is serialised back to bytes so that it goes
through ``parse_cap`` like any posted message (schema included).

An entry's key (what the poller remembers so as not to fetch it again) is its Atom ``<id>``
or RSS ``<guid>`` (else its link) with its ``<updated>`` / ``<pubDate>``: an entry the agency
edits in place is looked at again; the CAP sender, identifier and sent then tell whether it is
a message already received.
"""

import hashlib
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit
from xml.etree import ElementTree

from headend.cap.errors import CapError, CapTooLarge
from headend.cap.parse import _check_depth, _defused_root
from headend.cap.schema import CAP_NAMESPACE

MAX_FEED_BYTES = 1024 * 1024
MAX_FEED_ENTRIES = 200  # the newest first in every real feed; more is not a warning feed
ENTRY_KEY_LENGTH = 300
ATOM = "{http://www.w3.org/2005/Atom}"
_CAP_ALERT = "{%s}alert" % CAP_NAMESPACE
_CAP_TYPES = ("application/cap+xml", "application/common-alerting-protocol+xml")


@dataclass(frozen=True, slots=True)
class FeedEntry:
    key: str  # what the poller remembers (at most ENTRY_KEY_LENGTH characters)
    link: str | None  # the CAP document's absolute http(s) URL, when not embedded
    embedded: bytes | None  # the CAP alert carried in the entry itself


def _text(element, tag: str) -> str | None:
    found = element.find(tag)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _key(*parts: str | None) -> str:
    key = "|".join(part for part in parts if part)
    if len(key) > ENTRY_KEY_LENGTH:
        return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()
    return key


def _absolute(href: str | None, base_url: str) -> str | None:
    if not href:
        return None
    url = urljoin(base_url, href.strip())
    return url if urlsplit(url).scheme in ("http", "https") else None


def _rank(kind: str | None) -> int:
    """Links whose type says CAP first, then any XML, then the rest."""
    kind = (kind or "").split(";")[0].strip().lower()
    if kind in _CAP_TYPES:
        return 0
    if kind.endswith("/xml") or kind.endswith("+xml"):
        return 1
    return 2


def _embedded(entry) -> bytes | None:
    alert = next(entry.iter(_CAP_ALERT), None)
    if alert is None:
        return None
    _check_depth(alert)  # before anything walks it recursively
    return ElementTree.tostring(alert, encoding="utf-8", xml_declaration=True)


def _atom_entries(root, base_url: str) -> list[FeedEntry]:
    entries = []
    for entry in root.findall(ATOM + "entry"):
        links = [(link.get("rel") or "alternate", link.get("type"), link.get("href"))
                 for link in entry.findall(ATOM + "link")]
        links = [link for link in links if link[0] in ("alternate", "enclosure", "related")]
        links.sort(key=lambda link: _rank(link[1]))
        link = next((url for url in (_absolute(href, base_url) for _, _, href in links) if url),
                    None)
        entries.append(FeedEntry(key=_key(_text(entry, ATOM + "id") or link,
                                          _text(entry, ATOM + "updated")),
                                 link=link, embedded=_embedded(entry)))
    return entries


def _rss_entries(root, base_url: str) -> list[FeedEntry]:
    entries = []
    for item in root.iterfind("channel/item"):
        candidates = [(_rank(enclosure.get("type")), enclosure.get("url"))
                      for enclosure in item.findall("enclosure")]
        candidates.append((2, _text(item, "link")))
        candidates.sort(key=lambda candidate: candidate[0])
        link = next((url for url in (_absolute(href, base_url) for _, href in candidates) if url),
                    None)
        entries.append(FeedEntry(key=_key(_text(item, "guid") or link, _text(item, "pubDate")),
                                 link=link, embedded=_embedded(item)))
    return entries


def parse_feed(data: bytes, base_url: str) -> tuple[FeedEntry, ...]:
    """The entries of an Atom or RSS feed, in the feed's order; entries with neither an
    embedded alert nor a usable link are left out. Raises CapError ("too-large", "malformed",
    "forbidden-xml", "not-cap" for a document that is neither Atom nor RSS)."""
    if len(data) > MAX_FEED_BYTES:
        raise CapTooLarge(len(data), MAX_FEED_BYTES)
    if not data.strip():
        raise CapError("malformed", "the feed is empty")
    root = _defused_root(data)
    if root.tag == ATOM + "feed":
        entries = _atom_entries(root, base_url)
    elif root.tag == "rss":
        entries = _rss_entries(root, base_url)
    else:
        raise CapError("not-cap", "the feed's root is %r, neither an Atom <feed> nor an RSS "
                       "<rss>" % root.tag[:120])
    if len(entries) > MAX_FEED_ENTRIES:
        raise CapError("invalid-cap", "the feed has %d entries, at most %d are read"
                       % (len(entries), MAX_FEED_ENTRIES))
    return tuple(entry for entry in entries if entry.embedded is not None or entry.link)
