"""Rate limits and retries: what is transient is retried with bounded backoff, 429s wait as the
gateway says (within caps), and every worker is paced a little under the limit."""
import datetime as dt
import json
import re

import pytest

import weeklycontainerreport as wcr
from conftest import NAME, WEEK_FILE, WEEK_UNSLICED, files, fill_week, log_text, ms, stored_uuids, week_range
from fake_gateway import AUTH_PATH, Fault


# --- Transient failures ----------------------------------------------------------------------


@pytest.mark.parametrize("fault", [
    Fault("status", status=500), Fault("status", status=502), Fault("status", status=503),
    Fault("status", status=504), Fault("reset"), Fault("truncate"), Fault("html"), Fault("badjson"),
], ids=["500", "502", "503", "504", "reset", "truncated", "html-200", "invalid-json"])
def test_transient_failures_mid_week_are_retried_and_lose_nothing(fault, run, gateway, workdir, clock):
    fill_week(gateway)
    fault.with_cursor, fault.times = True, 3
    gateway.faults = [fault]
    assert run(*WEEK_UNSLICED) == 0
    assert stored_uuids(workdir) == {record.uuid for record in gateway.records}
    backoffs = [seconds for seconds in clock.sleeps if seconds >= 0.5]
    assert len(backoffs) == 3 and backoffs == sorted(backoffs)  # each wait at least as long as the last
    assert "(attempt 1 of 6); retrying in" in log_text(workdir)


def test_backoff_grows_exponentially_with_jitter_and_stays_bounded(run, gateway, workdir, clock):
    fill_week(gateway, 600)
    gateway.faults = [Fault("status", status=503, times=5, with_cursor=True)]
    assert run(*WEEK_UNSLICED) == 0
    backoffs = [seconds for seconds in clock.sleeps if seconds >= 0.4]
    ceilings = [1, 2, 4, 8, 16]  # seconds: 1 s, doubling, with jitter down to half
    assert len(backoffs) == len(ceilings)
    for backoff, ceiling in zip(backoffs, ceilings):
        assert ceiling / 2 <= backoff <= ceiling, (backoff, ceiling)


def test_when_the_attempts_run_out_the_week_fails_unwritten_and_exits_1(run, gateway, workdir, clock):
    fill_week(gateway)
    gateway.faults = [Fault("status", status=503, times=-1, with_cursor=True)]
    assert run(*WEEK_UNSLICED) == 1
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
    assert run(*WEEK_UNSLICED) == 1
    assert len(gateway.list_calls()) == 1
    assert f"FAILED: HTTP {status}" in log_text(workdir)


@pytest.mark.parametrize("fault", [Fault("status", status=503, times=2, path=AUTH_PATH),
                                   Fault("reset", times=2, path=AUTH_PATH)], ids=["503", "reset"])
def test_a_5xx_or_reset_on_the_login_is_retried_like_any_transient_failure(fault, run, gateway, workdir, monkeypatch,
                                                                            clock):
    fill_week(gateway)
    gateway.credentials = {"alice": "pw"}
    gateway.faults = [fault]
    monkeypatch.delenv("QUALYS_TOKEN")
    monkeypatch.setenv("QUALYS_USERNAME", "alice")
    monkeypatch.setenv("QUALYS_PASSWORD", "pw")
    assert run(*WEEK_UNSLICED) == 0
    assert gateway.logins == 3 and len([s for s in clock.sleeps if s >= 0.5]) == 2
    assert "Login: " in log_text(workdir) and "(attempt 2 of 6); retrying in" in log_text(workdir)


def test_a_login_that_keeps_failing_fails_the_week_saying_it_was_the_login(run, gateway, workdir, monkeypatch):
    fill_week(gateway)
    gateway.credentials = {"alice": "pw"}
    gateway.faults = [Fault("status", status=503, times=-1, path=AUTH_PATH)]
    monkeypatch.delenv("QUALYS_TOKEN")
    monkeypatch.setenv("QUALYS_USERNAME", "alice")
    monkeypatch.setenv("QUALYS_PASSWORD", "pw")
    assert run(*WEEK_UNSLICED) == 1
    assert gateway.logins == 6
    assert "FAILED: login failed: HTTP 503 (gave up after 6 attempts)" in log_text(workdir)


