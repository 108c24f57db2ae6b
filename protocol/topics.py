"""MQTT topic layout, version 1.

    loaxa/v1/{site}/dev/{device}/cmd      head-end -> receiver: signed commands (QoS 1)
    loaxa/v1/{site}/dev/{device}/time     head-end -> receiver: signed time-sync replies (QoS 0)
    loaxa/v1/{site}/dev/{device}/status   receiver -> head-end: birth, or death as last will (retained, QoS 1)
    loaxa/v1/{site}/dev/{device}/hb       receiver -> head-end: heartbeat and telemetry (QoS 0)
    loaxa/v1/{site}/dev/{device}/evt      receiver -> head-end: acks, proof of play, rejections (QoS 1)
    loaxa/v1/{site}/dev/{device}/treq     receiver -> head-end: time-sync requests (QoS 0)
    loaxa/v1/{site}/stream/{stream_id}    head-end -> receivers: binary audio frames (QoS 0)

A device may only publish below its own ``dev/{device}/`` and subscribe to its own ``cmd`` and
``time`` plus ``stream/#`` (broker ACL); the head-end owns everything else.
"""

ROOT = "loaxa/v1"

CMD = "cmd"
TIME = "time"
STATUS = "status"
HEARTBEAT = "hb"
EVENT = "evt"
TIME_REQUEST = "treq"

DEVICE_UPLINK = (STATUS, HEARTBEAT, EVENT, TIME_REQUEST)
DEVICE_DOWNLINK = (CMD, TIME)

_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"


def valid_id(value):
    """Site, device and stream ids: 1-48 characters of [A-Za-z0-9_-], so they are safe in topics."""
    if not isinstance(value, str) or not 0 < len(value) <= 48:
        return False
    for ch in value:
        if ch not in _ID_CHARS:
            return False
    return True


def _check(kind, value):
    if not valid_id(value):
        raise ValueError("invalid %s id: %r" % (kind, value))


def device_topic(site, device, leaf):
    _check("site", site)
    _check("device", device)
    return "%s/%s/dev/%s/%s" % (ROOT, site, device, leaf)


def stream_topic(site, stream_id):
    _check("site", site)
    _check("stream", stream_id)
    return "%s/%s/stream/%s" % (ROOT, site, stream_id)


def uplink_filter(site, leaf="+"):
    """What the head-end subscribes to: every device's uplink topics of one site."""
    _check("site", site)
    return "%s/%s/dev/+/%s" % (ROOT, site, leaf)


def parse(topic):
    """Split a v1 topic into ``(site, kind, ident, leaf)``.

    ``kind`` is "dev" (ident = device id, leaf = cmd/time/status/...) or "stream"
    (ident = stream id, leaf = ""). Returns None for anything that is not a v1 topic.
    """
    parts = topic.split("/")
    if len(parts) < 5 or parts[0] != "loaxa" or parts[1] != "v1":
        return None
    site = parts[2]
    if not valid_id(site):
        return None
    if parts[3] == "dev" and len(parts) == 6 and valid_id(parts[4]):
        return (site, "dev", parts[4], parts[5])
    if parts[3] == "stream" and len(parts) == 5 and valid_id(parts[4]):
        return (site, "stream", parts[4], "")
    return None
