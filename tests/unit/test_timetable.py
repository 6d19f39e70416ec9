"""The cron timetable driven by a fake clock: misfires after a pause, overlap, jitter."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from croniter import croniter

import cronstream.schedulers.cron
from cronstream.schedulers.cron import CronError, Schedule
from cronstream.schedulers.jobs import Job, MisfirePolicy
from cronstream.schedulers.timetable import Timetable, plan_ticks

START = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        self.current = max(self.current, when)

    def advance(self, delta: timedelta) -> None:
        self.current += delta


def job(policy: MisfirePolicy = "once", expression: str = "*/15 * * * *", **kw: object) -> Job:
    return Job(name="j", schedule=Schedule(expression, "UTC"), misfire_policy=policy, **kw)  # type: ignore[arg-type]


def test_on_time_ticks_run() -> None:
    ticks = plan_ticks(job(), START, START + timedelta(minutes=15, seconds=5))
    assert ticks.run == [START + timedelta(minutes=15)]
    assert ticks.misfired is None


def test_three_hour_pause_skip_runs_nothing_missed() -> None:
    ticks = plan_ticks(job("skip"), START, START + timedelta(hours=3, seconds=5))
    assert ticks.run == [START + timedelta(hours=3)]  # the last tick is still within grace
    assert ticks.misfired == (START + timedelta(minutes=15), START + timedelta(hours=2, minutes=45))


def test_three_hour_pause_once_coalesces_into_one_run() -> None:
    ticks = plan_ticks(job("once"), START, START + timedelta(hours=3, minutes=5))
    assert ticks.run == [START + timedelta(hours=3)]
    assert ticks.misfired == (START + timedelta(minutes=15), START + timedelta(hours=2, minutes=45))


def test_three_hour_pause_all_catches_up_bounded() -> None:
    ticks = plan_ticks(job("all", max_catchup=5), START, START + timedelta(hours=3, minutes=5))
    assert ticks.run == [START + timedelta(minutes=15 * n) for n in range(8, 13)]
    assert ticks.misfired == (START + timedelta(minutes=15), START + timedelta(minutes=15 * 7))
    everything = plan_ticks(
        job("all", max_catchup=100), START, START + timedelta(hours=3, minutes=5)
    )
    assert len(everything.run) == 12 and everything.misfired is None


def test_grace_decides_what_is_late() -> None:
    generous = job("skip", misfire_grace=timedelta(hours=1))
    ticks = plan_ticks(generous, START, START + timedelta(hours=3, minutes=5))
    assert ticks.run == [START + timedelta(minutes=15 * n) for n in range(9, 13)]
    assert ticks.misfired == (START + timedelta(minutes=15), START + timedelta(minutes=15 * 8))


class CountingCroniter(croniter):  # type: ignore[misc]
    steps = 0

    def get_next(self, *args: object, **kwargs: object) -> object:
        CountingCroniter.steps += 1
        return super().get_next(*args, **kwargs)


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[CountingCroniter]]:
    """Counts the schedule's steps: the cost of planning, measured without a clock."""
    monkeypatch.setattr(cronstream.schedulers.cron, "croniter", CountingCroniter)
    CountingCroniter.steps = 0
    yield CountingCroniter


MONTH = timedelta(days=30)


@pytest.mark.parametrize(
    ("policy", "max_catchup", "expected"),
    [
        ("skip", 10, [START - timedelta(seconds=n) for n in range(9, -1, -1)]),  # within grace
        ("once", 10, [START]),
        ("all", 10, [START - timedelta(seconds=n) for n in range(9, -1, -1)]),
        ("all", 3, [START - timedelta(seconds=2), START - timedelta(seconds=1), START]),
    ],
)
def test_a_per_second_job_resuming_after_30_days_plans_in_bounded_steps(
    steps: type[CountingCroniter],
    policy: MisfirePolicy,
    max_catchup: int,
    expected: list[datetime],
) -> None:
    every_second = job(policy, "* * * * * *", max_catchup=max_catchup)
    ticks = plan_ticks(every_second, START - MONTH, START)
    assert ticks.run == expected
    assert ticks.misfired is not None
    assert ticks.misfired[0] == START - MONTH + timedelta(seconds=1)
    assert ticks.misfired[1] == expected[0] - timedelta(seconds=1)
    # 2.6 million missed ticks; walking them would take 2.6 million steps.
    assert steps.steps < 100 + 5 * max_catchup, steps.steps


def test_skip_with_nothing_on_time_runs_nothing_after_30_days(
    steps: type[CountingCroniter],
) -> None:
    hourly = job("skip", "0 * * * *")
    ticks = plan_ticks(hourly, START - MONTH, START + timedelta(minutes=30))
    assert ticks.run == []
    assert ticks.misfired == (START - MONTH + timedelta(hours=1), START)
    assert steps.steps < 100, steps.steps


class Recorder:
    def __init__(self) -> None:
        self.started: list[datetime] = []
        self.skipped: list[tuple[datetime, str]] = []
        self.release = asyncio.Event()

    async def run(self, job: Job, tick: datetime) -> None:
        self.started.append(tick)
        await self.release.wait()

    async def skip(self, job: Job, tick: datetime, reason: str) -> None:
        self.skipped.append((tick, reason))


