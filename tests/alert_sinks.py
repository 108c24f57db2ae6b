"""Where alert notices land in tests: a local webhook (http.server) and a local SMTP server
(aiosmtpd), both on 127.0.0.1, keeping what they got. Imported as a top-level module
(``tests/`` is on ``sys.path``, like polling.py)."""

import email
import email.policy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Webhook:
    """Every POST kept (headers and raw body), answered ``status``."""

    def __init__(self, status=204):
        self.posts = []
        self.status = status
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.posts.append((dict(self.headers), body))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self):
        return [json.loads(body) for _, body in self.posts]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class SmtpSink:
    """An SMTP server that accepts every message and keeps it (``messages``: parsed, with
    the envelope's recipients in ``rcpt``)."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        from headend.process import free_port

        self.messages = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                sink.messages.append((list(envelope.rcpt_tos), message))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self):
        self.controller.stop()
