"""Files and crash safety: a week is written whole or not at all, a rerun leaves finished weeks
alone, kill -9 at any moment leaves only whole files, and no file that is not ours is touched."""
import datetime as dt
import filecmp
import io
import os
import random
import time

import pytest

import weeklycontainerreport as wcr
from conftest import (NAME, WEEK_UNSLICED, FakeClock, files, fill_four_weeks, fill_week, fill_weeks, log_text, ms,
                      run_script, stored, week_range)
from fake_gateway import DEMO_TOKEN, Fault

TWO_WEEKS = week_range("2025-09-01", "2025-09-15") + ["--slices", "1"]
FOUR_WEEKS = week_range("2025-09-01", "2025-09-29") + ["--slices", "1"]  # weeks side by side, each one chain


def snapshot(folder):
    return {os.path.join(path, name): open(os.path.join(path, name), "rb").read()
            for path, _, names in os.walk(folder) for name in names
            if not path.endswith(("logs", "temp_reports"))}


# --- Whole or absent -------------------------------------------------------------------------


def test_a_week_with_a_failed_page_is_not_written_and_the_run_goes_on_and_exits_1(run, gateway, workdir):
    fill_weeks(gateway)
    gateway.faults = [Fault("status", status=404, week_start_ms=ms(2025, 9, 8), with_cursor=True)]
    assert run(*TWO_WEEKS) == 1
    assert files(workdir / "weekly_reports") == ["2025-09-01_2025-09-08.json"]
    assert files(workdir / "weekly_csv_reports") == ["2025-09-01_2025-09-08.csv"]
    assert files(workdir / "temp_reports") == [".lock"]
    log = (workdir / "logs" / files(workdir / "logs")[0]).read_text()
    assert "2025-09-08..2025-09-15 FAILED: HTTP 404" in log


def test_a_rerun_calls_nothing_for_finished_weeks_and_leaves_their_files_untouched(run, gateway, workdir):
    fill_weeks(gateway)
    assert run(*TWO_WEEKS) == 0
    before = snapshot(workdir)
    mtimes = {path: os.stat(path).st_mtime_ns for path in before}
    calls = len(gateway.calls)
    assert run(*TWO_WEEKS) == 0
    assert len(gateway.calls) == calls
    assert snapshot(workdir) == before
    assert {path: os.stat(path).st_mtime_ns for path in before} == mtimes


def test_a_failed_week_is_fetched_again_by_the_next_run(run, gateway, workdir):
    fill_weeks(gateway)
    gateway.faults = [Fault("status", status=400, week_start_ms=ms(2025, 9, 1))]
    assert run(*TWO_WEEKS) == 1
    assert files(workdir / "weekly_reports") == ["2025-09-08_2025-09-15.json"]
    assert run(*TWO_WEEKS) == 0
    assert files(workdir / "weekly_reports") == ["2025-09-01_2025-09-08.json", "2025-09-08_2025-09-15.json"]


def test_the_csv_is_published_before_the_json_that_marks_the_week_done(run, gateway, workdir, monkeypatch):
    fill_week(gateway)
    order, real_replace = [], os.replace
    monkeypatch.setattr(wcr.os, "replace", lambda source, target: (order.append(os.path.basename(target)),
                                                                  real_replace(source, target)))
    assert run(*WEEK_UNSLICED) == 0
    assert order == [f"{NAME}.csv", f"{NAME}.json"]


def test_each_file_is_fsynced_before_its_rename_and_its_folder_after(run, gateway, workdir, monkeypatch):
    fill_week(gateway)
    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(descriptor):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(source, target):
        events.append(("replace", os.path.abspath(source), os.path.abspath(target)))
        real_replace(source, target)

    monkeypatch.setattr(wcr.os, "fsync", fsync)
    monkeypatch.setattr(wcr.os, "replace", replace)
    assert run(*WEEK_UNSLICED) == 0
    renames = [event for event in events if event[0] == "replace"]
    assert len(renames) == 2
    for rename in renames:
        at = events.index(rename)
        assert ("fsync", rename[1]) in events[:at]  # the file's data is on disk before it gets its name
        assert ("fsync", os.path.dirname(rename[2])) in events[at:]  # and the name is on disk after


