"""moto's AWS server (SNS, SES…) on a port the system picks; prints `listening on PORT`."""

import time

from moto.server import ThreadedMotoServer


def main():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print("listening on %d" % server._server.server_port, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