async def test_a_tick_finding_the_previous_run_going_is_skipped_with_the_reason() -> None:
    clock = FakeClock(START)
    recorder = Recorder()
    timetable = Timetable(clock, recorder.run, recorder.skip)
    timetable.set_jobs([job()])
    clock.advance(timedelta(minutes=15))
    await timetable.step()
    await asyncio.sleep(0)
    clock.advance(timedelta(minutes=15))
    await timetable.step()
    assert recorder.started == [START + timedelta(minutes=15)]
    assert recorder.skipped == [(START + timedelta(minutes=30), "previous run still running")]
    recorder.release.set()
    await timetable.drain(5)
    clock.advance(timedelta(minutes=15))
    await timetable.step()
    await asyncio.sleep(0)
    assert recorder.started[-1] == START + timedelta(minutes=45)
    await timetable.drain(5)


async def test_step_returns_the_next_due_time_and_resumes_after_a_pause() -> None:
    clock = FakeClock(START)
    recorder = Recorder()
    recorder.release.set()
    timetable = Timetable(clock, recorder.run, recorder.skip)
    timetable.set_jobs([job("once")], resume_from={"j": START - timedelta(hours=3)})
    wake = await timetable.step()
    await timetable.drain(5)
    assert recorder.started == [START]  # 12 missed ticks coalesced into the latest
    assert wake == START + timedelta(minutes=15)


async def test_jitter_delays_the_run_deterministically() -> None:
    jittery = job(jitter=timedelta(seconds=30))
    tick = START + timedelta(minutes=15)
    delay = jittery.jitter_for(tick)
    assert timedelta(0) <= delay < timedelta(seconds=30)
    assert delay == jittery.jitter_for(tick)
    assert job().jitter_for(tick) == timedelta(0)


def test_disabled_jobs_are_not_scheduled() -> None:
    timetable = Timetable(FakeClock(START), Recorder().run, Recorder().skip)
    timetable.set_jobs([job(enabled=False)])
    assert timetable.jobs == {}


async def test_catch_up_runs_every_tick_in_order_without_calling_them_overlaps() -> None:
    clock = FakeClock(START)
    recorder = Recorder()
    recorder.release.set()
    timetable = Timetable(clock, recorder.run, recorder.skip)
    timetable.set_jobs([job("all", max_catchup=3)], resume_from={"j": START - timedelta(hours=1)})
    await timetable.step()
    await timetable.drain(5)
    assert recorder.started == [START - timedelta(minutes=30), START - timedelta(minutes=15), START]
    assert recorder.skipped == []


async def test_a_changed_schedule_starts_now_without_misfires() -> None:
    clock = FakeClock(START)
    recorder = Recorder()
    recorder.release.set()
    timetable = Timetable(clock, recorder.run, recorder.skip)
    timetable.set_jobs([job("all", max_catchup=100)])
    clock.advance(timedelta(hours=2))
    timetable.set_jobs([job("all", expression="*/5 * * * *", max_catchup=100)])
    await timetable.step()
    assert recorder.started == []  # the two hours under the old schedule are not owed
    clock.advance(timedelta(minutes=5))
    await timetable.step()
    await timetable.drain(5)
    assert recorder.started == [START + timedelta(hours=2, minutes=5)]


class Unschedulable(Schedule):
    """A schedule that fails at run time, as a croniter bug or an unforeseen date would."""

    def next_after(self, after: datetime) -> datetime:
        if after < START:  # let validation pass
            return super().next_after(after)
        raise CronError("no fire time, for this test")


async def test_a_job_whose_schedule_fails_is_reported_once_and_the_others_run() -> None:
    clock = FakeClock(START)
    recorder = Recorder()
    recorder.release.set()
    reported: list[tuple[str, datetime, str]] = []

    async def report(job: Job, when: datetime, reason: str) -> None:
        reported.append((job.name, when, reason))

    timetable = Timetable(clock, recorder.run, recorder.skip, report)
    broken = Job(name="broken", schedule=Unschedulable("* * * * *"))
    timetable.set_jobs([broken, job()])
    for _ in range(3):
        clock.advance(timedelta(minutes=15))
        assert await timetable.step() == clock.now() + timedelta(minutes=15)
        await timetable.drain(5)
    assert recorder.started == [START + timedelta(minutes=15 * n) for n in (1, 2, 3)]
    assert reported == [
        (
            "broken",
            START + timedelta(minutes=15),
            "cannot be scheduled: no fire time, for this test",
        )
    ]
    # A changed definition gets another chance (and is reported again if still broken).
    timetable.set_jobs([Job(name="broken", schedule=Unschedulable("0 * * * *")), job()])
    await timetable.step()
    assert len(reported) == 2 and "broken" in timetable.broken
    timetable.set_jobs([Job(name="broken", schedule=Schedule("0 * * * *")), job()])
    assert "broken" not in timetable.broken
