"""``LiveWebSocketTestCase``: a real edge and worker inside the test process.

Like Django's LiveServerTestCase (and Channels' ChannelsLiveServerTestCase),
it is a TransactionTestCase: the edge (Tornado, in a thread with its own
event loop) and a threaded worker run in this process, so handlers use the
test database, and what a test writes is committed where they can see it.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading

from django.test import TransactionTestCase

from django_ws import sending
from django_ws.routing import Mount

from .server import free_port


class LiveWebSocketServer:
    """An in-process edge + threaded worker on a free port with private endpoints."""

    def __init__(self, websocket_url: str = "/socket"):
        self.mount = Mount(websocket_url)
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="django-ws-live-")
        self.push = f"ipc://{self._tmp.name}/push"
        self.sub = f"ipc://{self._tmp.name}/sub"

    def url(self, route: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}{self.mount.prefix}/{route}"

    def start(self) -> None:
        from django_ws.edge.app import Edge
        from django_ws.worker.modes import ThreadedMode
        from django_ws.worker.server import Worker

        self._saved_route = sending.use_route(sending.EdgeRoute())
        self.loop = asyncio.new_event_loop()
        self.edge = Edge(self.mount, self.push, self.sub)
        ready = threading.Event()
        joined = asyncio.Event()

        def run_edge():
            asyncio.set_event_loop(self.loop)
            self.edge.start("127.0.0.1", self.port)
            self.edge.on_worker_change = lambda what, worker: joined.set()
            ready.set()
            self.loop.run_forever()

        self.edge_thread = threading.Thread(target=run_edge, name="django-ws-live-edge", daemon=True)
        self.edge_thread.start()
        ready.wait(10)
        self.worker = Worker(ThreadedMode(), [(self.push, self.sub)])
        # The test's own send_to_group() goes to the edge the normal way, with acks.
        sending.use_route(self._saved_route)
        self.worker_thread = threading.Thread(target=self.worker.serve, name="django-ws-live-worker", daemon=True)
        self.worker_thread.start()
        asyncio.run_coroutine_threadsafe(asyncio.wait_for(joined.wait(), 10), self.loop).result(15)

    def stop(self) -> None:
        self.worker.stopping = True
        self.worker_thread.join(15)
        asyncio.run_coroutine_threadsafe(self.edge.shutdown(5.0), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.edge_thread.join(15)
        self.loop.close()
        sending.use_route(self._saved_route)
        self._tmp.cleanup()


class LiveWebSocketTestCase(TransactionTestCase):
    """Starts a real edge and worker for the test class; ``self.ws_url(route)`` gives URLs.

    ``send_to_group()`` and friends in the test reach this server's edge.
    """

    websocket_url = "/socket"

    @classmethod
    def setUpClass(cls) -> None:
        """Start the edge and its worker, and point ``send_to_group()`` & co. at them."""
        super().setUpClass()
        cls.ws_server = LiveWebSocketServer(cls.websocket_url)
        cls.ws_server.start()
        from django.test.utils import override_settings

        cls._ws_settings = override_settings(WS_EDGES=[cls.ws_server.sub])
        cls._ws_settings.enable()

    @classmethod
    def tearDownClass(cls) -> None:
        """Stop the edge and the worker."""
        cls._ws_settings.disable()
        cls.ws_server.stop()
        super().tearDownClass()

    def ws_url(self, route: str = "") -> str:
        """The ws:// URL of ``route`` (the path below the mount prefix) on this class's server."""
        return self.ws_server.url(route)
