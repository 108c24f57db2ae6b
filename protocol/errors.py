"""The one error type for peer input that does not decode or validate."""


class ProtocolError(ValueError):
    """A message that cannot be accepted. ``reason`` is a short machine-readable word."""

    def __init__(self, reason, detail=""):
        # super(), not ValueError.__init__(self, ...): MicroPython has no __init__ on built-in types.
        super().__init__(reason if not detail else "%s: %s" % (reason, detail))
        self.reason = reason
        self.detail = detail
