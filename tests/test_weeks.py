"""Weeks, names, queries and command-line input: the pure rules and their usage errors."""
import datetime as dt

import pytest

import weeklycontainerreport as wcr
from conftest import FakeClock, files


def utc(*args):
    return dt.datetime(*args, tzinfo=dt.timezone.utc)


def test_the_readme_range_is_exactly_one_week():
    weeks = wcr.plan_weeks(dt.date(2025, 9, 27), dt.date(2025, 10, 4), utc(2026, 1, 1), False)
    assert [(w.first_day, w.end_day) for w in weeks] == [(dt.date(2025, 9, 27), dt.date(2025, 10, 4))]


def test_the_last_window_is_cut_short_at_the_exclusive_end_date():
    weeks = wcr.plan_weeks(dt.date(2025, 9, 1), dt.date(2025, 9, 18), utc(2026, 1, 1), False)
    assert [w.label for w in weeks] == ["2025-09-01..2025-09-08", "2025-09-08..2025-09-15", "2025-09-15..2025-09-18"]


def test_without_dates_the_run_covers_52_calendar_weeks_and_the_open_one():
    thursday = utc(2026, 1, 15, 12)
    weeks = wcr.plan_weeks(None, None, thursday, False)
    assert len(weeks) == 53
    assert weeks[-1].first_day == dt.date(2026, 1, 12)  # the Monday of the current week
    assert weeks[-1].end_day == dt.date(2026, 1, 19)
    assert all(w.first_day.weekday() == 0 and (w.end_day - w.first_day).days == 7 for w in weeks)
    assert wcr.is_open(weeks[-1], thursday) and not wcr.is_open(weeks[-2], thursday)


def test_calendar_weeks_do_not_move_with_the_run_day():
    monday = wcr.plan_weeks(None, None, utc(2026, 1, 12, 1), False)
    sunday = wcr.plan_weeks(None, None, utc(2026, 1, 18, 23), False)
    assert monday == sunday


def test_a_week_that_ended_less_than_a_day_ago_is_still_open():
    week = wcr.make_week(dt.date(2025, 9, 8), dt.date(2025, 9, 15), False)
    assert wcr.is_open(week, utc(2025, 9, 15, 23, 59))
    assert not wcr.is_open(week, utc(2025, 9, 16, 0, 0))


def test_the_query_stops_one_millisecond_before_the_next_week_because_qql_ranges_are_inclusive():
    week = wcr.make_week(dt.date(2025, 9, 27), dt.date(2025, 10, 4), False)
    assert wcr.week_query(week, "") == "created:[1758931200000 ... 1759535999999]"
    assert wcr.week_query(week, "state:RUNNING or state:STOPPED") == (
        "created:[1758931200000 ... 1759535999999] and (state:RUNNING or state:STOPPED)")


def test_local_time_weeks_start_at_local_midnight(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    __import__("time").tzset()
    try:
        week = wcr.make_week(dt.date(2025, 9, 27), dt.date(2025, 10, 4), True)
        assert week.start_ms == 1758931200000 + 4 * 3600 * 1000  # EDT is UTC-4
    finally:
        monkeypatch.delenv("TZ")
        __import__("time").tzset()


@pytest.mark.parametrize("fingerprint, partial, extension, expected", [
    ("", False, "json", "2025-09-27_2025-10-04.json"),
    ("", True, "csv", "2025-09-27_2025-10-04.partial.csv"),
    ("f3a9c1e25b7d0a64", False, "json", "2025-09-27_2025-10-04.f3a9c1e25b7d0a64.json"),
    ("f3a9c1e25b7d0a64", True, "json", "2025-09-27_2025-10-04.f3a9c1e25b7d0a64.partial.json"),
])
def test_report_names_carry_the_year_the_filter_and_the_open_state_and_parse_back(
        fingerprint, partial, extension, expected):
    week = wcr.make_week(dt.date(2025, 9, 27), dt.date(2025, 10, 4), False)
    assert wcr.report_name(week, fingerprint, partial, extension) == expected
    assert wcr.parse_report_name(expected) == (week, fingerprint, partial, extension)


def test_different_filters_get_different_fingerprints_and_no_filter_gets_none():
    assert wcr.filter_fingerprint("") == ""
    assert len(wcr.filter_fingerprint("state:RUNNING")) == 16
    assert wcr.filter_fingerprint("state:RUNNING") != wcr.filter_fingerprint("state:STOPPED")


@pytest.mark.parametrize("url, expected", [
    ("https://gateway.qg2.apps.qualys.com", "https://gateway.qg2.apps.qualys.com"),
    ("https://gateway.qg2.apps.qualys.com/", "https://gateway.qg2.apps.qualys.com"),
    ("https://gateway.qg2.apps.qualys.com/csapi/v1.3/containers/list", "https://gateway.qg2.apps.qualys.com"),
    ("https://gateway.qg2.apps.qualys.com/csapi/v1.3/containers/list/", "https://gateway.qg2.apps.qualys.com"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://127.5.6.7:8080/", "http://127.5.6.7:8080"),
    ("http://localhost:8080", "http://localhost:8080"),
    ("http://[::1]:8080", "http://[::1]:8080"),
])
def test_gateway_urls_that_are_accepted(url, expected):
    assert wcr.gateway_base(url) == expected


@pytest.mark.parametrize("url", [
    "http://gateway.qg2.apps.qualys.com", "http://10.0.0.5", "ftp://gateway.qg2.apps.qualys.com",
    "gateway.qg2.apps.qualys.com", "https://user:pw@gateway.qg2.apps.qualys.com", "https://",
    "https://" + "x" * 64 + ".qualys.com", "https://bad..name.com",
])
def test_gateway_urls_that_are_refused(url):
    with pytest.raises(wcr.UsageError):
        wcr.gateway_base(url)


@pytest.mark.parametrize("args", [
    ["https://gateway.qg2.apps.qualys.com", "--start_date", "2025-09-27"],
    ["https://gateway.qg2.apps.qualys.com", "--end_date", "2025-10-04"],
    ["https://gateway.qg2.apps.qualys.com", "--start_date", "2025-13-01", "--end_date", "2025-10-04"],
    ["https://gateway.qg2.apps.qualys.com", "--start_date", "2025-10-04", "--end_date", "2025-10-04"],
    ["https://gateway.qg2.apps.qualys.com", "--start_date", "2025-10-04", "--end_date", "2025-09-27"],
    ["http://gateway.qg2.apps.qualys.com"],
    [],
    ["https://gateway.qg2.apps.qualys.com", "--no_such_flag"],
    ["https://gateway.qg2.apps.qualys.com", "--workers", "zero"],
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(args, workdir, capsys):
    assert wcr.main(args, clock=FakeClock()) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and "error" in captured.err
    assert "Traceback" not in captured.err
    assert files(workdir) == []


def test_hyphen_aliases_work_like_the_underscore_flags(workdir, capsys):
    assert wcr.main(["--dry-run", "--start-date", "2025-09-27", "--end-date", "2025-10-04"], clock=FakeClock()) == 0
    assert "2025-09-27_2025-10-04.json" in capsys.readouterr().out
