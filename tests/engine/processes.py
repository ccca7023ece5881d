"""Run unetzoo in child processes for the tests: plain, under torchrun, with faults
injected by train_harness.py. Every wait has a deadline, so nothing can hang the suite."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).with_name("train_harness.py")
DEADLINE = 120  # seconds for any one child process


def child_env(**harness: object) -> dict[str, str]:
    """This environment plus the source tree on PYTHONPATH, one thread, and `harness`
    settings (HARNESS_<KEY>)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env["OMP_NUM_THREADS"] = "1"
    env.update({f"HARNESS_{k.upper()}": str(v) for k, v in harness.items()})
    return env


def start(argv: Sequence[object], **harness: object) -> subprocess.Popen:
    """`unetzoo ARGV` through the harness, in its own process group."""
    return subprocess.Popen([sys.executable, str(HARNESS), *map(str, argv)],
                            env=child_env(**harness), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def torchrun(launcher: Sequence[object], argv: Sequence[object], **harness: object
             ) -> subprocess.Popen:
    """`torchrun LAUNCHER train_harness.py ARGV` in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", *map(str, launcher), str(HARNESS),
         *map(str, argv)], env=child_env(**harness), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(process: subprocess.Popen, timeout: float = DEADLINE) -> tuple[int, str, str]:
    """Wait for the exit code and output; kill the whole group past the deadline."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"timed out after {timeout} s\n{out}\n{err}") from None
    return process.returncode, out, err


def wait_for(path: Path, process: subprocess.Popen, timeout: float = DEADLINE) -> None:
    """Wait until `path` exists (the harness paused) while `process` still runs."""
    end = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > end:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            code, out, err = finish(process)
            raise AssertionError(f"{path.name} never appeared (exit {code})\n{out}\n{err}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
