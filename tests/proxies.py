"""Small proxies on 127.0.0.1 for the route tests: an HTTP proxy (CONNECT tunnels and absolute-URI
requests), over TCP or TLS, that relays, stalls its CONNECT answer or asks for a password; and a
SOCKS5 relay. Each remembers the targets it was asked for in `asked`."""
import os
import select
import socket
import socketserver
import ssl
import struct
import time

from loopback import Served

HERE = os.path.dirname(os.path.abspath(__file__))
CERT = os.path.join(HERE, "tls", "server.pem")
CA = os.path.join(HERE, "tls", "ca.pem")


def pipe(first: socket.socket, second: socket.socket, give_up_after: float = 30.0) -> None:
    """Copy bytes both ways until either side closes (or a long while passes)."""
    stop = time.monotonic() + give_up_after
    sockets = [first, second]
    try:
        while time.monotonic() < stop:
            ready, _, _ = select.select(sockets, [], [], 0.2)
            for source in ready:
                data = source.recv(65536)
                if not data:
                    return
                (second if source is first else first).sendall(data)
    except OSError:
        pass
    finally:
        for sock in sockets:
            sock.close()


def read_head(sock: socket.socket) -> bytes:
    """Read a request's head, up to its blank line."""
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        data = sock.recv(1)
        if not data:
            break
        head += data
    return head


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass


class _Service(Served):
    """A server on 127.0.0.1 whose handle(sock) runs for each connection."""

    scheme = "http"

    def __init__(self, tls: bool = False):
        self.tls = tls
        self.asked = []
        service = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                sock = self.request
                if service.tls:
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    context.load_cert_chain(CERT)
                    sock = context.wrap_socket(sock, server_side=True)
                service.handle(sock)

        self._handler = Handler

    def start(self):
        return self.serve(_Server(("127.0.0.1", 0), self._handler))

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else self.scheme
        return f"{scheme}://127.0.0.1:{self.port}"


class HttpProxy(_Service):
    """An HTTP proxy. mode: "relay" (tunnels and forwards), "stall" (answers CONNECT with 200, then
    trickles header bytes that never end), "407" (asks for a password)."""

    def __init__(self, mode: str = "relay", tls: bool = False):
        super().__init__(tls)
        self.mode = mode

    def handle(self, sock) -> None:
        head = read_head(sock)
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, target = (line.split(" ") + ["", ""])[:2]
        self.asked.append(target)
        if self.mode == "407":
            sock.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            sock.close()
        elif method == "CONNECT" and self.mode == "stall":
            self.stall(sock)
        elif method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host.strip("[]"), int(port)))
            sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            pipe(sock, upstream)
        else:  # GET http://host:port/path HTTP/1.1: forward in origin form
            rest = target.split("://", 1)[1]
            hostport, _, path = rest.partition("/")
            host, port = hostport.rsplit(":", 1)
            upstream = socket.create_connection((host.strip("[]"), int(port)))
            upstream.sendall(head.replace(target.encode(), b"/" + path.encode(), 1))
            pipe(sock, upstream)

    @staticmethod
    def stall(sock, give_up_after: float = 8.0) -> None:
        stop = time.monotonic() + give_up_after
        try:
            sock.sendall(b"HTTP/1.1 200 Connection established\r\nX-Slow: ")
            while time.monotonic() < stop:
                time.sleep(0.05)
                sock.sendall(b"a")
        except OSError:
            pass  # the client hung up, as it should
        finally:
            sock.close()


class SocksProxy(_Service):
    """A SOCKS5 relay without authentication (socks5h://: it resolves names itself)."""

    scheme = "socks5h"

    def handle(self, sock) -> None:
        try:
            _, methods = sock.recv(2)
            sock.recv(methods)
            sock.sendall(b"\x05\x00")
            _, command, _, kind = sock.recv(4)
            if kind == 1:
                host = socket.inet_ntoa(sock.recv(4))
            elif kind == 3:
                host = sock.recv(sock.recv(1)[0]).decode()
            else:
                host = socket.inet_ntop(socket.AF_INET6, sock.recv(16))
            port = struct.unpack(">H", sock.recv(2))[0]
            self.asked.append(f"{host}:{port}")
            upstream = socket.create_connection((host, port))
            sock.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("0.0.0.0") + struct.pack(">H", 0))
        except (OSError, ValueError):
            sock.close()
            return
        pipe(sock, upstream)
