"""The cron engine driven by a fake clock: misfires after a pause, overlap, jitter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from schedulers.cron import Schedule
from schedulers.engine import Engine, Job, MisfirePolicy, plan

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
    ticks = plan(job(), START, START + timedelta(minutes=15, seconds=5))
    assert ticks.run == [START + timedelta(minutes=15)]
    assert ticks.misfired == 0


def test_three_hour_pause_skip_runs_nothing_missed() -> None:
    ticks = plan(job("skip"), START, START + timedelta(hours=3, seconds=5))
    assert ticks.run == [START + timedelta(hours=3)]  # the last tick is still within grace
    assert ticks.misfired == 11


def test_three_hour_pause_once_coalesces_into_one_run() -> None:
    ticks = plan(job("once"), START, START + timedelta(hours=3, minutes=5))
    assert ticks.run == [START + timedelta(hours=3)]
    assert ticks.misfired == 11


def test_three_hour_pause_all_catches_up_bounded() -> None:
    ticks = plan(job("all", max_catchup=5), START, START + timedelta(hours=3, minutes=5))
    assert ticks.run == [START + timedelta(minutes=15 * n) for n in range(8, 13)]
    assert ticks.misfired == 7
    everything = plan(job("all", max_catchup=100), START, START + timedelta(hours=3, minutes=5))
    assert len(everything.run) == 12 and everything.misfired == 0


def test_grace_decides_what_is_late() -> None:
    generous = job("skip", misfire_grace=timedelta(hours=1))
    ticks = plan(generous, START, START + timedelta(hours=3, minutes=5))
    assert ticks.run == [START + timedelta(minutes=15 * n) for n in range(9, 13)]
    assert ticks.misfired == 8


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
    engine = Engine(clock, recorder.run, recorder.skip)
    engine.set_jobs([job()])
    clock.advance(timedelta(minutes=15))
    await engine.step()
    await asyncio.sleep(0)
    clock.advance(timedelta(minutes=15))
    await engine.step()
    assert recorder.started == [START + timedelta(minutes=15)]
    assert recorder.skipped == [(START + timedelta(minutes=30), "previous run still running")]
    recorder.release.set()
    await engine.drain(5)
    clock.advance(timedelta(minutes=15))
    await engine.step()
    await asyncio.sleep(0)
    assert recorder.started[-1] == START + timedelta(minutes=45)
    await engine.drain(5)


async def test_step_returns_the_next_due_time_and_resumes_after_a_pause() -> None:
    clock = FakeClock(START)
    recorder = Recorder()
    recorder.release.set()
    engine = Engine(clock, recorder.run, recorder.skip)
    engine.set_jobs([job("once")], resume_from={"j": START - timedelta(hours=3)})
    wake = await engine.step()
    await engine.drain(5)
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
    engine = Engine(FakeClock(START), Recorder().run, Recorder().skip)
    engine.set_jobs([job(enabled=False)])
    assert engine.jobs == {}


async def test_catch_up_runs_every_tick_in_order_without_calling_them_overlaps() -> None:
    clock = FakeClock(START)
    recorder = Recorder()
    recorder.release.set()
    engine = Engine(clock, recorder.run, recorder.skip)
    engine.set_jobs([job("all", max_catchup=3)], resume_from={"j": START - timedelta(hours=1)})
    await engine.step()
    await engine.drain(5)
    assert recorder.started == [START - timedelta(minutes=30), START - timedelta(minutes=15), START]
    assert recorder.skipped == []


async def test_a_changed_schedule_starts_now_without_misfires() -> None:
    clock = FakeClock(START)
    recorder = Recorder()
    recorder.release.set()
    engine = Engine(clock, recorder.run, recorder.skip)
    engine.set_jobs([job("all", max_catchup=100)])
    clock.advance(timedelta(hours=2))
    engine.set_jobs([job("all", expression="*/5 * * * *", max_catchup=100)])
    await engine.step()
    assert recorder.started == []  # the two hours under the old schedule are not owed
    clock.advance(timedelta(minutes=5))
    await engine.step()
    await engine.drain(5)
    assert recorder.started == [START + timedelta(hours=2, minutes=5)]
