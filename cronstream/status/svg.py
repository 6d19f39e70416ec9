"""Plots as inline SVG, drawn on the server: no script, nothing loaded from elsewhere.

A line over the last hour (applied events/s, lag), bars per minute (dead letters) and a
strip of a job's newest runs. Every text is escaped (topic and job names come from
outside); each mark carries a <title>, which the browser shows on hover.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from cronstream.status.model import RunMark

WIDTH, HEIGHT = 360, 90
LEFT, BOTTOM = 4, 14  # room for the axis labels
HOUR = 3600.0
MIN_SPAN = 300.0
RUN_COLOURS = {"succeeded": "#2a7", "failed": "#c33", "skipped": "#bbb", "running": "#58c"}
CELL = 14  # a run's square in a strip, with its gap


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 100 or value == int(value) else f"{value:.1f}"


def _frame(plot_id: str, label: str, top: float, seconds: float, body: str) -> str:
    """The SVG around a plot: its label and largest value, the time axis."""
    bottom = HEIGHT - BOTTOM
    return (
        f'<svg class="plot" id="{escape(plot_id)}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img"><title>{escape(label)}</title>'
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH}" y2="{bottom}" stroke="#999"/>'
        f'<text x="{LEFT}" y="10" font-size="10">{escape(label)} (max {_number(top)})</text>'
        f'<text x="{LEFT}" y="{HEIGHT - 2}" font-size="9" fill="#777">'
        f"-{seconds / 60:.0f} min</text>"
        f'<text x="{WIDTH - 2}" y="{HEIGHT - 2}" font-size="9" fill="#777" '
        f'text-anchor="end">now</text>{body}</svg>'
    )


def span(oldest: float | None, now: float) -> float:
    """Seconds the time axis covers: back to the oldest sample, at least 5 minutes (a
    process that just started is not a sliver at the right), at most the hour."""
    return min(max(now - oldest, MIN_SPAN) if oldest is not None else HOUR, HOUR)


def _x(at: float, now: float, seconds: float) -> float:
    return LEFT + (WIDTH - LEFT) * max(0.0, 1 - (now - at) / seconds)


def _y(value: float, top: float) -> float:
    return (HEIGHT - BOTTOM) - (HEIGHT - BOTTOM - 14) * (value / top)


def line(plot_id: str, label: str, points: Sequence[tuple[float, float]], now: float) -> str:
    """`points` (Unix seconds, value) of the last hour as a line ending at `now`."""
    shown = [(at, value) for at, value in points if now - at <= HOUR]
    seconds = span(shown[0][0] if shown else None, now)
    top = max([value for _, value in shown] + [1.0])
    drawn = " ".join(f"{_x(at, now, seconds):.1f},{_y(value, top):.1f}" for at, value in shown)
    body = (
        f'<polyline class="data" data-points="{len(shown)}" fill="none" stroke="#36c" '
        f'stroke-width="1.5" points="{drawn}"/>'
    )
    return _frame(plot_id, label, top, seconds, body)


def bars(plot_id: str, label: str, counts: Sequence[tuple[datetime, int]], now: float) -> str:
    """A bar per minute of the last hour; each says its minute and count on hover."""
    top = max([n for _, n in counts] + [1])
    width = (WIDTH - LEFT) / 60
    rects = []
    for minute, n in counts:
        x = _x(minute.timestamp() + 60, now, HOUR) - width
        y = _y(n, top)
        tip = f"{minute.isoformat(timespec='minutes')}: {n}"
        rects.append(
            f'<rect class="data" x="{max(x, LEFT):.1f}" y="{y:.1f}" width="{width:.1f}" '
            f'height="{HEIGHT - BOTTOM - y:.1f}" fill="#c33"><title>{escape(tip)}</title></rect>'
        )
    return _frame(plot_id, label, top, HOUR, "".join(rects))


def strip(plot_id: str, runs: Sequence[RunMark]) -> str:
    """A job's runs, oldest first, a square each coloured by status."""
    cells = []
    for i, run in enumerate(runs):
        took = "" if run.duration_s is None else f", {run.duration_s:.1f}s"
        tip = f"{run.status} {run.scheduled_for.isoformat(timespec='seconds')}{took}"
        colour = RUN_COLOURS.get(run.status, "#000")
        cells.append(
            f'<rect class="data run-{escape(run.status)}" x="{i * CELL}" y="1" width="12" '
            f'height="12" fill="{colour}"><title>{escape(tip)}</title></rect>'
        )
    width = max(len(runs), 1) * CELL
    return (
        f'<svg class="strip" id="{escape(plot_id)}" width="{width}" height="14" '
        f'viewBox="0 0 {width} 14" role="img">{"".join(cells)}</svg>'
    )