def test_an_interrupt_in_the_middle_of_a_week_leaves_no_temp_file(run, gateway, workdir, monkeypatch):
    fill_week(gateway, 600)
    real_add, pages = wcr.Fragment.add_page, []

    def interrupted(self, text):
        pages.append(1)
        if len(pages) == 2:
            raise KeyboardInterrupt()
        return real_add(self, text)

    monkeypatch.setattr(wcr.Fragment, "add_page", interrupted)
    assert run(*WEEK_UNSLICED) == 130
    assert files(workdir / "temp_reports") == [".lock"]
    assert files(workdir / "weekly_reports") == [] and files(workdir / "weekly_csv_reports") == []


def test_a_week_that_is_now_empty_removes_its_old_csv_and_so_does_a_rebuild(run, gateway, workdir, clock):
    fill_week(gateway, 20)
    on_wednesday = FakeClock(dt.datetime(2025, 9, 3, 12, tzinfo=dt.timezone.utc))
    assert run(*WEEK_UNSLICED, use_clock=on_wednesday) == 0
    assert files(workdir / "weekly_csv_reports") == [f"{NAME}.partial.csv"]
    gateway.records.clear()  # Qualys purged them
    assert run(*WEEK_UNSLICED, use_clock=on_wednesday) == 0
    assert files(workdir / "weekly_csv_reports") == []
    assert (workdir / "weekly_reports" / f"{NAME}.partial.json").read_text() == "[]\n"
    (workdir / "weekly_csv_reports" / f"{NAME}.partial.csv").write_text("left over")
    assert wcr.main(["--rebuild_csv"], clock=clock) == 0
    assert files(workdir / "weekly_csv_reports") == []


def test_rebuild_csv_gives_a_filtered_week_its_own_name_and_the_exported_bytes(run, gateway, workdir, clock):
    fill_week(gateway, 300)
    assert run(*WEEK_UNSLICED, "--optional_filter", "state:RUNNING") == 0
    [name] = files(workdir / "weekly_csv_reports")
    exported = (workdir / "weekly_csv_reports" / name).read_bytes()
    (workdir / "weekly_csv_reports" / name).unlink()
    assert wcr.main(["--rebuild_csv"], clock=clock) == 0
    assert files(workdir / "weekly_csv_reports") == [name] and ".partial" not in name and len(name.split(".")) == 3
    rebuilt = (workdir / "weekly_csv_reports" / name).read_bytes()
    assert rebuilt == exported
    assert rebuilt.decode("utf-8").startswith('\ufeff"containerId","uuid"')  # the BOM, plain utf-8 shows it
    assert b'"\r\n"' in rebuilt and b'\n"' not in rebuilt.replace(b'\r\n"', b"")  # CRLF rows, all quoted


def test_a_csv_left_without_its_json_is_replaced_by_the_next_run(run, gateway, workdir):
    fill_weeks(gateway, 50, end=dt.date(2025, 9, 8))
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


def test_one_worker_and_four_workers_write_identical_files(run, gateway, workdir):
    fill_four_weeks(gateway)
    gateway.latency_seconds = 0.01
    assert run(*FOUR_WEEKS, "--workers", "1", "--output_dir", "one") == 0
    assert run(*FOUR_WEEKS, "--workers", "4", "--output_dir", "four") == 0
    for folder in ("weekly_reports", "weekly_csv_reports"):
        names = files(workdir / "one" / folder)
        assert len(names) == 4 and names == files(workdir / "four" / folder)
        _, mismatch, errors = filecmp.cmpfiles(workdir / "one" / folder, workdir / "four" / folder, names,
                                               shallow=False)
        assert mismatch == [] and errors == []


def test_merging_copies_each_fragments_ranges_in_the_order_given_in_bounded_pieces(monkeypatch):
    class Staged(io.BytesIO):
        def read(self, size=-1):
            assert 0 < size <= 3  # never a whole range at once
            return super().read(size)

    monkeypatch.setattr(wcr, "COPY_CHUNK_BYTES", 3)
    target = io.BytesIO()
    copier = wcr.RangeCopier([Staged(b"aaAAaa"), Staged(b"bbbbBB")], target)
    copier.add(0, 0, 2)
    copier.add(1, 2, 4)  # starts where fragment 0's range ended, in another fragment
    copier.add(0, 2, 2)  # follows fragment 0's first range, after fragment 1's
    copier.add(0, 4, 2)  # and follows that one: one run with it
    copier.flush()
    assert target.getvalue() == b"aa" + b"bbBB" + b"AA" + b"aa"
    copier.add(0, 4, 5)  # past the end of a staged file: an error, not a short file
    with pytest.raises(OSError):
        copier.flush()


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
        done_before = len(files(killed / "weekly_reports"))
        deadline = time.monotonic() + 20  # somewhere after its next week is written, however loaded the machine
        while len(files(killed / "weekly_reports")) <= done_before and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(chooser.uniform(0.0, 0.3))
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


