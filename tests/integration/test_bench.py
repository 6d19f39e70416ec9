"""`make bench --quick`: every arm runs and the result has its shape (never a speed)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.integration.workers import ROOT

ARMS = [
    "raw_produce",
    "publish",
    "raw_read",
    "handwritten",
    "cronstream_batch",
    "cronstream_faust",
    "faust_agent",
    "two_workers",
    "debezium",
    "envelope_external",
    "scan_emit",
]
# Arms whose measured processes are cronstream's own: their peak RSS is shown too.
WORKER_ARMS = [
    "cronstream_batch",
    "cronstream_faust",
    "two_workers",
    "debezium",
    "envelope_external",
]
SHAPE = {"events_per_s", "elapsed_s", "cpu_s", "cpu_us_per_event"}
RATIOS = [
    "batch_vs_handwritten",
    "batch_vs_faust_agent",
    "batch_vs_raw_read",
    "faust_engine_vs_handwritten",
    "two_workers_vs_one",
    "debezium_vs_envelope",
    "external_vs_sync_topic",
    "publish_vs_raw_produce",
]


def test_quick_bench_prints_every_arm_and_ratio_as_its_last_line(cli_env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick"],
        env=cli_env | {"PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for arm in ARMS:
        assert set(result[arm]) - {"peak_rss_mb"} == SHAPE, arm
    for arm in WORKER_ARMS:
        assert result[arm]["peak_rss_mb"] > 0, arm
    for name in RATIOS:
        assert isinstance(result[name], float | int), name
    # The key consumer arms again on a larger topic, and on wide payloads.
    for variant, arms in [
        ("large", ["raw_read", "handwritten", "cronstream_batch"]),
        ("wide", ["handwritten", "cronstream_batch"]),
    ]:
        assert result[variant]["events"] > 0
        for arm in arms:
            assert set(result[variant][arm]) - {"peak_rss_mb"} == SHAPE, (variant, arm)
        assert result[variant]["cronstream_batch"]["peak_rss_mb"] > 0
        assert isinstance(result[variant]["batch_vs_handwritten"], float | int), variant
    # --processes 2 runs where the worker offers it, and says why not where it does not.
    parallel = result["processes_2"]
    assert set(parallel) == {"skipped"} or set(parallel) == SHAPE | {"peak_rss_mb"}, parallel
    assert set(result["decode_us_per_record"]) == {"envelope", "debezium"}
    assert result["wall_s"] > 0
    assert set(result["e2e_latency_ms"]) == {"p50", "p99", "events"}
    assert result["e2e_latency_ms"]["events"] > 0
    assert result["recovery_s"] > 0
    assert result["recovery_static_s"] > 0
