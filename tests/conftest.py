"""Shared fixtures: a running fake gateway, a controllable clock, and a helper to run the CLI."""
import datetime as dt
import os
import threading

import pytest

import weeklycontainerreport as wcr
from fake_gateway import DEMO_TOKEN, FakeGateway, epoch_ms

# A fixed "now" well after the test weeks, so none of them is open unless a test says so.
NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.timezone.utc)


class FakeClock:
    """Wall time and monotonic time that move only when slept on; a negative sleep is a bug."""

    def __init__(self, now=NOW, on_sleep=None):
        self._start = now
        self._monotonic = 1000.0
        self.sleeps = []
        self.on_sleep = on_sleep  # called with the seconds of each sleep, after the clock moved
        self._lock = threading.Lock()

    def now(self):
        with self._lock:
            return self._start + dt.timedelta(seconds=self._monotonic - 1000.0)

    def monotonic(self):
        with self._lock:
            return self._monotonic

    def sleep(self, seconds, wake=None):
        assert seconds >= 0, f"negative sleep: {seconds}"
        with self._lock:
            self.sleeps.append(seconds)
            self._monotonic += seconds
        if self.on_sleep:
            self.on_sleep(seconds)


@pytest.fixture
def gateway():
    with FakeGateway() as fake:
        yield fake


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run inside an empty folder with only the demo token in the environment."""
    monkeypatch.chdir(tmp_path)
    for name in ("QUALYS_TOKEN", "QUALYS_USERNAME", "QUALYS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QUALYS_TOKEN", DEMO_TOKEN)
    monkeypatch.setattr(wcr, "EMBEDDED_TOKEN", "")
    leftover = [handler for handler in wcr.log.handlers if isinstance(handler, (wcr.LogFileHandler, wcr.ProgressHandler))]
    assert not leftover, "an earlier run left its log handlers behind"
    return tmp_path


@pytest.fixture
def run(workdir, gateway, clock):
    """Call main() against the fake gateway; returns the exit code."""
    def run_main(*args, url=None, use_clock=None):
        return wcr.main([url or gateway.url, *args], clock=use_clock or clock)
    return run_main


def week_range(first, end):
    return ["--start_date", first, "--end_date", end]


def files(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def ms(year, month, day):
    return epoch_ms(dt.date(year, month, day))
