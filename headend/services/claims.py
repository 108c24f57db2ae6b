"""Claiming a receiver at its pole: a technician types (or scans) the receiver's id and the
claim code from the pole's label (tools/device_label.py: HMAC of site and id under the
receiver's key, 8 characters of Crockford base32) and puts it in its village, with the pole's
coordinates. The code proves which receiver hangs on which pole: a code from another label or
a mistyped id does not match. Wrong codes are refused with a clear message and audited;
attempts per receiver and per address back off like logins (headend/services/login_throttle.py,
its own counts: a technician's login is not slowed by a mistyped code)."""

import hmac
import threading

from sqlalchemy.orm import Session

from headend.errors import Invalid
from headend.keystore import open_stored
from headend.models import Receiver, User
from headend.services import audit
from headend.services.devices import DeviceView, get_receiver, update_device
from headend.services.login_throttle import LoginThrottle, TooManyAttempts
from tools.device_label import CROCKFORD, claim_code

# What a technician may type for a Crockford digit: lower case, O for 0, I and L for 1.
_ALIASES = {"O": "0", "I": "1", "L": "1"}


class TooManyCodes(TooManyAttempts):
    def __init__(self, retry_after_s: int):
        super().__init__(retry_after_s)
        minutes = max(1, -(-retry_after_s // 60))
        self.code = "too-many-claims"
        self.message = "too many wrong claim codes: try again in %d s" % retry_after_s
        self.message_vi = ("Nhập sai mã xác nhận quá nhiều lần. Vui lòng thử lại sau %d phút."
                           % minutes)
        self.args = (self.message,)


def label_code(session: Session, receiver: Receiver) -> str:
    """The code on the receiver's label: kept on the row once its key rotated, else from it."""
    if receiver.claim_code:
        return receiver.claim_code
    return claim_code(open_stored(session, receiver.id, receiver.device_key), receiver.site_id,
                      receiver.id)


def normalise(code: str) -> str:
    """``7k3m q9xd``, ``7K3M-Q9XD``, ``7K3MQ9XD`` and a QR payload all give ``7K3MQ9XD``."""
    code = (code or "").strip().upper()
    if code.startswith("LOAXA:"):
        code = code.rsplit(":", 1)[-1]
    out = "".join(_ALIASES.get(c, c) for c in code if c not in " -")
    return out if len(out) == 8 and all(c in CROCKFORD for c in out) else ""


def claim_device(session: Session, *, throttle: LoginThrottle, address: str | None,
                 device_id: str, code: str, zone_id: str | None, lat: float | None,
                 lon: float | None, actor: User | str | None) -> DeviceView:
    """Put ``device_id`` in ``zone_id`` at (lat, lon) if ``code`` is its label's. Raises
    TooManyAttempts (429, counting nothing), NotFound, or Invalid("wrong-claim-code")."""
    device_id = (device_id or "").strip()
    try:
        throttle.begin(username="claim:" + device_id, address=address)
    except TooManyAttempts as wait:
        raise TooManyCodes(wait.retry_after_s) from None
    receiver = get_receiver(session, device_id=device_id)
    typed = normalise(code)
    expected = label_code(session, receiver).replace("-", "")
    if not typed or not hmac.compare_digest(typed, expected):
        audit.record(session, actor=actor, action="device.claim_refused", target=device_id,
                     detail={"zone": zone_id})  # never the code typed
        session.commit()
        raise Invalid("wrong-claim-code",
                      "the claim code does not match receiver %r: check the id and the code "
                      "on the pole's label" % device_id,
                      "Mã xác nhận không khớp với cụm loa %r: kiểm tra lại mã thiết bị và mã "
                      "trên nhãn dán ở cột loa" % device_id)
    throttle.succeeded(username="claim:" + device_id, address=address)
    audit.record(session, actor=actor, action="device.claim", target=device_id,
                 detail={"zone": zone_id, "lat": lat, "lon": lon})
    return update_device(session, device_id=device_id, zone_id=zone_id, lat=lat, lon=lon,
                         actor=actor)


def claim_throttle_of(state) -> LoginThrottle:
    """The app's throttle for claim codes (``app.state.claim_throttle``), made on first use."""
    with _creating:
        throttle = getattr(state, "claim_throttle", None)
        if throttle is None:
            throttle = state.claim_throttle = LoginThrottle()
        return throttle


_creating = threading.Lock()
