"""Pipeline workers exit by themselves when the main process is killed (no orphans holding decoded videos)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

MAIN = textwrap.dedent("""
    import os, signal
    from adamml_core.engine.inference.pipeline.pool import ProcessPool
    pool = ProcessPool(None, {}, 2, start_method="fork")
    print(" ".join(str(p.pid) for p in pool.processes), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # as `kill -9` or the out-of-memory killer: no cleanup runs
""")


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited (only its parent's wait is missing)


def test_workers_exit_when_the_main_process_is_killed():
    # the workers inherit stdout: read the one line, never wait for the pipe to close
    main = subprocess.Popen([sys.executable, "-c", MAIN], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    pids = [int(p) for p in main.stdout.readline().split()]
    main.wait(timeout=120)
    main.stdout.close()
    assert len(pids) == 2
    deadline = time.monotonic() + 15
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [p for p in pids if running(p)]
    for p in alive:  # do not leave them behind when the test fails
        subprocess.run(["kill", str(p)], check=False)
    assert not alive, f"workers {alive} outlived their main process"
