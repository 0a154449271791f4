"""A small real program the launcher tests run instead of a Spark application.

``toy_app.py run SECONDS`` prints a line and runs until SIGTERM (exit 0) or SECONDS pass;
``toy_app.py fail CODE`` exits at once with CODE.
"""

from __future__ import annotations

import signal
import sys
import time


def main() -> int:
    mode, value = sys.argv[1], sys.argv[2]
    if mode == "fail":
        print("toy app: failing on purpose", flush=True)
        return int(value)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print("toy app: running", flush=True)
    deadline = time.monotonic() + float(value)
    while not stop and time.monotonic() < deadline:
        time.sleep(0.05)
    print("toy app: stopping cleanly", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