# --- 429s ------------------------------------------------------------------------------------


@pytest.mark.parametrize("wait_header, expected", [
    ("towait", 30.0), ("retry-after", 30.0), ("none", 10.0),
])
def test_a_429_waits_as_long_as_the_gateway_says_then_retries_the_same_cursor(
        wait_header, expected, run, gateway, workdir, clock):
    fill_week(gateway)
    gateway.wait_header = wait_header  # "none": only the X-RateLimit-Window-Sec window (10 s)
    gateway.faults = [Fault("429", seconds=30, with_cursor=True)]
    assert run(*WEEK_UNSLICED) == 0
    assert expected in clock.sleeps
    calls = gateway.list_calls()
    assert calls[1]["params"]["paginationQuery"] == calls[2]["params"]["paginationQuery"]
    assert stored_uuids(workdir) == {record.uuid for record in gateway.records}


def test_a_429_with_a_retry_after_date_waits_until_that_date(run, gateway, workdir, clock):
    fill_week(gateway)
    gateway.wait_header, gateway.now = "retry-after-date", clock.now  # the date is counted from the run's clock
    gateway.faults = [Fault("429", seconds=30, with_cursor=True)]
    assert run(*WEEK_UNSLICED) == 0
    assert any(27 <= seconds <= 31 for seconds in clock.sleeps)


def test_a_429_without_any_header_waits_a_minute(run, gateway, workdir, clock):
    fill_week(gateway)
    gateway.wait_header, gateway.rate_limit = "none", None
    gateway.faults = [Fault("429", with_cursor=True)]
    assert run(*WEEK_UNSLICED) == 0
    assert 60.0 in clock.sleeps


def test_an_absurd_429_wait_is_capped_and_endless_429s_fail_the_week(run, gateway, workdir, clock):
    fill_week(gateway)
    gateway.faults = [Fault("429", seconds=86400, times=-1, with_cursor=True)]
    assert run(*WEEK_UNSLICED) == 1
    assert max(clock.sleeps) == wcr.RetryPolicy.max_rate_limit_wait_seconds
    assert files(workdir / "weekly_reports") == []
    assert "rate-limited for over" in log_text(workdir)


@pytest.mark.parametrize("wait_header, seconds, expected", [
    ("both", 30, 30.0),  # X-RateLimit-ToWait-Sec wins over Retry-After (which says 60 here)
    ("towait", 0, 1.0),  # "wait 0" still waits a second, as documented
    ("retry-after-date", -120, 1.0),  # a date in the past: never a negative sleep
])
def test_which_429_wait_applies(wait_header, seconds, expected, run, gateway, workdir, clock):
    fill_week(gateway, 600)
    gateway.wait_header, gateway.now = wait_header, clock.now
    gateway.faults = [Fault("429", seconds=seconds, with_cursor=True)]
    assert run(*WEEK_UNSLICED) == 0
    assert expected in clock.sleeps
    assert len(json.loads((workdir / "weekly_reports" / f"{NAME}.json").read_text())) == 600


@pytest.mark.parametrize("answers, code", [(4, 0), (5, 1)])
def test_the_total_429_wait_of_a_request_is_capped_at_exactly_an_hour(answers, code, run, gateway, workdir, clock):
    fill_week(gateway, 600)
    gateway.faults = [Fault("429", seconds=900, times=answers, with_cursor=True)]  # 4 x 900 s is the cap itself
    assert run(*WEEK_UNSLICED) == code
    assert sum(seconds for seconds in clock.sleeps if seconds == 900) == min(answers, 4) * 900
    assert ("rate-limited for over 4500s in all" in log_text(workdir)) == (code == 1)


