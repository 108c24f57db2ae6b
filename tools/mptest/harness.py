"""The MicroPython side of `make test-micropython` (runs inside the real interpreter).

run.mjs copies this file to /lib/_mptest.py and drives it: ``collect`` names a test module's
tests, ``start`` calls one and ``finish`` records its outcome, so an ``async def`` test can be
awaited by the JavaScript side (this port has no ``asyncio.run``).
"""

import gc
import io
import sys


def collect(module_name):
    """Import a test module; return its test function names, sorted, or raise its import error."""
    module = __import__(module_name)
    names = []
    for name in dir(module):
        if name.startswith("test_") and callable(getattr(module, name)):
            names.append(name)
    names.sort()
    return names


class Run:
    """One test call: its outcome, traceback and the bytes it left allocated."""

    def __init__(self, module_name, name):
        self.module_name = module_name
        self.name = name
        self.ok = True
        self.error = ""
        self.mem_delta = 0
        gc.collect()
        self._mem_before = gc.mem_alloc()

    def start(self):
        """Call the test; return a coroutine to await for ``async def`` tests, else None."""
        try:
            result = getattr(sys.modules[self.module_name], self.name)()
        except BaseException as exc:  # noqa: B036 - a test's failure is data here
            self.fail(exc)
            return None
        if result is not None and type(result).__name__ in ("generator", "coroutine"):
            return result
        return None

    def fail(self, exc):
        buf = io.StringIO()
        sys.print_exception(exc, buf)
        self.ok = False
        self.error = buf.getvalue()

    def finish(self):
        gc.collect()
        self.mem_delta = gc.mem_alloc() - self._mem_before
