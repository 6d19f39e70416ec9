"""The status model as the page at GET /: server-rendered HTML that refreshes itself
every 5 s. At the top the summary line, then plots (svg.py), this worker's group's
partitions (every one, stalled and unchecked first noted), the other consumers in a line
each, dead letters and jobs. Its data is /status.json.

Every value is escaped: topic names, job errors and dead-letter errors come from
outside. No JavaScript at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from html import escape

from cronstream.status import svg
from cronstream.status.model import JobStatus, Partition, Status

REFRESH_SECONDS = 5

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; } td, th { padding: 3px 10px; text-align: left; }
th { background: #eee; } tr:nth-child(even) td { background: #f7f7f7; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #b00; } .muted { color: #777; }
#summary { font-size: 1.05em; padding: 6px 10px; background: #eef3fb; border-radius: 4px; }
#summary.not-ready { background: #fbecec; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; } svg.plot { background: #fafafa; }
tr.stalled td { background: #fde8e8; } tr.unchecked td { background: #fff6dd; }
"""


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def _row(cells: Iterable[object], numeric: Iterable[int] = ()) -> str:
    right = set(numeric)
    return (
        "<tr>"
        + "".join(
            f'<td class="n">{escape(_text(cell))}</td>'
            if i in right
            else f"<td>{escape(_text(cell))}</td>"
            for i, cell in enumerate(cells)
        )
        + "</tr>"
    )


def _table(caption_id: str, headers: list[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="muted" id="{caption_id}">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f'<table id="{caption_id}"><tr>{head}</tr>{"".join(rows)}</table>'


def _partition(p: Partition) -> str:
    row = _row(
        [p.topic, p.partition, p.checkpoint, p.log_end, p.lag, ", ".join(p.notes)],
        numeric=(1, 2, 3, 4),
    )
    kind = "stalled" if p.stalled_s is not None else "unchecked" if p.checkpoint is None else ""
    return row.replace("<tr>", f'<tr class="{kind}">', 1) if kind else row


def _plots(status: Status) -> str:
    now = status.collected_at.timestamp()
    plots = []
    for i, (topic, points) in enumerate(sorted(status.history.items())):
        applied = [(p.at, p.applied_per_s) for p in points]
        lag = [(p.at, float(p.lag)) for p in points]
        plots.append(svg.line(f"applied-{i}", f"{topic}: applied events/s", applied, now))
        plots.append(svg.line(f"lag-{i}", f"{topic}: lag", lag, now))
    if not plots:
        plots.append('<p class="muted">no samples in this process yet</p>')
    plots.append(
        svg.bars("dead-letters-per-minute", "dead letters per minute",
                 status.dead_letters_per_minute, now)
    )  # fmt: skip
    return f'<div class="plots">{"".join(plots)}</div>'


def _strips(status: Status) -> str:
    rows = [
        f"<tr><td>{escape(name)}</td><td>{svg.strip(f'runs-{i}', runs)}</td></tr>"
        for i, (name, runs) in enumerate(sorted(status.runs.items()))
    ]
    head = "<tr><th>job</th><th>last 20 runs, oldest first</th></tr>"
    return f'<table id="runs">{head}{"".join(rows)}</table>' if rows else ""


def _job(job: JobStatus) -> str:
    last_text = job.last_run.describe() if job.last_run is not None else "-"
    upcoming = job.next_run if job.enabled else "disabled"
    return _row([job.name, job.schedule, job.timezone, last_text, upcoming, job.problem or ""])


def render(status: Status) -> str:
    """The whole page for one collected status."""
    problems = "".join(
        f'<p class="bad">{escape(name)} unreachable: {escape(reason)}</p>'
        for name, reason in sorted(status.unreachable.items())
    )
    if status.jobs_error:
        problems += f'<p class="bad">jobs file: {escape(status.jobs_error)}</p>'
    partitions = _table(
        "partitions",
        ["topic", "partition", "checkpoint", "log end", "lag", "note"],
        [_partition(p) for p in status.own_partitions],
        "no partitions known",
    )
    groups = _table(
        "other-consumers",
        ["consumer", "partitions", "lag", "problems"],
        [_row([g.consumer, g.partitions, g.lag, g.problems], (1, 2, 3)) for g in status.groups],
        "no other consumers",
    )
    summary = status.summary
    line = escape(summary.line()) if summary is not None else "-"
    not_ready = ' class="not-ready"' if summary is not None and summary.ready is False else ""
    counts = _table(
        "dead-letter-counts",
        ["topic", "dead letters", "last hour"],
        [_row([c.topic, c.total, c.last_hour], (1, 2)) for c in status.dead_letter_counts],
        "no dead letters",
    )
    reasons = _table(
        "unresolved-by-reason",
        ["topic", "reason", "unresolved", "last seen"],
        [
            _row([r.topic, r.reason, r.unresolved, r.last_seen], (2,))
            for r in status.unresolved_by_reason
        ],
        "no unresolved dead letters",
    )
    jobs = _table(
        "jobs",
        ["job", "schedule", "zone", "last run", "next run", "problem"],
        [_job(job) for job in status.jobs],
        "no jobs",
    )
    latest = _table(
        "dead-letters",
        ["when", "consumer", "topic", "partition", "offset", "attempts", "error"],
        [
            _row(
                [d.created_at, d.consumer, d.topic, d.partition, d.offset, d.attempts, d.error],
                (3, 4, 5),
            )
            for d in status.dead_letters
        ],
        "none",
    )
    leader = escape(status.leader) if status.leader else "none leads"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>cronstream status</title><style>{STYLE}</style></head>
<body>
<h1>cronstream status</h1>
<p id="summary"{not_ready}>{line}</p>
<p class="muted">collected {escape(_text(status.collected_at))}, refreshes every
{REFRESH_SECONDS} s; the same as JSON: <a href="/status.json">/status.json</a></p>
{problems}
<h2>Over the last hour</h2>
{_plots(status)}
<h2>Partitions of this worker's group, {escape(status.consumer_group)}</h2>
{partitions}
<h2>Other consumers</h2>
{groups}
<h2>Dead letters by topic</h2>
{counts}
<h2>Unresolved dead letters by reason</h2>
{reasons}
<h2>Jobs</h2>
<p id="leader">scheduler leader: {leader}</p>
{jobs}
{_strips(status)}
<h2>Latest dead letters</h2>
{latest}
</body></html>
"""
