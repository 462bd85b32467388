"""Weeks and names: which weeks a run plans, when a week is open, the query that asks for it, and the
file names that carry the year, the filter and the open state."""
import datetime as dt
import json

import pytest

import weeklycontainerreport as wcr
from conftest import WEEK_UNSLICED, FakeClock, files, fill_weeks, log_text, ms, stored, week_range


TWO_WEEKS = week_range("2025-09-01", "2025-09-15") + ["--slices", "1"]


def utc(*args):
    return dt.datetime(*args, tzinfo=dt.timezone.utc)


def test_the_readme_range_is_exactly_one_week():
    weeks = wcr.plan_weeks(dt.date(2025, 9, 27), dt.date(2025, 10, 4), utc(2026, 1, 1), False)
    assert [(w.first_day, w.end_day) for w in weeks] == [(dt.date(2025, 9, 27), dt.date(2025, 10, 4))]


def test_the_last_window_is_cut_short_at_the_exclusive_end_date():
    weeks = wcr.plan_weeks(dt.date(2025, 9, 1), dt.date(2025, 9, 18), utc(2026, 1, 1), False)
    assert [w.days for w in weeks] == ["2025-09-01..2025-09-08", "2025-09-08..2025-09-15", "2025-09-15..2025-09-18"]


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
    assert wcr.range_query(week.start_ms, week.end_ms, "") == "created:[1758931200000 ... 1759535999999]"
    assert wcr.range_query(week.start_ms, week.end_ms, "state:RUNNING or state:STOPPED") == (
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


def test_a_run_without_dates_covers_53_weeks_and_the_current_one_is_partial(run, gateway, workdir):
    gateway.generate(100, dt.date(2025, 1, 1), dt.date(2026, 1, 15))
    assert run() == 0
    names = files(workdir / "weekly_reports")
    assert len(names) == 53 and len(gateway.list_calls()) == 53
    assert names[0] == "2025-01-13_2025-01-20.json"
    assert names[-1] == "2026-01-12_2026-01-19.partial.json"
    calls = len(gateway.list_calls())
    assert run() == 0  # the next day's run fetches only the open week
    assert len(gateway.list_calls()) == calls + 1


def test_the_current_week_is_picked_in_local_time_near_midnight(monkeypatch, workdir, capsys):
    monkeypatch.setenv("TZ", "Pacific/Auckland")  # UTC+13 in January
    __import__("time").tzset()
    try:
        sunday_night_utc = FakeClock(dt.datetime(2026, 1, 18, 11, 30, tzinfo=dt.timezone.utc))  # Monday 00:30 there
        assert wcr.main(["--dry_run", "--local_time"], clock=sunday_night_utc) == 0
        local = capsys.readouterr().out.splitlines()[-1]
        assert wcr.main(["--dry_run"], clock=sunday_night_utc) == 0
        utc = capsys.readouterr().out.splitlines()[-1]
    finally:
        monkeypatch.delenv("TZ")
        __import__("time").tzset()
    assert "2026-01-19..2026-01-26" in local  # a new week has begun in Auckland
    assert "2026-01-12..2026-01-19" in utc  # but not yet in UTC


def test_weeks_that_would_start_before_1970_in_local_time_are_a_usage_error(workdir, monkeypatch, capsys):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    __import__("time").tzset()
    try:
        assert wcr.main(["--dry_run", "--local_time", "--start_date", "1970-01-01", "--end_date", "1970-01-08"],
                        clock=FakeClock()) == 2
    finally:
        monkeypatch.delenv("TZ")
        __import__("time").tzset()
    assert "before 1970-01-01 00:00 UTC" in capsys.readouterr().err


def test_the_open_week_is_partial_until_a_run_sees_it_settled(run, gateway, workdir):
    fill_weeks(gateway, 100)
    on_wednesday = FakeClock(dt.datetime(2025, 9, 10, 12, tzinfo=dt.timezone.utc))
    assert run(*TWO_WEEKS, use_clock=on_wednesday) == 0
    assert files(workdir / "weekly_reports") == ["2025-09-01_2025-09-08.json", "2025-09-08_2025-09-15.partial.json"]
    assert files(workdir / "weekly_csv_reports") == ["2025-09-01_2025-09-08.csv", "2025-09-08_2025-09-15.partial.csv"]

    calls = len(gateway.list_calls())  # the open week is fetched again on every run; the closed one is not
    assert run(*TWO_WEEKS, use_clock=on_wednesday) == 0
    assert len(gateway.list_calls()) == calls + 1

    monday_morning = FakeClock(dt.datetime(2025, 9, 15, 9, tzinfo=dt.timezone.utc))
    assert run(*TWO_WEEKS, use_clock=monday_morning) == 0  # ended 9 hours ago: still open
    assert "2025-09-08_2025-09-15.partial.json" in files(workdir / "weekly_reports")

    tuesday = FakeClock(dt.datetime(2025, 9, 16, 9, tzinfo=dt.timezone.utc))
    assert run(*TWO_WEEKS, use_clock=tuesday) == 0
    assert files(workdir / "weekly_reports") == ["2025-09-01_2025-09-08.json", "2025-09-08_2025-09-15.json"]
    assert files(workdir / "weekly_csv_reports") == ["2025-09-01_2025-09-08.csv", "2025-09-08_2025-09-15.csv"]


def test_filtered_and_unfiltered_exports_live_side_by_side(run, gateway, workdir):
    fill_weeks(gateway, 200)
    week = week_range("2025-09-01", "2025-09-08")
    assert run(*week, "--optional_filter", "state:RUNNING") == 0
    assert run(*week) == 0  # the filtered export does not count as the unfiltered week
    assert run(*week, "--optional_filter", "state:STOPPED") == 0
    names = files(workdir / "weekly_reports")
    assert len(names) == 3 and "2025-09-01_2025-09-08.json" in names
    unfiltered = json.loads((workdir / "weekly_reports" / "2025-09-01_2025-09-08.json").read_text())
    filtered = [json.loads((workdir / "weekly_reports" / name).read_text()) for name in names
                if name != "2025-09-01_2025-09-08.json"]
    assert {len(unfiltered)} != {len(export) for export in filtered}
    assert sorted({c["state"] for export in filtered for c in export}) == ["RUNNING", "STOPPED"]
    calls = len(gateway.calls)
    assert run(*week, "--optional_filter", "state:RUNNING") == 0  # and each is skipped on its own
    assert run(*week) == 0
    assert len(gateway.calls) == calls


def test_filters_whose_short_fingerprints_collide_get_files_of_their_own(run, gateway, workdir, capsys):
    first, second = "name:web-77890", "name:web-130004"
    assert wcr.filter_fingerprint(first)[:8] == wcr.filter_fingerprint(second)[:8]  # the old names collided
    gateway.add_container(ms(2025, 9, 2), name="web-77890")
    gateway.add_container(ms(2025, 9, 3), name="web-130004")
    assert run(*WEEK_UNSLICED, "--optional_filter", first) == 0
    assert run(*WEEK_UNSLICED, "--optional_filter", second) == 0
    names = files(workdir / "weekly_reports")
    assert len(names) == 2 and len(gateway.list_calls()) == 2
    assert wcr.main(["--dry_run", *WEEK_UNSLICED, "--optional_filter", second], clock=FakeClock()) == 0
    out = capsys.readouterr()
    assert f"Filter fingerprint {wcr.filter_fingerprint(second)} (in the file names) means: {second}" in out.out
    assert f"Filter fingerprint {wcr.filter_fingerprint(first)} in the file names means: {first}" in out.err


def test_boundary_containers_land_in_exactly_one_week(run, gateway, workdir):
    gateway.add_container(ms(2025, 9, 8), name="at-start-of-week-2")
    gateway.add_container(ms(2025, 9, 8) - 1, name="last-ms-of-week-1")
    gateway.add_container(ms(2025, 9, 1), name="at-start-of-week-1")
    gateway.add_container(ms(2025, 9, 15), name="at-the-exclusive-end")
    assert run(*week_range("2025-09-01", "2025-09-15")) == 0
    first = [container["name"] for container in stored(workdir)]
    second = [container["name"] for container in stored(workdir, "2025-09-08_2025-09-15.json")]
    assert sorted(first) == ["at-start-of-week-1", "last-ms-of-week-1"]
    assert second == ["at-start-of-week-2"]


def test_the_user_filter_is_parenthesized_so_an_or_cannot_escape_the_week(run, gateway, workdir):
    gateway.generate(200, dt.date(2025, 8, 1), dt.date(2025, 10, 1))
    week_start, week_end = ms(2025, 9, 1), ms(2025, 9, 8)
    expected = {record.uuid for record in gateway.records if week_start <= record.created_ms < week_end
                and record.core["state"] in ("RUNNING", "STOPPED")}
    assert run(*week_range("2025-09-01", "2025-09-08"), "--optional_filter", "state:RUNNING or state:STOPPED") == 0
    [name] = files(workdir / "weekly_reports")
    assert {container["uuid"] for container in stored(workdir, name)} == expected
    assert gateway.list_calls()[0]["params"]["filter"][0].endswith(" and (state:RUNNING or state:STOPPED)")


# --- A clock that runs ahead ---------------------------------------------------------------


def test_a_clock_that_runs_ahead_never_freezes_weeks_that_have_not_happened(run, gateway, workdir):
    gateway.generate(300, dt.date(2025, 12, 1), dt.date(2026, 1, 15))
    truth = FakeClock()  # Thursday 2026-01-15, as the gateway's Date header says
    fast = FakeClock(truth.now() + dt.timedelta(days=30))  # this machine's clock, 30 days ahead
    assert run(use_clock=fast, gateway_clock=truth) == 0
    names = files(workdir / "weekly_reports")
    assert "2026-01-05_2026-01-12.json" in names  # ended days before both clocks: final
    assert "2026-01-12_2026-01-19.partial.json" in names  # the gateway's current week stays open
    later = [name for name in names if name >= "2026-01-19"]
    assert later == []  # weeks that have not begun by the gateway's clock: not fetched, not written
    asked = {int(call["params"]["filter"][0][9:22]) for call in gateway.list_calls()}
    assert max(asked) == ms(2026, 1, 12)
    log = log_text(workdir)
    assert log.count("disagree by 30 days") == 1
    assert "Week 2026-02-09..2026-02-16: has not begun by the gateway's clock" in log
    assert run(use_clock=truth) == 0  # a later run with a right clock fetches the open week again
    assert "2026-01-12_2026-01-19.partial.json" in files(workdir / "weekly_reports")


def test_a_week_that_has_not_ended_a_day_before_the_gateways_clock_is_written_open(run, gateway, workdir):
    gateway.generate(50, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    truth = FakeClock(dt.datetime(2025, 9, 8, 12, tzinfo=dt.timezone.utc))  # the week ended 12 hours ago
    ahead = FakeClock(dt.datetime(2025, 9, 10, 12, tzinfo=dt.timezone.utc))  # two days ahead: "settled"
    assert run(*WEEK_UNSLICED, use_clock=ahead, gateway_clock=truth) == 0
    assert files(workdir / "weekly_reports") == ["2025-09-01_2025-09-08.partial.json"]
    assert "has not ended 24 hours before the gateway's clock" in log_text(workdir)
    assert run(*WEEK_UNSLICED, use_clock=ahead, gateway_clock=ahead) == 0  # a day later, truly settled
    assert files(workdir / "weekly_reports") == ["2025-09-01_2025-09-08.json"]
