"""The README's promises, each pinned by a test that fails when the behaviour breaks: the order
files are published in, fsync, interrupts, emptied weeks, rebuilds, 429s and pacing, logins,
CSV cells, and the exit code of every error class."""
import csv
import datetime as dt
import io
import json
import os

import pytest

import weeklycontainerreport as wcr
from conftest import FakeClock, files, ms, week_range
from fake_gateway import Fault

WEEK = week_range("2025-09-01", "2025-09-08") + ["--slices", "1"]
NAME = "2025-09-01_2025-09-08"


def fill_week(gateway, count=300):
    gateway.generate(count, dt.date(2025, 9, 1), dt.date(2025, 9, 8))


def log_text(folder):
    return "".join((folder / "logs" / name).read_text() for name in files(folder / "logs"))


# --- Files and crash safety --------------------------------------------------------------------


def test_the_csv_is_published_before_the_json_that_marks_the_week_done(run, gateway, workdir, monkeypatch):
    fill_week(gateway)
    order, real_replace = [], os.replace
    monkeypatch.setattr(wcr.os, "replace", lambda source, target: (order.append(os.path.basename(target)),
                                                                  real_replace(source, target)))
    assert run(*WEEK) == 0
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
    assert run(*WEEK) == 0
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
    assert run(*WEEK) == 130
    assert files(workdir / "temp_reports") == [".lock"]
    assert files(workdir / "weekly_reports") == [] and files(workdir / "weekly_csv_reports") == []


def test_a_week_that_is_now_empty_removes_its_old_csv_and_so_does_a_rebuild(run, gateway, workdir, clock):
    fill_week(gateway, 20)
    on_wednesday = FakeClock(dt.datetime(2025, 9, 3, 12, tzinfo=dt.timezone.utc))
    assert run(*WEEK, use_clock=on_wednesday) == 0
    assert files(workdir / "weekly_csv_reports") == [f"{NAME}.partial.csv"]
    gateway.records.clear()  # Qualys purged them
    assert run(*WEEK, use_clock=on_wednesday) == 0
    assert files(workdir / "weekly_csv_reports") == []
    assert (workdir / "weekly_reports" / f"{NAME}.partial.json").read_text() == "[]\n"
    (workdir / "weekly_csv_reports" / f"{NAME}.partial.csv").write_text("left over")
    assert wcr.main(["--rebuild_csv"], clock=clock) == 0
    assert files(workdir / "weekly_csv_reports") == []


def test_rebuild_csv_gives_a_filtered_week_its_own_name_and_the_exported_bytes(run, gateway, workdir, clock):
    fill_week(gateway, 300)
    assert run(*WEEK, "--optional_filter", "state:RUNNING") == 0
    [name] = files(workdir / "weekly_csv_reports")
    exported = (workdir / "weekly_csv_reports" / name).read_bytes()
    (workdir / "weekly_csv_reports" / name).unlink()
    assert wcr.main(["--rebuild_csv"], clock=clock) == 0
    assert files(workdir / "weekly_csv_reports") == [name] and ".partial" not in name and len(name.split(".")) == 3
    rebuilt = (workdir / "weekly_csv_reports" / name).read_bytes()
    assert rebuilt == exported
    assert rebuilt.decode("utf-8").startswith('\ufeff"containerId","uuid"')  # the BOM, plain utf-8 shows it
    assert b'"\r\n"' in rebuilt and b'\n"' not in rebuilt.replace(b'\r\n"', b"")  # CRLF rows, all quoted


# --- Retries, 429s and pacing ------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault("status", status=503, times=2), Fault("reset", times=2)], ids=["503", "reset"])
def test_a_5xx_or_reset_on_the_login_is_retried_like_any_transient_failure(fault, run, gateway, workdir, monkeypatch,
                                                                            clock):
    fill_week(gateway)
    gateway.credentials = {"alice": "pw"}
    gateway.auth_faults = [fault]
    monkeypatch.delenv("QUALYS_TOKEN")
    monkeypatch.setenv("QUALYS_USERNAME", "alice")
    monkeypatch.setenv("QUALYS_PASSWORD", "pw")
    assert run(*WEEK) == 0
    assert gateway.logins == 3 and len([s for s in clock.sleeps if s >= 0.5]) == 2
    assert "Login: " in log_text(workdir) and "(attempt 2 of 6); retrying in" in log_text(workdir)


@pytest.mark.parametrize("wait_header, seconds, expected", [
    ("both", 30, 30.0),  # X-RateLimit-ToWait-Sec wins over Retry-After (which says 60 here)
    ("towait", 0, 1.0),  # "wait 0" still waits a second, as documented
    ("retry-after-date", -120, 1.0),  # a date in the past: never a negative sleep
])
def test_which_429_wait_applies(wait_header, seconds, expected, run, gateway, workdir, clock):
    fill_week(gateway, 600)
    gateway.wait_header, gateway.now = wait_header, clock.now
    gateway.faults = [Fault("429", seconds=seconds, with_cursor=True)]
    assert run(*WEEK) == 0
    assert expected in clock.sleeps
    assert len(json.loads((workdir / "weekly_reports" / f"{NAME}.json").read_text())) == 600


