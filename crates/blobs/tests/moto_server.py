"""moto's AWS emulator (S3, KMS, ...) on a port it binds itself: prints `listening on PORT`."""
import logging
import time

from moto.server import ThreadedMotoServer

logging.getLogger("werkzeug").setLevel(logging.WARNING)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(f"listening on {server.get_host_and_port()[1]}", flush=True)
while True:
    time.sleep(3600)
