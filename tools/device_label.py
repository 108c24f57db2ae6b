"""The pole label: a QR code and text naming the receiver, printed and stuck inside the box.

The label carries the receiver's id, its site and a **claim code**, never its key or password.
The claim code is ``HMAC-SHA256(device key, "loaxa-claim:" site "/" id)``, its first 40 bits
written as 8 characters of Crockford's base32 (digits and capitals without I, L, O, U, so a
technician cannot misread them), shown as ``XXXX-XXXX``. Only the head-end (which holds every
device key) and the receiver's own config can compute it, so a technician at a pole who types
the id and the code from the label into the head-end proves which pole carries which receiver:
a code copied from another label, or a mistyped id, does not match. The code reveals nothing of
the key (HMAC is one-way) and cannot pass for a signed command or report: those are MACed over
a JSON body or a report domain (protocol/signing.py), never over this prefix.

The QR code holds ``LOAXA:<site>:<id>:<claim code>``.
"""

from xml.sax.saxutils import escape

from protocol.signing import hmac_sha256, key_from_hex

CLAIM_PREFIX = b"loaxa-claim:"
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
QR_BORDER = 4  # modules of quiet zone: what a phone's scanner needs around the code


def claim_code(key_hex, site, device):
    """The receiver's claim code, e.g. ``7K3M-Q9XD`` (see the module's docstring)."""
    digest = hmac_sha256(key_from_hex(key_hex), CLAIM_PREFIX + ("%s/%s" % (site, device)).encode())
    bits = int.from_bytes(digest[:5], "big")
    chars = "".join(CROCKFORD[(bits >> shift) & 31] for shift in range(35, -1, -5))
    return chars[:4] + "-" + chars[4:]


def qr_payload(site, device, code):
    return "LOAXA:%s:%s:%s" % (site, device, code)


def label_svg(*, device, site, code, name=None):
    """A 100 x 50 mm label: QR code left, then id, claim code and site, Vietnamese first."""
    import segno

    qr = segno.make(qr_payload(site, device, code), error="m")
    modules = qr.symbol_size(border=QR_BORDER)[0]
    qr_mm = 44.0
    rows = []

    def text(x, y, size, value, weight="normal", fill="#000", family="sans-serif"):
        rows.append('<text x="%s" y="%s" font-family="%s" font-size="%s" font-weight="%s" '
                    'fill="%s">%s</text>' % (x, y, family, size, weight, fill, escape(value)))

    fields = [("Mã cụm loa", "Receiver ID", device), ("Mã nhận", "Claim code", code),
              ("Xã / điểm", "Site", site)]
    y = 8.0
    for vietnamese, english, value in fields:
        text(50, y, 3.6, vietnamese, weight="bold")
        text(50, y + 3.4, 2.8, english, fill="#555")
        text(50, y + 9.4, 5.6 if len(value) <= 14 else 3.6, value, weight="bold",
             family="DejaVu Sans Mono, monospace")
        y += 14.5
    if name:
        text(3, 48.5, 2.8, name)
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<svg xmlns="http://www.w3.org/2000/svg" width="100mm" height="50mm" '
        'viewBox="0 0 100 50">',
        '<title>Loaxa %s</title>' % escape(device),
        '<rect x="0" y="0" width="100" height="50" fill="#fff" stroke="#000" stroke-width="0.3"/>',
        '<g transform="translate(3 1.5) scale(%.6f)">' % (qr_mm / modules),
        qr.svg_inline(scale=1, border=QR_BORDER, dark="#000", light="#fff"),
        "</g>",
        *rows,
        "</svg>",
    ]) + "\n"
