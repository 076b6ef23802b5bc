"""`sailvl eval` against `sailvl serve` with a tiny random model, both as the processes a user runs: it completes,
every score lies in [0, 100], and a rerun asks nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sailvl.model.build import build_preset
from sailvl.model.checkpoint import export_checkpoint
from tests.eval_files import write_spec

SHAPES = ("shapes_caption", "shapes_vqa", "shapes_count", "shapes_ocr", "shapes_pope")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_eval_against_sailvl_serve(tmp_path: Path) -> None:
    checkpoint = export_checkpoint(build_preset("tiny", seed=0), tmp_path / "tiny")
    port = _free_port()
    serve = ["serve", "--model", str(checkpoint), "--port", str(port), "--served-model-name", "model"]
    server = subprocess.Popen(
        [sys.executable, "-m", "sailvl", *serve],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "sailvl serve did not come up"
                time.sleep(0.2)
        out = tmp_path / "out"
        spec = write_spec(
            tmp_path,
            SHAPES,
            "synthetic://shapes?n=2&seed=1",
            maxTiles=2,
            overrides={"shapes_caption": {"limit": 1}},
            workers={"concurrency": 4},
            output={"uri": str(out)},
        )
        env = {
            **os.environ,
            "SAILVL_MODEL_URL_MODEL": f"http://127.0.0.1:{port}/v1",
            "SAILVL_TERMINATION_LOG": str(tmp_path / "termination"),
        }
        command = [sys.executable, "-m", "sailvl", "eval", "--spec", str(spec)]
        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert first.returncode == 0, first.stderr
        message = json.loads((tmp_path / "termination").read_text())
        assert set(message["results"]) == set(SHAPES)
        assert all(0.0 <= score <= 100.0 for score in message["results"].values())
        assert 0.0 <= message["average"] <= 100.0
        assert json.loads((out / "results.json").read_text())["counts"] == {"benchmarks": 5, "items": 9}
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        assert again.stderr.count("answered before, 0 to ask") == 5
        assert json.loads((tmp_path / "termination").read_text()) == message
    finally:
        server.terminate()
        server.wait(30)
