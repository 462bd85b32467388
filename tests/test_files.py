"""Files: what is written, when, under which name, and what a rerun leaves alone."""
import datetime as dt
import json
import os

from conftest import FakeClock, files, ms, week_range
from fake_gateway import Fault

TWO_WEEKS = week_range("2025-09-01", "2025-09-15") + ["--slices", "1"]


def fill(gateway, count=600, first=dt.date(2025, 9, 1), end=dt.date(2025, 9, 15)):
    gateway.generate(count, first, end)


def snapshot(folder):
    return {os.path.join(path, name): open(os.path.join(path, name), "rb").read()
            for path, _, names in os.walk(folder) for name in names
            if not path.endswith(("logs", "temp_reports"))}


def test_a_week_with_a_failed_page_is_not_written_and_the_run_goes_on_and_exits_1(run, gateway, workdir):
    fill(gateway)
    gateway.faults = [Fault("status", status=404, week_start_ms=ms(2025, 9, 8), with_cursor=True)]
    assert run(*TWO_WEEKS) == 1
    assert files(workdir / "weekly_reports") == ["2025-09-01_2025-09-08.json"]
    assert files(workdir / "weekly_csv_reports") == ["2025-09-01_2025-09-08.csv"]
    assert files(workdir / "temp_reports") == [".lock"]
    log = (workdir / "logs" / files(workdir / "logs")[0]).read_text()
    assert "2025-09-08..2025-09-15 FAILED: HTTP 404" in log


def test_a_rerun_calls_nothing_for_finished_weeks_and_leaves_their_files_untouched(run, gateway, workdir):
    fill(gateway)
    assert run(*TWO_WEEKS) == 0
    before = snapshot(workdir)
    mtimes = {path: os.stat(path).st_mtime_ns for path in before}
    calls = len(gateway.calls)
    assert run(*TWO_WEEKS) == 0
    assert len(gateway.calls) == calls
    assert snapshot(workdir) == before
    assert {path: os.stat(path).st_mtime_ns for path in before} == mtimes


def test_a_failed_week_is_fetched_again_by_the_next_run(run, gateway, workdir):
    fill(gateway)
    gateway.faults = [Fault("status", status=400, week_start_ms=ms(2025, 9, 1))]
    assert run(*TWO_WEEKS) == 1
    assert files(workdir / "weekly_reports") == ["2025-09-08_2025-09-15.json"]
    assert run(*TWO_WEEKS) == 0
    assert files(workdir / "weekly_reports") == ["2025-09-01_2025-09-08.json", "2025-09-08_2025-09-15.json"]


def test_the_open_week_is_partial_until_a_run_sees_it_settled(run, gateway, workdir):
    fill(gateway, 100)
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
    fill(gateway, 200)
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


def test_a_csv_left_without_its_json_is_replaced_by_the_next_run(run, gateway, workdir):
    fill(gateway, 50, end=dt.date(2025, 9, 8))
    (workdir / "weekly_csv_reports").mkdir()
    (workdir / "weekly_csv_reports" / "2025-09-01_2025-09-08.csv").write_text("half a fil")
    assert run(*week_range("2025-09-01", "2025-09-08")) == 0
    assert (workdir / "weekly_csv_reports" / "2025-09-01_2025-09-08.csv").read_text(encoding="utf-8-sig").startswith(
        '"containerId"')


def test_stale_temp_files_from_a_killed_run_are_removed_and_never_taken_for_results(run, gateway, workdir):
    (workdir / "temp_reports").mkdir()
    (workdir / "temp_reports" / "wcr-0123456789ab-2025-09-01_2025-09-08.json.tmp").write_text("[\n{\"uuid\":")
    assert run(*week_range("2025-09-01", "2025-09-08")) == 0
    assert files(workdir / "temp_reports") == [".lock"]
    assert (workdir / "weekly_reports" / "2025-09-01_2025-09-08.json").read_text() == "[]\n"


def test_output_dir_puts_every_folder_there_and_nothing_in_the_current_folder(run, gateway, workdir):
    fill(gateway, 20, end=dt.date(2025, 9, 8))
    assert run(*week_range("2025-09-01", "2025-09-08"), "--output_dir", str(workdir / "out" / "reports")) == 0
    assert files(workdir) == ["out"]
    assert files(workdir / "out" / "reports") == ["logs", "temp_reports", "weekly_csv_reports", "weekly_reports"]


def test_files_follow_the_umask_and_are_never_world_writable(run, gateway, workdir):
    fill(gateway, 20, end=dt.date(2025, 9, 8))
    for umask, file_mode, folder_mode in ((0o077, 0o600, 0o700), (0o000, 0o664, 0o775)):
        previous = os.umask(umask)
        try:
            assert run(*week_range("2025-09-01", "2025-09-08"), "--output_dir", f"out{umask:o}") == 0
        finally:
            os.umask(previous)
        for path, folders, names in os.walk(workdir / f"out{umask:o}"):
            for name in names:
                assert os.stat(os.path.join(path, name)).st_mode & 0o777 == file_mode, name
            for name in folders:
                assert os.stat(os.path.join(path, name)).st_mode & 0o777 == folder_mode, name
