"""Every run ends: each request has a deadline and a byte cap, waits are bounded, paging must
progress, an unreachable gateway stops the run fast, and a signal stops it cleanly."""
import datetime as dt
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

import weeklycontainerreport as wcr
from conftest import NOW, FakeClock, files, ms, week_range
from fake_gateway import DEMO_TOKEN, SCRIPT, FakeGateway, Fault

WEEK = week_range("2025-09-01", "2025-09-08") + ["--slices", "1"]
WEEK_FILE = "2025-09-01_2025-09-08.json"
QUERY = f"created:[{ms(2025, 9, 1)} ... {ms(2025, 9, 8) - 1}]"


def fill_week(gateway, count=600):
    gateway.generate(count, dt.date(2025, 9, 1), dt.date(2025, 9, 8))


def log_text(folder):
    return "".join((folder / "logs" / name).read_text() for name in files(folder / "logs"))


def client_for(gateway, clock=None, **policy):
    """A gateway client wired as a run wires it, with the given retry policy."""
    settings = wcr.Settings(gateway=gateway.url, policy=wcr.RetryPolicy(**policy), env_token=DEMO_TOKEN)
    session = wcr.make_session(2)
    client = wcr.GatewayClient(settings=settings, session=session, clock=clock or FakeClock(),
                               progress=wcr.Progress(io.StringIO(), False), secrets=wcr.SecretFilter(),
                               stop=threading.Event())
    return client, session


def keep_count(text):
    return sum(1 for _ in wcr.walk_page(text)) if text is not None else 0


# --- Every request has an end ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["trickle", "trickle-headers", "slow"])
def test_an_answer_that_trickles_in_or_stalls_ends_at_the_deadline(kind, gateway):
    fill_week(gateway, 10)
    gateway.faults = [Fault(kind, seconds=0.05 if kind != "slow" else 5, times=-1)]  # a byte every 50 ms, or none
    client, session = client_for(gateway, read_timeout_seconds=0.5, max_attempts=1)
    started = time.monotonic()
    with session, pytest.raises(wcr.WeekFailed, match=r"timed out: no whole answer within --read_timeout \(0.5s\)"):
        client.fetch_page(QUERY, None, "test", keep_count)
    assert time.monotonic() - started < 2.0  # one attempt of half a second, not forever
    assert len(gateway.list_calls()) == 1


def test_a_trickled_page_is_retried_and_the_week_is_kept_whole(run, gateway, workdir):
    fill_week(gateway, 300)
    gateway.faults = [Fault("trickle", seconds=0.05, with_cursor=True)]
    assert run(*WEEK, "--read_timeout", "1") == 0
    stored = json.loads((workdir / "weekly_reports" / WEEK_FILE).read_text())
    assert len(stored) == 300
    assert "timed out: no whole answer within --read_timeout (1s)" in log_text(workdir)


def test_a_gzip_bomb_is_abandoned_at_the_page_cap(gateway):
    fill_week(gateway, 10)
    gateway.faults = [Fault("bomb", size=64 << 20, times=-1)]  # 64 MiB of zeros, 64 KiB on the wire
    client, session = client_for(gateway, max_page_bytes=4 << 20, max_attempts=1)
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


@pytest.mark.parametrize("headers", [
    {"X-RateLimit-Limit": "0", "X-RateLimit-Window-Sec": "-5", "X-RateLimit-Remaining": "-1"},
    {"X-RateLimit-Limit": "nan", "X-RateLimit-Window-Sec": "inf", "X-RateLimit-Remaining": "nan"},
    {"X-RateLimit-Limit": "1", "X-RateLimit-Window-Sec": "1e300", "X-RateLimit-Remaining": "0"},
    {"X-RateLimit-Limit": "1", "X-RateLimit-Window-Sec": str(10 * 365 * 86400), "X-RateLimit-Remaining": "0"},
    {"X-RateLimit-Limit": "1e300", "X-RateLimit-Window-Sec": "1e-300", "X-RateLimit-Remaining": "1e300"},
], ids=["zero-negative", "nan-inf", "1e300", "a-window-of-years", "tiny"])
def test_absurd_rate_limit_headers_never_raise_nor_sleep_past_the_cap(headers, run, gateway, workdir, clock):
    fill_week(gateway, 600)
    gateway.faults = [Fault("limit-headers", headers=headers, times=-1)]
    assert run(*WEEK) == 0
    assert len(json.loads((workdir / "weekly_reports" / WEEK_FILE).read_text())) == 600
    cap = wcr.RetryPolicy.max_rate_limit_wait_seconds
    assert all(0 <= seconds <= cap for seconds in clock.sleeps)
    if max(clock.sleeps, default=0) >= wcr.LONG_WAIT_SECONDS:  # a long wait is never a silent one
        assert "waiting 900s between calls" in log_text(workdir)


