"""What the test servers here share (the fake gateway, the proxies, the ping service): a
socketserver on 127.0.0.1 served from a daemon thread, used as a context manager."""
import threading


class Served:
    """A service whose socketserver serves from a daemon thread once serve() is given it; start()
    (which makes the server and calls serve) and stop() run it, and so does a with block."""

    POLL_SECONDS = 0.01  # how soon serve_forever notices a shutdown
    _server = None

    def serve(self, server):
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": self.POLL_SECONDS}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]
