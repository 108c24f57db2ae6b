"""A throwaway TCP server on 127.0.0.1 (a free port) for ``async with``: the base of the small
fake servers the firmware's network clients are tested against. A subclass defines
``async _handle(reader, writer)``, called for each connection. Imported as a top-level module,
like ``polling`` (``tests/`` is on ``sys.path``)."""

import asyncio


class LocalServer:
    server = None
    port = None

    async def _handle(self, reader, writer):
        raise NotImplementedError

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()
