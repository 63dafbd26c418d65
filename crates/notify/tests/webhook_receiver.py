"""A webhook receiver that checks Standard Webhooks signatures with the independent
`standardwebhooks` package (PyPI).

Usage: python webhook_receiver.py
Prints `listening on PORT`. Control:
  POST /control/secrets  body: JSON list of secrets the receiver holds
  POST /control/status   body: JSON number, the status to answer webhooks with (0: check them)
  GET  /log              the JSON list of webhooks received: path, id, signature header,
                         whether each held secret verified it (each on its own, as a receiver
                         holding only that secret would), and the body
Any other POST is a webhook: answered 204 when every held secret verifies it, else 401.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

STATE = {"secrets": [], "status": 0}
LOG = []
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body=b""):
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with LOCK:
            body = json.dumps(LOG).encode()
        self.reply(200, body)

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        if self.path == "/control/secrets":
            with LOCK:
                STATE["secrets"] = json.loads(body)
            return self.reply(204)
        if self.path == "/control/status":
            with LOCK:
                STATE["status"] = json.loads(body)
            return self.reply(204)
        headers = {k.lower(): v for k, v in self.headers.items()}
        with LOCK:
            secrets = list(STATE["secrets"])
            status = STATE["status"]
        verified = []
        for secret in secrets:
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
        if status:
            return self.reply(status)
        self.reply(204 if verified and all(verified) else 401)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("listening on %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
