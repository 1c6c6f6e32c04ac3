"""An http server for tests: files from memory, with Range requests and scripted misbehaviour."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    """Serves ``files`` over http on 127.0.0.1 with Range support and scripted misbehaviour:
    ``fail_first[name]`` requests answer 503, ``cut_first[name]`` requests send only
    ``cut_bytes`` of the body before closing, ``slow[name]`` seconds pass before an answer."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.fail_first: dict[str, int] = {}
        self.cut_first: dict[str, int] = {}
        self.slow: dict[str, float] = {}
        self.cut_bytes = 1000
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                time.sleep(server.slow.get(name, 0))
                if server.fail_first.get(name, 0) > 0:
                    server.fail_first[name] -= 1
                    return self.send_error(503, "busy")
                if name not in server.files:
                    return self.send_error(404)
                body, start = server.files[name], 0
                if (wanted := self.headers.get("Range")) is not None:
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if server.cut_first.get(name, 0) > 0:
                    server.cut_first[name] -= 1
                    self.wfile.write(body[start : start + server.cut_bytes])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda *args: None  # clients that time out close on us
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
