"""Runs Debian's `prometheus` on 127.0.0.1 port 0 and prints `listening on PORT` once it says
which port it bound (its `msg="Listening on" address=127.0.0.1:PORT` log line).

Usage: prometheus_port0.py CONFIG_FILE DATA_DIR [extra prometheus flags…]
Prometheus dies with this wrapper (PR_SET_PDEATHSIG), so a test that kills the wrapper leaves
nothing behind.
"""

import ctypes
import re
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def main():
    config, data, *extra = sys.argv[1:]
    child = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            "--web.listen-address=127.0.0.1:0",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent,
    )
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    announced = False
    for line in child.stderr:
        match = re.search(r'msg="Listening on" address=\S*:(\d+)', line)
        if match and not announced:
            print(f"listening on {match.group(1)}", flush=True)
            announced = True
    sys.exit(child.wait())


if __name__ == "__main__":
    main()
