"""A healthchecks-style ping service on 127.0.0.1, for --ping_url: it records every ping (its path
after the check's URL, and its body) and can misbehave on demand (an error status, or never answering)."""
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from loopback import Served

CHECK_ID = "0f6d2b1e-7a3c-4c1f-9e55-ping-secret-id"  # the secret part of a check's URL


class PingService(Served):
    """Serves http://127.0.0.1:PORT/<CHECK_ID>/<suffix>; use as a context manager."""

    def __init__(self):
        self.pings = []  # (suffix, body text), in the order they came
        self.status = 200  # what every ping is answered with
        self.stall = False  # accept pings, never answer
        self.stall_suffixes = set()  # accept these pings, never answer them
        self.endless_body = False  # answer, then send a body that never ends
        self.lock = threading.Lock()
        self._release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{CHECK_ID}"

    def suffixes(self) -> list:
        with self.lock:
            return [suffix for suffix, _ in self.pings]

    def start(self) -> "PingService":
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                prefix = f"/{CHECK_ID}/"
                suffix = self.path[len(prefix):] if self.path.startswith(prefix) else self.path
                with service.lock:
                    service.pings.append((suffix, body.decode("utf-8", "replace")))
                if service.stall or suffix.split("?")[0] in service.stall_suffixes:
                    service._release.wait(30)
                    return
                self.send_response(service.status)
                self.send_header("Content-Length", str(1 << 30) if service.endless_body else "2")
                self.end_headers()
                try:
                    while service.endless_body and not service._release.wait(0.01):
                        self.wfile.write(b"x" * 65536)
                    self.wfile.write(b"OK")
                except OSError:
                    pass  # the client hung up, as it should

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        return self.serve(server)

    def stop(self) -> None:
        self._release.set()  # a stalled answer ends, so that the server can shut down
        super().stop()

    def wait_for(self, count: int, seconds: float = 5.0) -> bool:
        """Wait until count pings came (they are sent from the script's own thread)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if len(self.suffixes()) >= count:
                return True
            time.sleep(0.01)
        return False
