"""A webhook receiver that checks Standard Webhooks signatures with the independent
`standardwebhooks` package (PyPI).

Usage: python webhook_receiver.py SECRET [SECRET…]
Prints `listening on PORT`; answers POST with 204 when the signature verifies with every
secret given (each checked on its own, as a receiver holding only that secret would), 401
otherwise. `POST /status/CODE` answers CODE without checking (to make failures). `GET /log`
returns the JSON list of what was received: id, whether each secret verified, the body.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

SECRETS = sys.argv[1:]
LOG = []
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        with LOCK:
            body = json.dumps(LOG).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified = []
        for secret in SECRETS:
            try:
                Webhook(secret).verify(body, headers)
                verified.append(True)
            except Exception:
                verified.append(False)
        with LOCK:
            LOG.append({
                "path": self.path,
                "id": headers.get("webhook-id"),
                "signature": headers.get("webhook-signature"),
                "verified": verified,
                "body": body.decode("utf-8", "replace"),
            })
        if self.path.startswith("/status/"):
            code = int(self.path.rsplit("/", 1)[1])
        else:
            code = 204 if verified and all(verified) else 401
        self.send_response(code)
        self.send_header("content-length", "0")
        self.end_headers()


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("listening on %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
