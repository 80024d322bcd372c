"""A TCP proxy on loopback that can lose an answer: the request reaches the server,
then the connection breaks before the reply comes back (the fate a client cannot know)."""

from __future__ import annotations

import asyncio
import contextlib


class CuttingProxy:
    """Forwards 127.0.0.1:``port`` to ``target_port``. After ``cut_next()``, the next
    bytes a client sends are delivered, the server's reply is dropped, and both sides of
    that connection are reset; later connections pass everything again."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._armed = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut_next(self) -> None:
        self._armed = True

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        muted = asyncio.Event()

        async def upward() -> None:
            while data := await reader.read(65536):
                cut = self._armed
                if cut:
                    self._armed = False
                    muted.set()  # the reply to these bytes never reaches the client
                up_writer.write(data)
                await up_writer.drain()
                if cut:
                    await asyncio.sleep(0.05)  # the server has run the commands by now
                    writer.transport.abort()
                    up_writer.transport.abort()
                    return

        async def downward() -> None:
            while data := await up_reader.read(65536):
                if not muted.is_set():
                    writer.write(data)
                    await writer.drain()

        tasks = [asyncio.ensure_future(upward()), asyncio.ensure_future(downward())]
        self._tasks.update(tasks)
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)
        writer.transport.abort()
        up_writer.transport.abort()
