"""Field tables: how protocol/messages.py describes each message once, and the one validator
and encoder that read those descriptions.

A table is a tuple of rows, one per field, in wire order. A row is a plain tuple (compact on
the board: no per-field dicts, no classes)::

    (name, type, unit, lo, hi, use, meaning)

- ``type``: INT, NUMBER (int or finite float), STR, ID (protocol.topics.valid_id), HEX64
  (64 lowercase hex digits), BOOL, ONE_OF, LIST, OBJECT.
- ``unit``: a short unit for the docs ("ms", "s", "B", ...) or None.
- ``lo``, ``hi``: limits, None for none. INT and NUMBER: the value's bounds. STR: the shortest
  and longest length (lo None: 1, so an empty string is refused; hi None: 512). ONE_OF: ``lo``
  is the tuple of allowed strings. LIST: ``lo`` is the row every element must pass (None: any),
  ``hi`` the most elements. OBJECT: ``lo`` is the object's own table (None: any object).
- ``use``: REQUIRED (missing, null or out of bounds: the message is refused), OPTIONAL (may be
  missing or null; encoders leave out None) or IF_SET (optional, and encoders also leave it out
  at 0 or empty, its default: 4G is paid per byte).
- ``meaning``: one line, for docs/protocol.md (tools/protocol_doc.py renders the tables there).

Every failure is ProtocolError("bad-field", name) with the name of the field that failed.
"""

from protocol import PROTOCOL_VERSION
from protocol.errors import ProtocolError
from protocol.topics import valid_id

INT = "int"
NUMBER = "number"
STR = "str"
ID = "id"
HEX64 = "hex64"
BOOL = "bool"
ONE_OF = "one of"
LIST = "list"
OBJECT = "object"
TYPES = (INT, NUMBER, STR, ID, HEX64, BOOL, ONE_OF, LIST, OBJECT)

REQUIRED = "required"
OPTIONAL = "optional"
IF_SET = "if set"
USES = (REQUIRED, OPTIONAL, IF_SET)

# Row positions.
NAME = 0
TYPE = 1
UNIT = 2
LO = 3
HI = 4
USE = 5
MEANING = 6

_STR_MAX = 512
_HEX = "0123456789abcdef"


def names(table):
    """The field names of ``table``, in order."""
    return tuple(row[NAME] for row in table)


def row_of(table, name):
    """The row of field ``name`` in ``table``, or None."""
    for row in table:
        if row[NAME] == name:
            return row
    return None


def with_use(table, name, use):
    """``table`` with field ``name`` given another ``use`` (the other rows shared)."""
    out = []
    for row in table:
        if row[NAME] == name:
            row = row[:USE] + (use,) + row[USE + 1:]
        out.append(row)
    return tuple(out)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_value(row, value, copy=False, lenient=False):
    """``value`` checked against ``row``; returned (a checked copy of an object or list when
    ``copy``). Raises ProtocolError("bad-field", name)."""
    kind = row[TYPE]
    lo = row[LO]
    hi = row[HI]
    ok = True
    if kind == INT:
        ok = _is_int(value) and (lo is None or value >= lo) and (hi is None or value <= hi)
    elif kind == NUMBER:
        # "not value >= lo" rather than "value < lo": NaN compares false both ways, refused.
        ok = (not isinstance(value, bool) and isinstance(value, (int, float))
              and (lo is None or value >= lo) and (hi is None or value <= hi))
    elif kind == STR:
        ok = (isinstance(value, str) and len(value) >= (1 if lo is None else lo)
              and len(value) <= (_STR_MAX if hi is None else hi))
    elif kind == ID:
        ok = valid_id(value)
    elif kind == HEX64:
        ok = isinstance(value, str) and len(value) == 64
        if ok:
            for c in value:
                if c not in _HEX:
                    ok = False
                    break
    elif kind == BOOL:
        ok = value is True or value is False
    elif kind == ONE_OF:
        ok = isinstance(value, str) and value in lo
    elif kind == LIST:
        ok = isinstance(value, list) and (hi is None or len(value) <= hi)
        if ok and lo is not None:
            out = [] if copy else value
            for element in value:
                element = check_value(lo, element, copy)
                if copy:
                    out.append(element)
            return out
        if ok and copy:
            return list(value)
    elif kind == OBJECT:
        ok = isinstance(value, dict)
        if ok and lo is not None:
            return check_fields(lo, value, copy, lenient)
        if ok and copy:
            return dict(value)
    else:
        raise ValueError("no such field type: %s" % kind)
    if not ok:
        raise ProtocolError("bad-field", row[NAME])
    return value


def check_fields(table, obj, copy=False, lenient=False, out=None):
    """Check ``obj`` (a dict) against ``table``.

    ``copy``: return a new dict of the table's fields only (into ``out`` if given), each
    checked: what a receiving edge keeps. Otherwise ``obj`` is checked in place and returned
    (no allocation: how the receiver checks a command). ``lenient``: an OPTIONAL or IF_SET field
    that fails is left out instead of refusing the message (proof of play must not be lost to
    one bad detail); a REQUIRED field that fails always refuses it.
    """
    if copy and out is None:
        out = {}
    for row in table:
        name = row[NAME]
        value = obj.get(name)
        if value is None:
            if row[USE] == REQUIRED:
                raise ProtocolError("bad-field", name)
            continue
        if lenient and row[USE] != REQUIRED:
            try:
                value = check_value(row, value, copy, lenient)
            except ProtocolError:
                continue
        else:
            value = check_value(row, value, copy, lenient)
        if copy:
            out[name] = value
    return out if copy else obj


def build(table, fields, msg=None, nulls=False):
    """A message from ``fields`` (name -> value), in the table's order: a "v" field gets the
    protocol version; a None value is left out (sent as null with ``nulls``, for a field given
    as None), and an IF_SET field at 0 or empty too; a STR
    longer than its limit is cut to it; a float NUMBER is rounded to 2 decimals. A name the
    table does not have, or a REQUIRED field left None, is the sender's bug: ValueError.
    """
    if msg is None:
        msg = {}
    used = 0
    for row in table:
        name = row[NAME]
        if name == "v":
            msg[name] = PROTOCOL_VERSION
            used += 1 if name in fields else 0
            continue
        value = fields.get(name)
        if name in fields:
            used += 1
        use = row[USE]
        if value is None or (use == IF_SET and not value):
            if use == REQUIRED:
                raise ValueError("missing field: %s" % name)
            if nulls and value is None and name in fields:
                msg[name] = None
            continue
        kind = row[TYPE]
        if kind == STR and isinstance(value, str):
            hi = _STR_MAX if row[HI] is None else row[HI]
            if len(value) > hi:
                value = value[:hi]
        elif kind == NUMBER and isinstance(value, float):
            value = round(value, 2)
        msg[name] = value
    if used != len(fields):
        for name in fields:
            if row_of(table, name) is None:
                raise ValueError("not a field of this message: %s" % name)
    return msg