@pytest.mark.parametrize("wait_header, value", [
    ("X-RateLimit-ToWait-Sec", "1e300"), ("X-RateLimit-ToWait-Sec", "inf"), ("Retry-After", "1e300"),
    ("Retry-After", "-5"), ("Retry-After", "nan"), ("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"),
])
def test_absurd_429_waits_are_capped_and_logged(wait_header, value, run, gateway, workdir, clock):
    fill_week(gateway, 300)
    gateway.wait_header = "none"
    gateway.faults = [Fault("429", with_cursor=True), Fault("limit-headers", headers={wait_header: value})]
    gateway.faults[0].seconds = 0
    original = gateway.wait_headers
    gateway.wait_headers = lambda seconds: dict(original(seconds), **{wait_header: value})
    assert run(*WEEK) == 0
    cap = wcr.RetryPolicy.max_rate_limit_wait_seconds
    waits = [seconds for seconds in clock.sleeps if seconds >= 1]
    assert waits and all(wcr.MIN_RATE_LIMIT_WAIT_SECONDS <= seconds <= cap for seconds in waits)
    assert re.search(r"HTTP 429, waiting .*; every worker waits \d+s", log_text(workdir))


def test_endless_fresh_cursors_without_new_containers_fail_the_week(run, gateway, workdir):
    fill_week(gateway, 300)
    gateway.fresh_cursors = True  # every page names a new cursor and serves the same containers
    assert run(*WEEK) == 1
    assert len(gateway.list_calls()) == 1 + wcr.PAGES_WITHOUT_PROGRESS  # one page of news, then 3 of nothing
    assert files(workdir / "weekly_reports") == []
    assert "served 3 pages in a row without a container not already seen" in log_text(workdir)


# --- Give up fast when the gateway cannot be reached at all ----------------------------------


def free_port():
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("url, reason", [
    (f"http://127.0.0.1:{free_port()}", r"connection refused by 127\.0\.0\.1:\d+"),
    ("https://no-such-gateway.invalid", r"cannot resolve no-such-gateway\.invalid"),
])
def test_a_gateway_that_never_answers_stops_the_run_after_the_first_request(url, reason, workdir, clock, capsys):
    code = wcr.main([url, *week_range("2025-01-06", "2026-01-05"), "--workers", "2"], clock=clock)
    err = capsys.readouterr().err
    assert code == 1
    assert re.search(rf"Cannot reach the gateway, stopping: {reason}\. No report was written", err)
    assert err.count("network error") <= 2 * wcr.RetryPolicy.max_attempts  # the first requests, not 52 weeks' worth
    assert files(workdir / "weekly_reports") == [] and files(workdir / "temp_reports") == [".lock"]
    assert "Summary: 52 weeks planned, 0 fetched" in err and "Traceback" not in err


def test_once_the_gateway_has_answered_an_outage_fails_weeks_not_the_run(run, gateway, workdir):
    gateway.generate(20, dt.date(2025, 9, 1), dt.date(2025, 9, 22))
    gateway.close_after_pages = 1  # the first week's page gets out, then nothing listens any more
    assert run(*week_range("2025-09-01", "2025-09-22"), "--workers", "1") == 1
    assert files(workdir / "weekly_reports") == [WEEK_FILE]
    log = log_text(workdir)
    assert log.count("FAILED: network error (ConnectionError: connection refused by 127.0.0.1") == 2
    assert "Cannot reach the gateway" not in log