@pytest.mark.parametrize("answers, code", [(4, 0), (5, 1)])
def test_the_total_429_wait_of_a_request_is_capped_at_exactly_an_hour(answers, code, run, gateway, workdir, clock):
    fill_week(gateway, 600)
    gateway.faults = [Fault("429", seconds=900, times=answers, with_cursor=True)]  # 4 x 900 s is the cap itself
    assert run(*WEEK) == code
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


def test_the_pacer_runs_a_little_under_the_limit(run, gateway, workdir, clock):
    gateway.generate(1000, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    gateway.rate_limit = (30, 60.0)  # 2 s a call at the limit
    assert run(*WEEK) == 0
    assert len(gateway.list_calls()) == 5
    assert sum(clock.sleeps) >= 4 * 2 * 1.03  # running exactly at the limit (8 s) fails this
    assert sum(clock.sleeps) <= 4 * 2 * 1.1 and gateway.rate_limited == 0


def test_remaining_zero_holds_every_worker_for_the_window(run, gateway, workdir, clock):
    fill_week(gateway, 600)
    gateway.faults = [Fault("limit-headers", headers={"X-RateLimit-Remaining": "0"})]  # the first answer
    assert run(*WEEK) == 0
    assert any(9.9 <= seconds <= 10.0 for seconds in clock.sleeps)  # the fake's window is 10 s
    assert "X-RateLimit-Remaining is 0: every worker waits 10s for the window" in log_text(workdir)


# --- Tokens ------------------------------------------------------------------------------------


def test_a_password_with_spaces_around_it_is_sent_exactly_as_given(run, gateway, workdir, monkeypatch):
    fill_week(gateway)
    gateway.credentials = {"alice": "  pw with spaces  "}
    monkeypatch.delenv("QUALYS_TOKEN")
    monkeypatch.setenv("QUALYS_USERNAME", "alice")
    monkeypatch.setenv("QUALYS_PASSWORD", "  pw with spaces  ")
    assert run(*WEEK) == 0
    assert [call["form"]["password"] for call in gateway.calls if call["path"] == "/auth"] == ["  pw with spaces  "]


# --- CSV cells ---------------------------------------------------------------------------------


def test_csv_cells_for_nulls_labels_objects_exponents_times_and_list_positions(run, gateway, workdir):
    gateway.add_container(
        ms(2025, 9, 2), uuid="cells", environment=["A=1", None, "B=2"],
        arguments=[{"key": "team", "value": "blue"}, {"key": "tier", "value": None}],
        host={"hostname": {"z": 1, "a": [2, None]}}, riskScore=-1e5, maxQdsScore="-1e5",
        stateChanged="=HYPERLINK(\"http://x\")",
        cluster={"k8s": {"pod": {"controller": [{"name": "only", "type": "Deployment"}]}}},
        vulnerabilities=[{"qid": 1, "software": [{"name": "null", "version": None},
                                                 {"name": "zlib", "version": "1.3"}]}])
    columns = "environment,arguments,host.hostname,riskScore,maxQdsScore,stateChanged,cluster.k8s.pod.controller[1].name," \
              "cluster.k8s.pod.controller[0].name,vuln_software_names,vuln_software_versions"
    assert run(*WEEK, "--csv_columns", columns) == 0
    text = (workdir / "weekly_csv_reports" / f"{NAME}.csv").read_bytes().decode("utf-8-sig")
    [row] = list(csv.DictReader(io.StringIO(text, newline="")))
    assert row["environment"] == "A=1; ; B=2"  # a null in a list keeps its place
    assert row["arguments"] == "team=blue; tier="  # {key, value} objects, as labels come
    assert row["host.hostname"] == '{"a":[2,null],"z":1}'  # other objects: compact JSON, sorted keys
    assert row["riskScore"] == "-100000.0" and row["maxQdsScore"] == "-1e5"  # numbers with exponents: no guard
    assert row["stateChanged"] == "'=HYPERLINK(\"http://x\")"  # text in a time column is guarded too
    assert row["cluster.k8s.pod.controller[1].name"] == "" and row["cluster.k8s.pod.controller[0].name"] == "only"
    assert row["vuln_software_names"] == "; zlib" and row["vuln_software_versions"] == "; 1.3"  # "null" is blank


# --- Command line: the exit code of every error class ----------------------------------------


def test_an_output_folder_that_cannot_be_created_exits_2(workdir, capsys):
    (workdir / "a-file").write_text("not a folder")
    assert wcr.main(["https://gateway.qg2.apps.qualys.com", "--output_dir", "a-file/reports"], clock=FakeClock()) == 2
    assert "error:" in capsys.readouterr().err


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
