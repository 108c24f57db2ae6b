"""Errors a service function raises for bad input; the API turns them into clear 4xx answers.

Each carries a machine-readable ``code``, an English ``message`` and a Vietnamese
``message_vi`` (what the operator's page shows).
"""


class ServiceError(Exception):
    status = 400

    def __init__(self, code: str, message: str, message_vi: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.message_vi = message_vi or message

    def as_dict(self) -> dict:
        return {"detail": self.message, "code": self.code, "message_vi": self.message_vi}


class NotFound(ServiceError):
    status = 404


class Invalid(ServiceError):
    status = 422


class Conflict(ServiceError):
    status = 409


class Forbidden(ServiceError):
    status = 403


class Busy(ServiceError):
    """Too much work already queued: try again later (503 with Retry-After)."""

    status = 503
    headers = {"Retry-After": "60"}
