"""Resilience: retries, rate limits, timeouts, kill -9 at any moment, and overlapping runs."""
import datetime as dt
import filecmp
import json
import os
import random
import subprocess
import sys
import time

import pytest

import weeklycontainerreport as wcr
from conftest import files, ms, week_range
from fake_gateway import DEMO_TOKEN, SCRIPT, Fault

WEEK = week_range("2025-09-01", "2025-09-08") + ["--slices", "1"]  # one chain: counts stay exact
WEEK_FILE = "2025-09-01_2025-09-08.json"


def fill_week(gateway, count=300):
    gateway.generate(count, dt.date(2025, 9, 1), dt.date(2025, 9, 8))


def stored_uuids(workdir, name=WEEK_FILE):
    return {container["uuid"] for container in json.loads((workdir / "weekly_reports" / name).read_text())}


def log_text(workdir):
    return "".join((workdir / "logs" / name).read_text() for name in files(workdir / "logs"))


@pytest.mark.parametrize("fault", [
    Fault("status", status=500), Fault("status", status=502), Fault("status", status=503),
    Fault("status", status=504), Fault("reset"), Fault("truncate"), Fault("html"), Fault("badjson"),
], ids=["500", "502", "503", "504", "reset", "truncated", "html-200", "invalid-json"])
def test_transient_failures_mid_week_are_retried_and_lose_nothing(fault, run, gateway, workdir, clock):
    fill_week(gateway)
    fault.with_cursor, fault.times = True, 3
    gateway.faults = [fault]
    assert run(*WEEK) == 0
    assert stored_uuids(workdir) == {record.uuid for record in gateway.records}
    backoffs = [seconds for seconds in clock.sleeps if seconds >= 0.5]
    assert len(backoffs) == 3 and backoffs == sorted(backoffs)  # each wait at least as long as the last
    assert "(attempt 1 of 6); retrying in" in log_text(workdir)