def test_a_429_pauses_every_worker_not_only_the_one_that_got_it(run, gateway, workdir):
    gateway.generate(2000, dt.date(2025, 9, 1), dt.date(2025, 9, 15))  # two weeks of 4 pages
    gateway.latency_seconds = 0.03
    gateway.faults = [Fault("429", seconds=1, with_cursor=True, week_start_ms=ms(2025, 9, 1))]
    assert run(*week_range("2025-09-01", "2025-09-15"), "--workers", "2", "--slices", "1",
               use_clock=wcr.SystemClock()) == 0
    calls = gateway.list_calls()
    limited = next(call for call in calls if call["params"].get("paginationQuery")
                   and call["params"]["filter"][0].startswith(f"created:[{ms(2025, 9, 1)} "))
    answered = limited["at"] + gateway.latency_seconds + 0.05  # calls sent before the 429 came back are fine
    during = [call for call in calls if answered < call["at"] < limited["at"] + 0.9]
    assert during == []  # neither week's worker called while the pause lasted
    assert any(call["at"] > limited["at"] and ms(2025, 9, 8) == int(call["params"]["filter"][0][9:22])
               for call in calls)  # and the other week did go on afterwards


@pytest.mark.parametrize("wait_header, value", [
    ("X-RateLimit-ToWait-Sec", "1e300"), ("X-RateLimit-ToWait-Sec", "inf"), ("Retry-After", "1e300"),
    ("Retry-After", "-5"), ("Retry-After", "nan"), ("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"),
])
def test_absurd_429_waits_are_capped_and_logged(wait_header, value, run, gateway, workdir, clock):
    fill_week(gateway, 300)
    gateway.wait_header = "none"
    gateway.faults = [Fault("429", with_cursor=True, headers={wait_header: value}),
                      Fault("limit-headers", headers={wait_header: value})]
    assert run(*WEEK_UNSLICED) == 0
    cap = wcr.RetryPolicy.max_rate_limit_wait_seconds
    waits = [seconds for seconds in clock.sleeps if seconds >= 1]
    assert waits and all(wcr.MIN_RATE_LIMIT_WAIT_SECONDS <= seconds <= cap for seconds in waits)
    assert re.search(r"HTTP 429, waiting .*; every worker waits \d+s", log_text(workdir))


# --- Pacing ----------------------------------------------------------------------------------


def test_remaining_zero_holds_every_worker_for_the_window(run, gateway, workdir, clock):
    fill_week(gateway, 600)
    gateway.faults = [Fault("limit-headers", headers={"X-RateLimit-Remaining": "0"})]  # the first answer
    assert run(*WEEK_UNSLICED) == 0
    assert any(9.9 <= seconds <= 10.0 for seconds in clock.sleeps)  # the fake's window is 10 s
    assert "X-RateLimit-Remaining is 0: every worker waits 10s for the window" in log_text(workdir)


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
    assert run(*WEEK_UNSLICED) == 0
    assert len(json.loads((workdir / "weekly_reports" / WEEK_FILE).read_text())) == 600
    cap = wcr.RetryPolicy.max_rate_limit_wait_seconds
    assert all(0 <= seconds <= cap for seconds in clock.sleeps)
    if max(clock.sleeps, default=0) >= wcr.LONG_WAIT_SECONDS:  # a long wait is never a silent one
        assert "waiting 900s between calls" in log_text(workdir)


def test_a_quota_used_up_by_someone_else_is_waited_out_in_real_time(run, gateway, workdir):
    fill_week(gateway, 800)
    gateway.rate_limit = (4, 0.4)
    gateway.spend_quota()  # another client has just spent the window
    assert run(*WEEK_UNSLICED, use_clock=wcr.SystemClock()) == 0
    assert gateway.rate_limited >= 1
    assert stored_uuids(workdir) == {record.uuid for record in gateway.records}
    assert "HTTP 429, waiting" in log_text(workdir)
