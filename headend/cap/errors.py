"""Why a CAP message is refused: one error class, one code per reason, English and Vietnamese.

``CapError`` is an ``Invalid`` (422), so the API's ServiceError handler answers it as a clear
4xx with ``{"detail", "code", "message_vi"}``; a document over the size limit answers 413.
The Vietnamese text is what the operator's page shows; the English ``detail`` may carry the
technical particulars (which element, which value).
"""

from headend.errors import Invalid

# code -> (English summary, Vietnamese summary). The particulars follow after a colon.
CAP_ERRORS = {
    "too-large": ("the CAP message is too large",
                  "bản tin CAP quá lớn"),
    "malformed": ("the CAP message is not well-formed XML",
                  "bản tin CAP không phải XML hợp lệ (bị cắt hoặc hỏng)"),
    "forbidden-xml": ("the CAP message uses XML features that are refused "
                      "(DTD, entities or external references)",
                      "bản tin CAP dùng tính năng XML bị cấm (DTD, thực thể hoặc tham chiếu ngoài)"),
    "not-cap": ("the document is not a CAP 1.2 alert",
                "tài liệu không phải bản tin cảnh báo CAP 1.2"),
    "invalid-cap": ("the CAP message does not follow the CAP 1.2 standard",
                    "bản tin CAP không đúng chuẩn CAP 1.2"),
    "expired": ("the CAP alert has already expired",
                "bản tin cảnh báo CAP đã hết hạn"),
}


class CapError(Invalid):
    """A refused CAP message; ``code`` is one of CAP_ERRORS."""

    def __init__(self, code: str, detail: str | None = None):
        english, vietnamese = CAP_ERRORS[code]
        if detail:
            english = "%s: %s" % (english, detail)
            vietnamese = "%s: %s" % (vietnamese, detail)
        super().__init__(code, english, vietnamese)


class CapTooLarge(CapError):
    status = 413

    def __init__(self, size: int, limit: int):
        super().__init__("too-large", "%d bytes, at most %d are accepted" % (size, limit))
