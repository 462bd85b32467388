"""Endings: every request has a deadline and a byte cap, an unreachable gateway stops the run fast,
a signal stops it cleanly, and whatever goes wrong ends in one line, never a traceback."""
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import weeklycontainerreport as wcr
from conftest import (QUERY, WEEK_FILE, WEEK_UNSLICED, add_plain, client_for, files, fill_week, free_port, keep_count,
                      log_text, stored, week_range)
from fake_gateway import DEMO_TOKEN, SCRIPT, Fault

def reset_sigint():
    """A child started from a background job inherits 'ignore SIGINT'; give it the default back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# --- Every request has an end ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["trickle", "trickle-headers", "slow"])
def test_an_answer_that_trickles_in_or_stalls_ends_at_the_deadline(kind, gateway):
    fill_week(gateway, 10)
    gateway.faults = [Fault(kind, seconds=0.05 if kind != "slow" else 5, times=-1)]  # a byte every 50 ms, or none
    client, session = client_for(gateway.url, read_timeout_seconds=0.5, max_attempts=1)
    started = time.monotonic()
    with session, pytest.raises(wcr.WeekFailed, match=r"timed out: no whole answer within --read_timeout \(0.5s\)"):
        client.fetch_page(QUERY, None, "test", keep_count)
    assert time.monotonic() - started < 2.0  # one attempt of half a second, not forever
    assert len(gateway.list_calls()) == 1


def test_a_trickled_page_is_retried_and_the_week_is_kept_whole(run, gateway, workdir):
    fill_week(gateway, 300)
    gateway.faults = [Fault("trickle", seconds=0.05, with_cursor=True)]
    assert run(*WEEK_UNSLICED, "--read_timeout", "1") == 0
    assert len(stored(workdir)) == 300
    assert "timed out: no whole answer within --read_timeout (1s)" in log_text(workdir)


def test_a_gzip_bomb_is_abandoned_at_the_page_cap(gateway):
    fill_week(gateway, 10)
    gateway.faults = [Fault("bomb", size=64 << 20, times=-1)]  # 64 MiB of zeros, 64 KiB on the wire
    client, session = client_for(gateway.url, max_page_bytes=4 << 20, max_attempts=1)
    with session, pytest.raises(wcr.WeekFailed, match="grew past 4 MiB; abandoned"):
        client.fetch_page(QUERY, None, "test", keep_count)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak RSS from /proc")
def test_a_gzip_bomb_never_takes_the_process_past_the_page_cap_plus_a_margin(gateway, tmp_path):
    from benchmark import run_exporter  # the benchmark's child reports its own peak RSS
    fill_week(gateway, 10)
    gateway.faults = [Fault("bomb", size=320 << 20)]  # inflates past the 256 MiB cap, once
    code, _, _, peak = run_exporter(gateway.url, str(tmp_path), dt.date(2025, 9, 1), dt.date(2025, 9, 8),
                                    "--slices", "1")
    assert code == 0
    assert "grew past 256 MiB; abandoned" in log_text(tmp_path)
    assert 0 < peak / 2 ** 20 < 256 + 64, f"peak RSS {peak / 2 ** 20:.0f} MiB"


def test_the_proxy_from_the_environment_is_still_used(run, gateway, workdir, monkeypatch):
    gateway.generate(300, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    monkeypatch.setenv("HTTP_PROXY", gateway.url)  # the fake plays the proxy: nothing listens at :9
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.delenv("no_proxy", raising=False)
    assert run(*WEEK_UNSLICED, url="http://127.0.0.1:9") == 0
    assert len(stored(workdir)) == 300


# --- Give up fast when the gateway cannot be reached at all ----------------------------------


@pytest.mark.parametrize("url, reason", [
    ("http://127.0.0.1:{free port}", r"connection refused by 127\.0\.0\.1:\d+"),
    ("https://no-such-gateway.invalid", r"cannot resolve no-such-gateway\.invalid"),
], ids=["refused", "unknown-name"])
def test_a_gateway_that_never_answers_stops_the_run_after_the_first_request(url, reason, workdir, clock, capsys):
    url = url.replace("{free port}", str(free_port()))
    code = wcr.main([url, *week_range("2025-01-06", "2026-01-05"), "--workers", "8"], clock=clock)
    err = capsys.readouterr().err
    assert code == 1
    assert re.search(rf"Cannot reach the gateway, stopping: {reason}\. No report was written", err)
    assert err.count("network error") == wcr.RetryPolicy.max_attempts - 1  # one request's retries, not 8 workers'
    assert len(err.splitlines()) <= 10  # a handful of lines
    assert files(workdir / "weekly_reports") == [] and files(workdir / "temp_reports") == [".lock"]
    assert "Summary: 52 weeks planned, 0 fetched" in err and "Traceback" not in err


def test_once_the_gateway_has_answered_an_outage_fails_weeks_not_the_run(run, gateway, workdir):
    gateway.generate(20, dt.date(2025, 9, 1), dt.date(2025, 9, 22))
    gateway.faults = [Fault("close", times=-1, pages=1)]  # the first week's page gets out, then nothing listens
    assert run(*week_range("2025-09-01", "2025-09-22"), "--workers", "1") == 1
    assert files(workdir / "weekly_reports") == [WEEK_FILE]
    log = log_text(workdir)
    assert log.count("FAILED: network error (ConnectionError: connection refused by 127.0.0.1") == 2
    assert "Cannot reach the gateway" not in log


# --- Stopped from outside: the same as Ctrl-C -----------------------------------------------


def start_three_weeks(gateway, tmp_path, latency: float, preexec_fn):
    """An export of three weeks, one page at a time, started as a process the test can signal."""
    gateway.generate(1200, dt.date(2025, 9, 1), dt.date(2025, 9, 22))
    gateway.latency_seconds = latency
    return subprocess.Popen([sys.executable, SCRIPT, gateway.url, *week_range("2025-09-01", "2025-09-22"),
                             "--workers", "1", "--slices", "1", "--output_dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec_fn,
                            env=dict(os.environ, QUALYS_TOKEN=DEMO_TOKEN))


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_like_ctrl_c_keeping_finished_weeks(signum, code, gateway, tmp_path):
    process = start_three_weeks(gateway, tmp_path, 0.08, reset_sigint)
    deadline = time.monotonic() + 20
    while not files(tmp_path / "weekly_reports") and time.monotonic() < deadline:  # a week is done by then
        time.sleep(0.02)
    process.send_signal(signum)
    _, err = process.communicate(timeout=20)
    name = signal.Signals(signum).name
    assert process.returncode == code
    assert f"Stopped by {name}; finished weeks are kept".encode() in err and b"Traceback" not in err
    assert re.search(rb"Summary: 3 weeks planned, [12] fetched, 0 skipped, 0 failed, [12] not finished", err)
    kept = files(tmp_path / "weekly_reports")
    assert kept and len(kept) < 3
    for name in kept:  # whatever was kept is whole
        assert len(json.loads((tmp_path / "weekly_reports" / name).read_text())) == 400
    assert files(tmp_path / "temp_reports") == [".lock"]  # unfinished weeks left nothing behind
    if signum != signal.SIGTERM:
        return
    rerun = subprocess.run([sys.executable, SCRIPT, gateway.url, *week_range("2025-09-01", "2025-09-22"),
                            "--output_dir", str(tmp_path)], capture_output=True, timeout=60,
                           env=dict(os.environ, QUALYS_TOKEN=DEMO_TOKEN))
    assert rerun.returncode == 0  # the lock was released
    assert len(files(tmp_path / "weekly_reports")) == 3


# --- A bug ends in one line -----------------------------------------------------------------


def test_an_unexpected_error_is_one_line_on_screen_and_a_traceback_only_in_the_log(
        run, gateway, workdir, monkeypatch, capsys):
    add_plain(gateway)

    def broken(self, container):
        raise ZeroDivisionError("a bug in the flattening")

    monkeypatch.setattr(wcr.RowFlattener, "rows", broken)
    assert run(*WEEK_UNSLICED) == 1
    err = capsys.readouterr().err
    assert "unexpected error ZeroDivisionError: a bug in the flattening" in err and "Traceback" not in err
    log = (workdir / "logs" / files(workdir / "logs")[0]).read_text()
    assert "Traceback (most recent call last)" in log and "ZeroDivisionError" in log


def test_a_bug_outside_any_week_still_ends_the_run_in_one_line(run, gateway, workdir, monkeypatch, capsys):
    add_plain(gateway)
    gateway.faults = [Fault("status", status=404)]  # the week fails, and cleaning it up then breaks

    def broken_discard(self):
        raise RuntimeError("a bug while tidying up")

    monkeypatch.setattr(wcr.Fragment, "discard", broken_discard)
    assert run(*WEEK_UNSLICED) == 1  # it ends (the pytest timeout would catch a hang), with exit 1
    err = capsys.readouterr().err
    assert "Stopped by an unexpected error" in err and "a bug while tidying up" in err
    assert "Traceback" not in err
    assert "Traceback (most recent call last)" in (workdir / "logs" / files(workdir / "logs")[0]).read_text()


def ignore_sighup():
    """As nohup starts a process: SIGHUP ignored."""
    reset_sigint()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


@pytest.mark.timeout(60)
def test_a_signal_the_process_was_told_to_ignore_stays_ignored(gateway, tmp_path):
    process = start_three_weeks(gateway, tmp_path, 0.05, ignore_sighup)
    deadline = time.monotonic() + 20
    while len(gateway.list_calls()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGHUP)  # the terminal of a nohup'ed run closed
    _, err = process.communicate(timeout=40)
    assert process.returncode == 0, err
    assert len(files(tmp_path / "weekly_reports")) == 3


@pytest.mark.timeout(30)
def test_a_stop_while_a_week_is_being_published_lets_it_end_whole(run, gateway, workdir, monkeypatch):
    gateway.generate(300, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    real_write_csv = wcr.write_csv

    def write_csv(*args):
        os.kill(os.getpid(), signal.SIGTERM)  # the run is told to stop while this week is being published
        time.sleep(wcr.SETTLE_SECONDS + 0.5)  # longer than the other workers are waited for
        return real_write_csv(*args)

    monkeypatch.setattr(wcr, "write_csv", write_csv)
    assert run(*WEEK_UNSLICED) == 143
    assert len(stored(workdir)) == 300  # published whole, the JSON last
    csv_text = (workdir / "weekly_csv_reports" / "2025-09-01_2025-09-08.csv").read_bytes().decode("utf-8-sig")
    assert csv_text.count("\r\n") > 300 and files(workdir / "temp_reports") == [".lock"]