# --- Stopped from outside: the same as Ctrl-C ---------------------------------------------


def reset_sigint():
    """A child started from a background job inherits 'ignore SIGINT'; give it the default back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_like_ctrl_c_keeping_finished_weeks(signum, code, gateway, tmp_path):
    gateway.generate(1200, dt.date(2025, 9, 1), dt.date(2025, 9, 22))
    gateway.latency_seconds = 0.08
    process = subprocess.Popen([sys.executable, SCRIPT, gateway.url, *week_range("2025-09-01", "2025-09-22"),
                                "--workers", "1", "--slices", "1", "--output_dir", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=reset_sigint,
                               env=dict(os.environ, QUALYS_TOKEN=DEMO_TOKEN))
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


# --- Full disk, and a refused token mid-run ---------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs, when this test may mount one (as root); skipped with a reason otherwise."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)])


def test_a_full_disk_fails_the_week_removes_its_temp_files_and_logs_on_screen(gateway, tiny_disk, clock, capfd,
                                                                                monkeypatch):
    gateway.generate(400, dt.date(2025, 9, 1), dt.date(2025, 9, 8))  # about a megabyte: it cannot fit
    gateway.add_container(ms(2025, 9, 9), name="small")
    monkeypatch.setenv("QUALYS_TOKEN", DEMO_TOKEN)
    code = wcr.main([gateway.url, *week_range("2025-09-01", "2025-09-15"), "--slices", "1", "--workers", "1",
                     "--output_dir", str(tiny_disk)], clock=clock)
    err = capfd.readouterr().err
    assert code == 1
    assert "2025-09-01..2025-09-08 FAILED: cannot write its files: [Errno 28] No space left on device" in err
    assert files(tiny_disk / "weekly_reports") == ["2025-09-08_2025-09-15.json"]
    assert files(tiny_disk / "temp_reports") == [".lock"]
    assert err.count("The log file cannot be written") <= 1 and "Logging error" not in err
    assert "Traceback" not in err and "Summary: 2 weeks planned, 1 fetched" in err


def test_a_token_refused_mid_run_keeps_the_finished_weeks_and_still_summarizes(run, gateway, workdir, capsys):
    gateway.generate(80, dt.date(2025, 9, 1), dt.date(2025, 10, 27))  # 8 one-page weeks
    gateway.latency_seconds = 0.05
    gateway.revoke_after_calls = 3  # the token dies after a few pages, while several workers are busy
    assert run(*week_range("2025-09-01", "2025-10-27"), "--workers", "4") == 3
    err = capsys.readouterr().err
    kept = files(workdir / "weekly_reports")
    served = set(gateway.served)
    weeks = wcr.plan_weeks(dt.date(2025, 9, 1), dt.date(2025, 10, 27), NOW, False)
    served_weeks = [f"{week.first_day}_{week.end_day}.json" for week in weeks
                    if any(week.start_ms <= record.created_ms < week.end_ms and record.uuid in served
                           for record in gateway.records)]
    assert kept == served_weeks and 0 < len(kept) < 8  # every week whose page arrived is kept, no other
    assert all(len(json.loads((workdir / "weekly_reports" / name).read_text())) == 10 for name in kept)
    assert "Authentication failed, stopping" in err and "JWT expired" in err
    assert f"Summary: 8 weeks planned, {len(kept)} fetched, 0 skipped, 0 failed, {8 - len(kept)} not finished" in err
    assert files(workdir / "temp_reports") == [".lock"]


def test_a_week_whose_last_page_arrived_is_published_though_the_token_dies_meanwhile(workdir, clock):
    big = FakeGateway(vulns_per_container=4, software_per_vuln=100).start()  # one page takes a while to write
    try:
        big.generate(240, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
        big.add_container(ms(2025, 9, 9), name="the other week")
        big.revoke_after_calls, big.revoke_delay_seconds = 1, 0  # refused at once, once a page went out
        big.faults = [Fault("after-pages", pages=1, seconds=0.05, week_start_ms=ms(2025, 9, 8))]
        code = wcr.main([big.url, *week_range("2025-09-01", "2025-09-15"), "--slices", "1"], clock=clock)
    finally:
        big.stop()
    assert code == 3  # the other week's call was refused while the first week's page was being written
    assert files(workdir / "weekly_reports") == [WEEK_FILE]
    assert len(json.loads((workdir / "weekly_reports" / WEEK_FILE).read_text())) == 240
    assert files(workdir / "temp_reports") == [".lock"]


@pytest.fixture
def full_disk(tiny_disk):
    """The tiny tmpfs with its last byte used up before the run."""
    descriptor = os.open(tiny_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(descriptor, b"x" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(descriptor)
    return tiny_disk


def test_a_log_file_that_cannot_be_written_is_said_once_and_the_screen_goes_on(gateway, full_disk, clock, capfd,
                                                                              monkeypatch):
    gateway.generate(20, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    monkeypatch.setenv("QUALYS_TOKEN", DEMO_TOKEN)
    code = wcr.main([gateway.url, *WEEK, "--output_dir", str(full_disk)], clock=clock)
    err = capfd.readouterr().err
    assert code == 1
    assert err.count("The log file cannot be written") == 1 and "No space left on device" in err
    assert "Logging error" not in err and "Traceback" not in err
    assert "Summary: 1 week planned, 0 fetched, 0 skipped, 1 failed" in err  # the screen went on
    assert files(full_disk / "temp_reports") == [".lock"]


def test_a_login_token_dead_on_arrival_is_renewed_by_another_login(run, gateway, workdir, monkeypatch):
    fill_week(gateway, 300)
    gateway.credentials = {"alice": "pw"}
    gateway.dead_logins = 1  # the first token expires before its first use (a long wait, say)
    monkeypatch.delenv("QUALYS_TOKEN")
    monkeypatch.setenv("QUALYS_USERNAME", "alice")
    monkeypatch.setenv("QUALYS_PASSWORD", "pw")
    assert run(*WEEK) == 0
    assert gateway.logins == 2
    assert len(json.loads((workdir / "weekly_reports" / WEEK_FILE).read_text())) == 300


def test_a_gateway_that_refuses_every_fresh_login_token_ends_in_exit_3(run, gateway, workdir, monkeypatch, capsys):
    fill_week(gateway, 300)
    gateway.credentials = {"alice": "pw"}
    gateway.dead_logins = -1
    monkeypatch.delenv("QUALYS_TOKEN")
    monkeypatch.setenv("QUALYS_USERNAME", "alice")
    monkeypatch.setenv("QUALYS_PASSWORD", "pw")
    assert run(*WEEK) == 3
    assert gateway.logins == wcr.MAX_REFUSED_LOGINS
    err = capsys.readouterr().err
    assert "refused 3 fresh login tokens in a row, the last with HTTP 401 JWT expired" in err
    assert "Summary: 1 week planned" in err


def test_the_token_is_taken_after_the_pacing_wait_so_a_long_wait_cannot_send_a_stale_one(
        gateway, workdir, monkeypatch):
    fill_week(gateway, 600)
    gateway.credentials = {"alice": "pw"}
    monkeypatch.delenv("QUALYS_TOKEN")
    monkeypatch.setenv("QUALYS_USERNAME", "alice")
    monkeypatch.setenv("QUALYS_PASSWORD", "pw")

    def hours_go_by(seconds):
        if seconds >= 600:  # the pacing wait: pretend it lasted 4 hours, so every token dies
            clock._monotonic += 4 * 3600
            gateway.expire_all()

    clock = FakeClock(on_sleep=hours_go_by)
    slow_quota = {"X-RateLimit-Limit": "1", "X-RateLimit-Window-Sec": "900"}  # the next call waits in the pacer
    gateway.faults = [Fault("limit-headers", headers=slow_quota, with_cursor=False)]
    assert wcr.main([gateway.url, *WEEK], clock=clock) == 0
    assert gateway.logins == 2  # renewed for its age before the call, not after a refusal
    assert all(call["token"] in gateway.valid_tokens for call in gateway.list_calls()[2:])
    assert not any(call["token"] in gateway.expired_tokens for call in gateway.list_calls()[2:])
