"""``PacedWrite``: what a hardware sink's ``write`` returns, an awaitable that allocates nothing.

A sink's ``write`` runs once per audio frame. Written as ``async def``, each call would allocate
its coroutine on the heap: 32 bytes for an empty one, more with locals (measured with
``gc.mem_alloc()`` under the ESP32-model MicroPython), garbage at 30-40 frames a second that the
collector must then sweep in the middle of the audio. So a sink keeps one ``PacedWrite`` and
hands it out again on every ``write``.

How it is awaited without allocating, on MicroPython: ``await x`` compiles to ``yield from x``
(py/compile.c, ``compile_atom_expr_await``), and ``yield from`` on an object that is not a
generator calls its ``__next__`` (py/runtime.c, ``mp_resume``). Each ``__next__`` runs one step
of the sink's work; a step that has to wait for the hardware sleeps through
``asyncio.sleep_ms``, whose preallocated ``SingletonGenerator`` puts the task back on the queue
without allocating (extmod/asyncio/core.py; the WebAssembly port's asyncio has the same). That
is also why waits are polls with a sleep and not an ``asyncio.Event`` or ``ThreadSafeFlag``:
their ``wait()`` is a coroutine (48 bytes per wait, measured), and a ``ThreadSafeFlag`` goes
through the poller's IO queue, which allocates a list entry per wait. On CPython (the
simulator, the unit tests) ``await`` goes through ``__await__``, which may allocate.
"""

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio

DONE = -1  # what a step returns when the write is complete


class PacedWrite:
    """Awaiting this calls ``step()`` until it returns ``DONE``; any other value is the ms to
    sleep before the next call. An exception from ``step`` ends the await with it."""

    def __init__(self, step):
        self._step = step
        self._stop = StopIteration()  # raised again and again: nothing allocated per frame

    def __iter__(self):
        return self

    def __next__(self):
        wait_ms = self._step()
        if wait_ms == DONE:
            self._stop.__traceback__ = None  # as SingletonGenerator: no traceback piling up
            raise self._stop
        # sleep_ms arms its singleton; taking one step of it queues this task at that time.
        # (The type stubs call sleep_ms a coroutine; on MicroPython it returns that iterator.)
        return next(asyncio.sleep_ms(wait_ms))  # type: ignore[call-overload]

    def __await__(self):
        # CPython's await protocol (MicroPython never calls this).
        while True:
            wait_ms = self._step()
            if wait_ms == DONE:
                return
            yield from asyncio.sleep(wait_ms / 1000).__await__()