def test_backoff_grows_exponentially_with_jitter_and_stays_bounded():
    policy, rng = wcr.RetryPolicy(), random.Random(1)
    delays = [policy.backoff_seconds(attempt, rng) for attempt in range(1, 10)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(policy.max_delay_seconds, policy.base_delay_seconds * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_when_the_attempts_run_out_the_week_fails_unwritten_and_exits_1(run, gateway, workdir, clock):
    fill_week(gateway)
    gateway.faults = [Fault("status", status=503, times=-1, with_cursor=True)]
    assert run(*WEEK) == 1
    assert files(workdir / "weekly_reports") == []
    assert files(workdir / "temp_reports") == [".lock"]
    assert len(gateway.list_calls()) == 1 + 6
    assert "gave up after 6 attempts" in log_text(workdir)
    assert "Traceback" not in log_text(workdir)


def test_a_gateway_down_for_one_week_fails_that_week_only_and_the_next_run_heals_it(run, gateway, workdir):
    gateway.generate(300, dt.date(2025, 9, 1), dt.date(2025, 9, 22))
    gateway.faults = [Fault("status", status=502, times=-1, week_start_ms=ms(2025, 9, 8))]
    assert run(*week_range("2025-09-01", "2025-09-22")) == 1
    assert files(workdir / "weekly_reports") == ["2025-09-01_2025-09-08.json", "2025-09-15_2025-09-22.json"]
    gateway.faults = []
    calls = len(gateway.list_calls())
    assert run(*week_range("2025-09-01", "2025-09-22")) == 0
    assert len(gateway.list_calls()) == calls + 1  # only the failed week is fetched again
    assert len(files(workdir / "weekly_reports")) == 3


@pytest.mark.parametrize("status", [400, 404, 405, 422])
def test_other_4xx_answers_fail_the_week_at_once_with_the_gateway_message(status, run, gateway, workdir):
    fill_week(gateway)
    gateway.faults = [Fault("status", status=status, times=-1)]
    assert run(*WEEK) == 1
    assert len(gateway.list_calls()) == 1
    assert f"FAILED: HTTP {status}" in log_text(workdir)


@pytest.mark.parametrize("wait_header, expected", [
    ("towait", 30.0), ("retry-after", 30.0), ("none", 10.0),
])
def test_a_429_waits_as_long_as_the_gateway_says_then_retries_the_same_cursor(
        wait_header, expected, run, gateway, workdir, clock):
    fill_week(gateway)
    gateway.wait_header = wait_header  # "none": only the X-RateLimit-Window-Sec window (10 s)
    gateway.faults = [Fault("429", seconds=30, with_cursor=True)]
    assert run(*WEEK) == 0
    assert expected in clock.sleeps
    calls = gateway.list_calls()
    assert calls[1]["params"]["paginationQuery"] == calls[2]["params"]["paginationQuery"]
    assert stored_uuids(workdir) == {record.uuid for record in gateway.records}


def test_a_429_with_a_retry_after_date_waits_until_that_date(run, gateway, workdir, clock):
    fill_week(gateway)
    gateway.wait_header, gateway.now = "retry-after-date", clock.now  # the date is counted from the run's clock
    gateway.faults = [Fault("429", seconds=30, with_cursor=True)]
    assert run(*WEEK) == 0
    assert any(27 <= seconds <= 31 for seconds in clock.sleeps)


def test_a_429_without_any_header_waits_a_minute(run, gateway, workdir, clock):
    fill_week(gateway)
    gateway.wait_header, gateway.rate_limit = "none", None
    gateway.faults = [Fault("429", with_cursor=True)]
    assert run(*WEEK) == 0
    assert 60.0 in clock.sleeps


def test_an_absurd_429_wait_is_capped_and_endless_429s_fail_the_week(run, gateway, workdir, clock):
    fill_week(gateway)
    gateway.faults = [Fault("429", seconds=86400, times=-1, with_cursor=True)]
    assert run(*WEEK) == 1
    assert max(clock.sleeps) == wcr.RetryPolicy.max_rate_limit_wait_seconds
    assert files(workdir / "weekly_reports") == []
    assert "rate-limited for over" in log_text(workdir)


def run_script(gateway_url, folder, *args, token=DEMO_TOKEN, **popen):
    env = dict(os.environ, QUALYS_TOKEN=token)
    return subprocess.Popen([sys.executable, SCRIPT, gateway_url, *args, "--output_dir", str(folder)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen)


def test_kill_9_at_any_moment_leaves_whole_files_and_a_rerun_matches_a_clean_run(gateway, tmp_path, clock):
    gateway.generate(2000, dt.date(2025, 9, 1), dt.date(2025, 10, 6))
    weeks = week_range("2025-09-01", "2025-10-06")
    clean = tmp_path / "clean"
    assert run_script(gateway.url, clean, *weeks).wait() == 0
    gateway.latency_seconds = 0.08  # a run now takes about a second, and is killed somewhere in it
    killed = tmp_path / "killed"
    chooser, weeks_seen = random.Random(2026), set()
    for _ in range(3):
        process = run_script(gateway.url, killed, *weeks, "--workers", "1")
        time.sleep(chooser.uniform(0.25, 0.9))
        process.kill()
        process.wait()
        weeks_seen.add(len(files(killed / "weekly_reports")))
        for name in files(killed / "weekly_reports"):  # whatever is there is whole and final
            assert (killed / "weekly_reports" / name).read_bytes() == (clean / "weekly_reports" / name).read_bytes()
        for name in files(killed / "weekly_csv_reports"):  # CSVs move into place whole too
            assert (killed / "weekly_csv_reports" / name).read_bytes() == (clean / "weekly_csv_reports" / name).read_bytes()
    assert weeks_seen - {0, 5}, "no kill landed in the middle of a run"
    assert run_script(gateway.url, killed, *weeks).wait() == 0
    for folder in ("weekly_reports", "weekly_csv_reports"):
        comparison = filecmp.dircmp(clean / folder, killed / folder)
        assert files(clean / folder) == files(killed / folder)
        assert not comparison.diff_files and not comparison.funny_files
        _, mismatch, errors = filecmp.cmpfiles(clean / folder, killed / folder, files(clean / folder), shallow=False)
        assert mismatch == [] and errors == []
    assert files(killed / "temp_reports") == [".lock"]


def test_a_second_run_on_the_same_folder_stops_at_once_and_fetches_nothing(gateway, tmp_path, clock, capsys):
    gateway.generate(400, dt.date(2025, 9, 1), dt.date(2025, 9, 15))
    gateway.latency_seconds = 0.2
    gateway.valid_tokens.add("second-run-token")
    first = run_script(gateway.url, tmp_path, *week_range("2025-09-01", "2025-09-15"), "--workers", "1")
    deadline = time.monotonic() + 20
    while not gateway.list_calls() and time.monotonic() < deadline:  # the first run holds the lock by now
        time.sleep(0.05)
    os.environ["QUALYS_TOKEN"] = "second-run-token"
    try:
        code = wcr.main([gateway.url, *week_range("2025-09-01", "2025-09-15"), "--output_dir", str(tmp_path)],
                        clock=clock)
    finally:
        del os.environ["QUALYS_TOKEN"]
    assert code == 1
    assert "another run is using this folder" in capsys.readouterr().err
    assert first.wait() == 0
    assert not any(call["token"] == "second-run-token" for call in gateway.calls)
    assert len(files(tmp_path / "weekly_reports")) == 2


def test_the_lock_is_released_when_its_holder_is_killed(gateway, tmp_path, clock):
    gateway.generate(1000, dt.date(2025, 9, 1), dt.date(2025, 9, 15))
    gateway.latency_seconds = 0.12
    holder = run_script(gateway.url, tmp_path, *week_range("2025-09-01", "2025-09-15"))
    deadline = time.monotonic() + 20
    while not gateway.list_calls() and time.monotonic() < deadline:
        time.sleep(0.05)
    holder.kill()
    holder.wait()
    gateway.latency_seconds = 0
    assert run_script(gateway.url, tmp_path, *week_range("2025-09-01", "2025-09-15")).wait() == 0


def test_a_quota_used_up_by_someone_else_is_waited_out_in_real_time(run, gateway, workdir):
    fill_week(gateway, 800)
    gateway.rate_limit = (4, 0.4)
    gateway._call_times = [time.monotonic()] * 4  # another client has just spent the window
    assert run(*WEEK, use_clock=wcr.SystemClock()) == 0
    assert gateway.rate_limited >= 1
    assert stored_uuids(workdir) == {record.uuid for record in gateway.records}
    assert "HTTP 429, waiting" in log_text(workdir)
