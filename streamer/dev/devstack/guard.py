"""``python -m streamer.dev.devstack.guard CMD…``: run CMD; take its process group down with it.

The kernel's parent-death signal (``PR_SET_PDEATHSIG``) reaches only the process that set
it, not that process's children. A server that forks workers (``mlflow server`` starts
uvicorn, which starts more) would therefore outlive a test run killed with SIGKILL. The
guard is the direct child instead: it gets SIGTERM when its parent dies, and then stops
every process of its group (the server and all it forked), so nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import FrameType

from streamer.dev.devstack.processes import stop_group


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m streamer.dev.devstack.guard CMD [ARG…]", file=sys.stderr)
        return 2
    child = subprocess.Popen(argv)  # stays in the guard's session and process group

    def shutdown(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group signal reaches us too
        stop_group(os.getpgrp(), grace=10.0, spare=os.getpid(), reap=child.poll)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