# --- A done week is the whole truth, or it is fetched again ----------------------------------


DAMAGE = {"empty": b"", "blank": b"  \n", "truncated": b'[\n{"uuid": "a", "name": "cut sh',
          "html": b"<html><body>Service unavailable</body></html>", "object": b'{"data": []}'}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_done_marker_is_kept_aside_and_its_week_fetched_again(damage, run, gateway, workdir, capsys):
    fill_week(gateway, 40)
    assert run(*WEEK_UNSLICED) == 0
    done = workdir / "weekly_reports" / f"{NAME}.json"
    whole = done.read_bytes()
    done.write_bytes(DAMAGE[damage])  # a bad restore, an interrupted copy, a hand edit
    assert run(*WEEK_UNSLICED, "--dry_run") == 0
    assert "its JSON" in capsys.readouterr().out and done.read_bytes() == DAMAGE[damage]  # a dry run only says so
    calls = len(gateway.list_calls())
    assert run(*WEEK_UNSLICED) == 0
    assert len(gateway.list_calls()) == calls + 1  # fetched again
    assert done.read_bytes() == whole
    assert (workdir / "weekly_reports" / f"{NAME}.json.damaged").read_bytes() == DAMAGE[damage]  # never deleted
    err = capsys.readouterr().err
    assert f"its JSON {NAME}.json " in err and f"kept aside as {NAME}.json.damaged" in err
    assert "1 with a damaged JSON fetched again" in err
    assert run(*WEEK_UNSLICED) == 0 and len(gateway.list_calls()) == calls + 1  # and then it is done


def test_a_deleted_csv_is_rebuilt_from_its_json_without_a_call(run, gateway, workdir, capsys):
    gateway.generate(120, dt.date(2025, 9, 1), dt.date(2025, 9, 22))
    gateway.add_container(ms(2025, 9, 23), name="the only one")  # a small fourth week
    weeks = week_range("2025-09-01", "2025-09-29")
    assert run(*weeks) == 0
    csv = workdir / "weekly_csv_reports" / "2025-09-08_2025-09-15.csv"
    exported = csv.read_bytes()
    csv.unlink()
    calls = len(gateway.calls)
    assert run(*weeks) == 0
    assert len(gateway.calls) == calls  # no call
    assert csv.read_bytes() == exported
    assert "Week 2025-09-08..2025-09-15: 2025-09-08_2025-09-15.csv missing; rebuilt from its JSON" in \
        capsys.readouterr().err
    assert run(*weeks, "--xlsx") == 0  # a run with --xlsx builds the missing workbooks of done weeks
    assert len(gateway.calls) == calls
    assert files(workdir / "weekly_xlsx_reports") == [f"{week}.xlsx" for week in (
        "2025-09-01_2025-09-08", "2025-09-08_2025-09-15", "2025-09-15_2025-09-22", "2025-09-22_2025-09-29")]
    assert files(workdir / "temp_reports") == [".lock"]


