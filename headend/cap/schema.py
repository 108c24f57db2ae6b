"""Validation of a parsed CAP document against the CAP 1.2 schema (CAP-v1.2.xsd beside this).

The schema is read from this package's own bytes with every resource access refused
(``allow="none"``), and a document is validated as an already parsed (defused) ElementTree,
ignoring any xsi:schemaLocation it names: validation never opens a file or a URL.
"""

from functools import cache
from pathlib import Path

import xmlschema

from headend.cap.errors import CapError

SCHEMA_PATH = Path(__file__).with_name("CAP-v1.2.xsd")
CAP_NAMESPACE = "urn:oasis:names:tc:emergency:cap:1.2"
TIME_ELEMENTS = ("sent", "effective", "onset", "expires")
_DETAIL_LIMIT = 300  # the value of a bad element is echoed; a long one is cut


@cache
def cap_schema() -> xmlschema.XMLSchema10:
    return xmlschema.XMLSchema10(SCHEMA_PATH.read_bytes(), allow="none", defuse="always")


def _local_name(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _describe(error) -> str:
    """One line an agency's engineer can act on: which element, what is wrong."""
    element = error.elem
    name = _local_name(element.tag) if element is not None else ""
    value = (element.text or "").strip() if element is not None else ""
    if name in TIME_ELEMENTS and value:
        return ("<%s> %r is not a CAP time: it needs seconds and a UTC offset, "
                "for example 2026-11-15T17:30:00+07:00" % (name, value[:40]))
    reason = error.reason or str(error.message)
    where = error.path or ""
    detail = "%s (at %s)" % (reason, where) if where else reason
    detail = detail.replace("{%s}" % CAP_NAMESPACE, "")
    return detail[:_DETAIL_LIMIT]


def validate_cap(root) -> None:
    """Raise CapError("invalid-cap") unless ``root`` (an ElementTree element) is a valid CAP 1.2
    alert; the first error found is the one reported."""
    for error in cap_schema().iter_errors(root, use_location_hints=False):
        raise CapError("invalid-cap", _describe(error))
