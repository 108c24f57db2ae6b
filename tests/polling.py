"""Waiting in a test for something another thread or process does (a row in the database, a
receiver online): ``wait_for`` polls until the condition holds and fails the test if it never
does. Imported as a top-level module: ``tests/`` is on ``sys.path`` (pytest's rootdir-relative
"prepend" import of ``tests/conftest.py``), like ``audio_samples`` for tests/audio."""

import time


def wait_for(predicate, timeout=10.0, what="condition", interval=0.02):
    """Poll ``predicate()`` until it returns something true and return that value; fail with
    AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


async def until(predicate, timeout, what, log=None, interval=0.1):
    """``wait_for`` for a test running in an event loop: ``predicate`` may be a coroutine
    function; the failure adds ``log()`` (a server's log, say) when given."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s\n%s"
                                 % (timeout, what, log() if log else ""))
        await asyncio.sleep(interval)
