"""Run unetzoo in child processes for the tests: plain, under torchrun, with faults
injected by train_harness.py. Every wait has a deadline, so nothing can hang the suite."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
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


def _popen(command: Sequence[object], env: dict[str, str]) -> subprocess.Popen:
    # Output goes to files, not pipes: a stray grandchild cannot keep a wait from ending.
    outputs = (tempfile.TemporaryFile(), tempfile.TemporaryFile())  # noqa: SIM115
    process = subprocess.Popen([*map(str, command)], env=env, start_new_session=True,
                               stdout=outputs[0], stderr=outputs[1])
    process.outputs = outputs  # type: ignore[attr-defined]
    return process


def start(argv: Sequence[object], **harness: object) -> subprocess.Popen:
    """`unetzoo ARGV` through the harness, in its own process group."""
    return _popen([sys.executable, HARNESS, *argv], child_env(**harness))


def start_and_kill(argv: Sequence[object], marker: Path, **harness: object) -> None:
    """Start `unetzoo ARGV`, wait until the harness pauses it (it touches `marker`), then
    SIGKILL its whole process group."""
    process = start(argv, marker=marker, **harness)
    wait_for(marker, process)
    os.killpg(process.pid, signal.SIGKILL)
    finish(process)


def torchrun(launcher: Sequence[object], argv: Sequence[object],
             program: Sequence[object] = (HARNESS,), **harness: object) -> subprocess.Popen:
    """`torchrun LAUNCHER PROGRAM ARGV` in its own process group; PROGRAM is the harness
    unless given (e.g. `-m unetzoo`, or `--no-python unetzoo` for the installed command)."""
    return _popen([sys.executable, "-m", "torch.distributed.run", *launcher, *program, *argv],
                  child_env(**harness))


def descendants(pid: int) -> list[int]:
    """Every process started by `pid`, however deep (torchrun puts its workers in
    sessions of their own, so they are not in its process group)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(process: subprocess.Popen) -> None:
    for pid in [*descendants(process.pid), process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def finish(process: subprocess.Popen, timeout: float = DEADLINE) -> tuple[int, str, str]:
    """Wait for the exit code and output; past the deadline kill the child and everything
    it started, and fail."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(process)
        process.wait()
        out, err = (_read(fh) for fh in process.outputs)  # type: ignore[attr-defined]
        raise AssertionError(f"timed out after {timeout} s\n{out}\n{err}") from None
    out, err = (_read(fh) for fh in process.outputs)  # type: ignore[attr-defined]
    return process.returncode, out, err


def _read(fh) -> str:
    fh.seek(0)
    text = fh.read().decode("utf-8", "replace")
    fh.close()
    return text


def wait_for(path: Path, process: subprocess.Popen, timeout: float = DEADLINE) -> None:
    """Wait until `path` exists (the harness paused) while `process` still runs."""
    end = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > end:
            if process.poll() is None:
                kill_tree(process)
            code, out, err = finish(process)
            raise AssertionError(f"{path.name} never appeared (exit {code})\n{out}\n{err}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
