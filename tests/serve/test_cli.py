"""`unetzoo serve` from the command line: it starts, answers, and refuses a name clash or a
bad flag in one line (exit 2) before opening a port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from unetzoo.cli import main

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("extra, words", [
    ([], "two models are named 'tiny'"),
    (["--max-queue", "0"], "--max-queue must be >= 1"),
    (["--port", "70000"], "--port must be in 1..65535"),
])
def test_a_clash_or_a_bad_flag_is_one_line(checkpoint: Path, capsys, extra: list[str],
                                           words: str) -> None:
    models = ["--model", str(checkpoint)] * (2 if not extra else 1)
    assert main(["serve", *models, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err


def test_the_command_serves_until_stopped(checkpoint: Path, images: Path,
                                          predicted) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(
        [sys.executable, "-m", "unetzoo", "serve", "--model", f"cells={checkpoint}",
         "--port", str(port), "--device", "cpu", "--precision", "fp32", "--backend", "torch",
         "--no-access-log"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        path = images / "img_000.png"
        response = httpx.post(f"{url}/v1/models/cells/predict", timeout=60,
                              files={"image": (path.name, path.read_bytes())})
        assert response.status_code == 200
        assert httpx.get(f"{url}/v2/models/cells", timeout=10).json()["name"] == "cells"
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    assert "model 'cells': checkpoint" in out and f"127.0.0.1:{port}" in out