def other_filesystem(tmp_path):
    """A folder on another filesystem than tmp_path (tmpfs in /dev/shm), or skip."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    folder = __import__("tempfile").mkdtemp(dir="/dev/shm")
    if os.stat(folder).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same filesystem here")
    return folder


def test_report_folders_on_another_filesystem_get_their_files_whole(run, gateway, workdir, tmp_path):
    elsewhere = other_filesystem(tmp_path)
    try:
        for folder in ("weekly_reports", "weekly_csv_reports", "weekly_xlsx_reports"):
            os.mkdir(os.path.join(elsewhere, folder))
            (workdir / folder).symlink_to(os.path.join(elsewhere, folder))
        gateway.generate(600, dt.date(2025, 9, 1), dt.date(2025, 9, 15))
        assert run(*week_range("2025-09-01", "2025-09-15"), "--xlsx") == 0
        for folder in ("weekly_reports", "weekly_csv_reports", "weekly_xlsx_reports"):
            assert [name for name in files(workdir / folder) if not name.startswith("wcr-")] == files(workdir / folder)
            assert len(files(workdir / folder)) == 2
        assert sum(len(stored(workdir, name)) for name in files(workdir / "weekly_reports")) == 600
    finally:
        __import__("shutil").rmtree(elsewhere)


def test_when_the_json_cannot_be_moved_into_place_the_log_says_the_csv_was(run, gateway, workdir, monkeypatch):
    fill_week(gateway, 40)
    real_replace = os.replace

    def replace(source, target):
        if target.endswith(".json"):
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(wcr.os, "replace", replace)
    assert run(*WEEK_UNSLICED) == 1
    assert files(workdir / "weekly_reports") == [] and files(workdir / "temp_reports") == [".lock"]
    assert (f"FAILED: cannot write its files: [Errno 28] No space left on device; {NAME}.csv had already been "
            "written, but not the JSON that marks the week done, so the next run fetches it again") in log_text(workdir)


# --- The folder: its lock, its modes, and files that are not ours ---------------------------


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


def test_output_dir_puts_every_folder_there_and_nothing_in_the_current_folder(run, gateway, workdir):
    fill_weeks(gateway, 20, end=dt.date(2025, 9, 8))
    assert run(*week_range("2025-09-01", "2025-09-08"), "--output_dir", str(workdir / "out" / "reports")) == 0
    assert files(workdir) == ["out"]
    assert files(workdir / "out" / "reports") == ["logs", "temp_reports", "weekly_csv_reports", "weekly_reports"]


def test_files_follow_the_umask_and_are_never_world_writable(run, gateway, workdir):
    fill_weeks(gateway, 20, end=dt.date(2025, 9, 8))
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


def test_cleaning_a_shared_temp_folder_removes_only_this_scripts_files(run, gateway, workdir, tmp_path):
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    for name in ("someone-elses.tmp", "report.json.tmp", "wcr-notours.tmp", "wcr-0123456789ab-x.json.tmp"):
        (shared / name).write_text("keep?")
    (workdir / "temp_reports").symlink_to(shared)
    assert run(*WEEK_UNSLICED) == 0
    assert files(shared) == [".lock", "report.json.tmp", "someone-elses.tmp", "wcr-notours.tmp"]


def test_a_symlink_planted_at_the_logs_name_is_an_error_not_a_write_through_it(run, gateway, workdir, capsys):
    target = workdir / "precious.txt"
    target.write_text("do not touch")
    (workdir / "logs").mkdir()
    (workdir / "logs" / "weekly_report_20260115T120000Z.log").symlink_to(target)
    assert run(*WEEK_UNSLICED) == 2
    assert target.read_text() == "do not touch"
    assert "refusing to write the run log through a symlink" in capsys.readouterr().err


def test_two_runs_in_one_second_get_two_logs(run, gateway, workdir):
    assert run(*WEEK_UNSLICED) == 0
    assert run(*WEEK_UNSLICED) == 0
    assert files(workdir / "logs") == ["weekly_report_20260115T120000Z-2.log", "weekly_report_20260115T120000Z.log"]


def test_rebuild_csv_fails_only_the_stored_weeks_it_cannot_read(run, gateway, workdir, clock, capsys):
    gateway.generate(60, dt.date(2025, 9, 1), dt.date(2025, 9, 29))
    assert run(*week_range("2025-09-01", "2025-09-29")) == 0
    reports = workdir / "weekly_reports"
    (reports / "2025-09-08_2025-09-15.json").write_text("[\n{not json},\n]\n")
    (reports / "2025-09-15_2025-09-22.json").write_text('{"an": "object, not an array"}')
    (reports / "2025-09-22_2025-09-29.json").write_text("[\n" + "[" * 100000 + "]" * 100000 + "\n]\n")
    capsys.readouterr()
    assert wcr.main(["--rebuild_csv", "--csv_columns", "uuid"], clock=clock) == 1
    err = capsys.readouterr().err
    assert err.count("FAILED") == 3 and "Traceback" not in err
    assert "Rebuilt 2025-09-01_2025-09-08.csv" in err
    assert "Summary: 4 weeks planned, 1 rebuilt, 0 skipped, 3 failed" in err


# --- A full disk -----------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs, when this test may mount one (as root); skipped with a reason otherwise."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    mounted = __import__("subprocess").run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                                           capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    __import__("subprocess").run(["umount", "-l", str(folder)])


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
    code = wcr.main([gateway.url, *WEEK_UNSLICED, "--output_dir", str(full_disk)], clock=clock)
    err = capfd.readouterr().err
    assert code == 1
    assert err.count("The log file cannot be written") == 1 and "No space left on device" in err
    assert "Logging error" not in err and "Traceback" not in err
    assert "Summary: 1 week planned, 0 fetched, 0 skipped, 1 failed" in err  # the screen went on
    assert files(full_disk / "temp_reports") == [".lock"]
