"""bench/api_overhead.py with a few requests, so the benchmark cannot rot (never timed here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_api_overhead_benchmark_prints_its_figures():
    bench = Path(__file__).resolve().parent.parent / "bench" / "api_overhead.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--requests", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(figures) == [
        "bench",
        "requests",
        "django_req_per_s",
        "drf_req_per_s",
        "ninja_req_per_s",
        "drf_ratio",
        "ninja_ratio",
    ]
    assert all(figures[key] > 0 for key in list(figures)[2:])
