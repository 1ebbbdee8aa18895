"""The crypto benchmark still runs end to end (tiny sizes; figures are not asserted)."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_bench_prints_every_figure():
    done = subprocess.run(
        [sys.executable, "-m", "bench.crypto", "--fields", "2000", "--kdf", "min"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    names = {line.split(":")[0] for line in done.stdout.splitlines()}
    assert {"unlock", "seal", "open", "sealed_box_open_cost", "peak_memory"} <= names
