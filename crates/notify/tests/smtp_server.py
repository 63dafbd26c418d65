"""An SMTP server for the notification tests: aiosmtpd on a port the system picks.

Prints `listening on PORT`, then writes each message it receives to DIR/N.eml (the raw
message as sent, after the DATA command) and its envelope to DIR/N.json.
Usage: python smtp_server.py DIR
"""

import asyncio
import json
import os
import socket
import sys

from aiosmtpd.smtp import SMTP


class Saver:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.folder, str(self.count))
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.replace(base + ".eml.tmp", base + ".eml")
        with open(base + ".json", "w") as f:
            json.dump({"from": envelope.mail_from, "to": envelope.rcpt_tos}, f)
        return "250 OK"


async def serve(folder):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    handler = Saver(folder)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="localhost"), sock=sock
    )
    print("listening on %d" % sock.getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main():
    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    asyncio.run(serve(folder))


if __name__ == "__main__":
    main()
