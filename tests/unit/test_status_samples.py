"""The status page's samples: stalls found and ended once each, rates, a bounded ring,
and the plots and summary drawn from them, escaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from cronstream.status import page, svg
from cronstream.status.model import JobStatus, LastRun, Partition, RunMark, Status
from cronstream.status.recent import empty_summary
from cronstream.status.samples import KEEP_SECONDS, Position, Samples
from cronstream.status.summary import finish

T0 = 1_800_000_000.0


def positions(checkpoints: dict[int, int | None], end: int) -> dict[tuple[str, int], Position]:
    return {("t", p): Position(c, 0, end) for p, c in checkpoints.items()}


def test_a_partition_with_lag_and_a_still_checkpoint_stalls_once_and_moves_once() -> None:
    samples = Samples(interval=5, stall_seconds=60)
    changes = []
    for i in range(20):  # partition 0 moves; partition 1 stands at 3 with lag
        changes += samples.add(T0 + 5 * i, positions({0: 10 * i, 1: 3}, 10 * i + 1))
    assert [(c.key, c.what) for c in changes] == [(("t", 1), "stalled")]
    assert changes[0].seconds == 60 and changes[0].checkpoint == 3
    assert samples.stalled() == {("t", 1): 95}
    moved = samples.add(T0 + 100, positions({0: 200, 1: 4}, 201))
    assert [(c.key, c.what) for c in moved] == [(("t", 1), "moved")]
    assert samples.stalled() == {}


def test_no_lag_is_never_a_stall_and_no_checkpoint_with_lag_is() -> None:
    samples = Samples(interval=1, stall_seconds=3)
    changes = []
    for i in range(10):
        changes += samples.add(
            T0 + i, {("t", 0): Position(7, 0, 8), ("t", 1): Position(None, 2, 9)}
        )
    assert [(c.key, c.what) for c in changes] == [(("t", 1), "stalled")]
    assert changes[0].lag == 7  # counted from the log start


def test_rates_and_lag_per_topic_and_over_the_last_minute() -> None:
    samples = Samples(interval=5, stall_seconds=60)
    assert samples.applied_per_s() is None
    for i in range(30):  # 20 records a second, the lag steady at 5
        samples.add(T0 + 5 * i, positions({0: 100 * i}, 100 * i + 6))
    history = samples.history()["t"]
    assert len(history) == 29
    assert all(p.applied_per_s == 20 and p.lag == 5 for p in history)
    assert samples.applied_per_s() == 20


def test_the_ring_keeps_an_hour() -> None:
    samples = Samples(interval=5, stall_seconds=60)
    for i in range(2000):
        samples.add(T0 + 5 * i, positions({0: i}, i + 1))
    assert len(samples.ring) == KEEP_SECONDS / 5 + 1


def hostile_status() -> Status:
    now = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
    topic = "<script>alert(1)</script>"
    status = Status(collected_at=now, consumer_group="g")
    status.partitions = [
        Partition("g", topic, 0, None, 0, 4, 4),
        Partition("g", topic, 1, 3, 0, 9, 5),
        Partition("other<b>", topic, 0, 3, 0, 9, 5),
    ]
    samples = Samples(interval=5, stall_seconds=10)
    for i in range(5):
        samples.add(now.timestamp() - 20 + 5 * i, {(topic, 0): Position(None, 0, 4)})
    status.jobs = [
        JobStatus(
            "<i>job</i>",
            "* * * * *",
            "UTC",
            True,
            LastRun("failed", now, 0, 0, 1.0, "<img src=x>"),
            now,
        )
    ]
    status.runs = {"<i>job</i>": [RunMark("failed", now - timedelta(minutes=1), 1.5)]}
    status.dead_letters_per_minute = [(now - timedelta(minutes=2), 3)]
    status.summary = empty_summary()
    finish(status, samples, ["engine: <b>not assigned</b>"])
    return status


def test_summary_says_what_is_wrong() -> None:
    status = hostile_status()
    assert status.summary is not None
    line = status.summary.line()
    assert line.startswith("NOT READY (engine: <b>not assigned</b>)")
    assert "lag 9 (1 stalled)" in line and "jobs failing: <i>job</i>" in line
    assert [g.consumer for g in status.groups] == ["other<b>"]
    assert status.partitions[0].notes == ["no checkpoint", "stalled 20s"]


def test_the_page_escapes_every_text_and_has_no_script() -> None:
    html = page.render(hostile_status())
    assert "<script" not in html and "<img" not in html and "<i>" not in html
    assert "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;: lag" in html
    assert 'class="stalled"' in html and "no checkpoint, stalled 20s" in html
    assert '<a href="/status.json">' in html
    assert re.search(r'data-points="4"', html)  # 5 samples, a point after the first
    assert "<title>failed 2026-12-03T05:59:00+00:00, 1.5s</title>" in html


def test_a_plot_spans_its_samples_at_least_five_minutes_at_most_the_hour() -> None:
    assert svg.span(T0 - 30, T0) == svg.MIN_SPAN
    assert svg.span(T0 - 1200, T0) == 1200
    assert svg.span(T0 - 9000, T0) == svg.HOUR
    drawn = svg.line("p", "x", [(T0 - 7200, 1.0), (T0 - 60, 2.0), (T0, 3.0)], T0)
    assert 'data-points="2"' in drawn  # older than the hour: left out


def test_without_checkpoint_the_group_starts_at_kafkas_committed_offset() -> None:
    assert Position(None, 2, 9).lag == 7
    assert Position(None, 2, 9, committed=8).lag == 1
    assert Position(None, 2, 9, committed=0).lag == 7  # deleted since: the log start
    assert Position(4, 2, 9, committed=8).lag == 4  # the checkpoint decides
