"""A drain and the connections accepted just before it (in-process, both builds).

uvloop makes a connection (connection_made) one callback after it accepts it, so a drain
can begin between the two: the connection is the router's already, and its request may
be in. It must be answered, never reset: a generation of workers replaced under load
lost such requests to a reset.
"""

import asyncio

from router.proxy.batch import batch_for
from router.proxy.downstream import ClientConnection
from tests.proxy.inproc import DataPath, Recorder
from tests.support.servers import eventually

REQUEST = b"GET /x HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: acme\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_a_connection_made_after_the_drain_began_is_answered_with_connection_close():
    async def body():
        dp = DataPath()
        dp.server.stop_accepting()
        late, transport = ClientConnection(dp.server), Recorder()
        late.connection_made(transport)
        assert not transport.closed, "refused: the client's request would be reset"
        late.data_received(REQUEST)
        assert dp.sent_upstream().startswith(b"GET /x HTTP/1.1\r\n")
        dp.upstream.data_received(RESPONSE)
        batch_for(asyncio.get_running_loop()).flush()
        head = transport.take().split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 200 ok") and b"\r\nconnection: close" in head
    asyncio.run(body())


def test_a_drain_serves_the_connection_accepted_in_its_own_wake_up():
    async def body():
        dp = DataPath()
        dp.client.connection_lost(None)         # only the late connection, for a short drain
        loop = asyncio.get_running_loop()
        late = ClientConnection(dp.server)
        transport = Closing(late)

        async def backend() -> None:
            sent = bytearray()

            def forwarded() -> bool:
                sent.extend(dp.sent_upstream())
                return sent.startswith(b"GET /x HTTP/1.1\r\n")
            await eventually(forwarded, what="the request forwarded upstream")
            dp.upstream.data_received(RESPONSE)
        answering = asyncio.create_task(backend())
        # Queued as uvloop queues them after an accept; the drain then begins before they
        # run (awaited here, its first steps run at once).
        loop.call_soon(late.connection_made, transport)
        loop.call_soon(lambda: transport.closed or late.data_received(REQUEST))   # none once closed
        await dp.server.drain(5.0)
        await answering
        assert transport.data.lower().startswith(b"http/1.1 200 ok")
    asyncio.run(body())


class Closing(Recorder):
    """A transport that tells its protocol it is closed, as a socket's does."""

    def __init__(self, protocol: ClientConnection) -> None:
        super().__init__()
        self.protocol = protocol

    def close(self) -> None:
        if not self.closed:
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)
        super().close()

    abort = close
