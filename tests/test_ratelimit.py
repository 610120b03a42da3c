"""The shared rate limiter: spacing, pauses and adapting to 429s, on a fake clock."""

from __future__ import annotations

import pytest

from harvester.ratelimit import RateLimiter


class FakeTime:
    """A clock that only moves when a task sleeps or the test advances it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def limiter(rate: float, time: FakeTime) -> RateLimiter:
    return RateLimiter(rate, clock=time.clock, sleep=time.sleep)


async def send(limiter: RateLimiter, time: FakeTime, answers: str) -> None:
    """Send one request per character: `o` gets a 200, `x` a 429."""
    for answer in answers:
        await limiter.acquire()
        if answer == "x":
            limiter.throttled()
        else:
            limiter.accepted()


async def test_many_429s_drop_to_accepted_rate() -> None:
    time = FakeTime()
    subject = limiter(50.0, time)

    await send(subject, time, "oooox" * 10)
    first_step = subject.rate_per_s
    await send(subject, time, "oooox" * 20)

    # One in five responses is a 429: first a step down, then, two seconds
    # later, a drop to just under the four fifths that were accepted.
    assert first_step == pytest.approx(45.0, rel=0.02)
    assert subject.rate_per_s == pytest.approx(0.8 * 45.0 * 0.95, rel=0.05)


async def test_stray_429_below_rate_ignored() -> None:
    time = FakeTime()
    subject = limiter(50.0, time)

    for answer in "ooooooooooooooooooox":
        await send(subject, time, answer)
        time.now += 0.2  # demand of 5 requests per second, far below the rate

    assert subject.rate_per_s == 50.0


async def test_429_at_full_rate_steps_down() -> None:
    time = FakeTime()
    subject = limiter(20.0, time)

    await send(subject, time, "o" * 39 + "x")

    assert subject.rate_per_s == pytest.approx(18.0, rel=0.01)


async def test_one_cut_per_window() -> None:
    time = FakeTime()
    subject = limiter(20.0, time)

    await send(subject, time, "o" * 39 + "x" + "o" * 5 + "x")

    assert subject.rate_per_s == pytest.approx(18.0, rel=0.01)


async def test_rate_recovers_up_to_maximum() -> None:
    time = FakeTime()
    subject = limiter(20.0, time)
    await send(subject, time, "o" * 39 + "x")

    time.now += 5.0
    await subject.acquire()
    climbed = subject.rate_per_s
    time.now += 1000.0
    await subject.acquire()

    assert 18.0 < climbed < 20.0
    assert subject.rate_per_s == 20.0


async def test_pause_holds_next_request() -> None:
    time = FakeTime()
    subject = limiter(10.0, time)
    await subject.acquire()

    subject.pause(3.0)
    await subject.acquire()

    assert sum(time.sleeps) == pytest.approx(3.0)
