"""Hostile input: no secret leaks in any form, no odd record poisons a week, no argument reaches a
traceback, and no file that is not ours is touched."""
import datetime as dt
import json
import logging
import os

import pytest

import weeklycontainerreport as wcr
from conftest import FakeClock, files, ms, week_range
from fake_gateway import DEMO_TOKEN, Fault, secret_echoes

WEEK = week_range("2025-09-01", "2025-09-08") + ["--slices", "1"]
WEEK_FILE = "2025-09-01_2025-09-08.json"
CSV_FILE = "2025-09-01_2025-09-08.csv"


def everything_printed(workdir, captured):
    """stdout, stderr, and every file the run left (logs and reports)."""
    texts = [captured.out, captured.err]
    for path, _, names in os.walk(workdir):
        texts += [open(os.path.join(path, name), encoding="utf-8", errors="replace").read() for name in names]
    return "\n".join(texts)


def reject(name):
    raise ValueError(f"{name} is not JSON")


def strict_load(path):
    """Read a weekly JSON as any strict parser would: NaN and Infinity are not JSON (integers of any
    length are, though Python 3.11+ converts only 4,300 digits by default)."""
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject,
                      parse_int=lambda digits: int(digits) if len(digits) < 4000 else digits)


def read_csv_rows(workdir, name=CSV_FILE):
    import csv
    import io
    text = (workdir / "weekly_csv_reports" / name).read_bytes().decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text, newline="")))


# --- Secrets -------------------------------------------------------------------------------

TOKENS = {"env": "env/Token+with=odd&chars-0001", "embedded": "embedded'Token\"é-0002"}
PASSWORD = " Pa$$ w0rd+é "  # leading and trailing spaces belong to it


def test_every_secret_echoed_by_a_hostile_gateway_in_every_encoding_is_redacted(
        run, gateway, workdir, monkeypatch, capfd):
    gateway.generate(300, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    gateway.echo_secrets = True
    gateway.credentials = {"alice": PASSWORD}
    monkeypatch.setenv("QUALYS_TOKEN", TOKENS["env"])  # refused: the gateway echoes it back
    monkeypatch.setattr(wcr, "EMBEDDED_TOKEN", TOKENS["embedded"])  # refused, echoed too
    monkeypatch.setenv("QUALYS_USERNAME", "alice")
    monkeypatch.setenv("QUALYS_PASSWORD", PASSWORD)
    gateway.faults = [Fault("expire", with_cursor=True)]  # the first login token dies mid-week, echoed
    assert run(*WEEK) == 0
    first_login = "fake-jwt-0001-7"
    monkeypatch.setenv("QUALYS_PASSWORD", PASSWORD + "typo")  # a second run whose login is refused, echoed
    assert run(*WEEK, "--output_dir", "second") == 3
    printed = everything_printed(workdir, capfd.readouterr())
    secrets = [TOKENS["env"], TOKENS["embedded"], PASSWORD, PASSWORD + "typo", first_login]
    echoed = " ".join(gateway.echoed)
    for secret in secrets:
        forms = secret_echoes(secret)
        assert all(form in echoed for form in forms), secret  # the fake really did echo every form
        for form in forms:
            assert form not in printed, (secret, form)
    assert printed.count("(you sent: ***") >= 4  # the echoes reached the output, redacted


def test_a_secret_that_straddles_the_300_character_cut_is_redacted_before_the_cut(
        run, gateway, workdir, monkeypatch, capfd):
    token = "straddling-token-" + "0123456789" * 7
    gateway.echo_secrets, gateway.echo_padding = True, 240  # the echo starts near character 280
    monkeypatch.setenv("QUALYS_TOKEN", token)
    assert run(*WEEK) == 3
    printed = everything_printed(workdir, capfd.readouterr())
    assert token in " ".join(gateway.echoed)
    assert token[:20] not in printed and "(you sent: ***" in printed


def test_a_short_secret_is_redacted_where_it_stands_alone_but_never_inside_a_word():
    secrets = wcr.SecretFilter(["e", "pw1", "a-long-password"])

    def shown(message):
        record = logging.LogRecord("t", logging.INFO, __file__, 1, message, (), None)
        secrets.filter(record)
        return record.getMessage()

    assert shown("Week 2025-09-01 done") == "Week 2025-09-01 done"
    assert shown("password=pw1&x, 'pw1', pw1") == "password=***&x, '***', ***"
    assert shown("test_pw1_case pw12") == "test_pw1_case pw12"
    assert shown("xa-long-passwordx") == "x***x"  # 8 characters or more: redacted anywhere


def test_a_netrc_entry_does_not_replace_the_bearer_token_and_stays_off_the_login(
        run, gateway, workdir, monkeypatch, tmp_path):
    gateway.generate(300, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    netrc = tmp_path / "home" / ".netrc"
    netrc.parent.mkdir()
    netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(netrc.parent))
    monkeypatch.setenv("NETRC", str(netrc))
    assert run(*WEEK) == 0
    assert {call["token"] for call in gateway.list_calls()} == {DEMO_TOKEN}
    gateway.credentials = {"alice": "pw"}
    monkeypatch.delenv("QUALYS_TOKEN")
    monkeypatch.setenv("QUALYS_USERNAME", "alice")
    monkeypatch.setenv("QUALYS_PASSWORD", "pw")
    assert run(*WEEK, "--output_dir", "login") == 0
    logins = [call for call in gateway.calls if call["path"] == "/auth"]
    assert logins and all(call["authorization"] is None for call in logins)


def test_the_proxy_from_the_environment_is_still_used(run, gateway, workdir, monkeypatch):
    gateway.generate(300, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    monkeypatch.setenv("HTTP_PROXY", gateway.url)  # the fake plays the proxy: nothing listens at :9
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.delenv("no_proxy", raising=False)
    assert run(*WEEK, url="http://127.0.0.1:9") == 0
    assert len(strict_load(workdir / "weekly_reports" / WEEK_FILE)) == 300


# --- Odd records never fail a week ------------------------------------------------------------


def add_plain(gateway, count=5):
    for number in range(count):
        gateway.add_container(ms(2025, 9, 2) + number, uuid=f"plain-{number}", name=f"plain-{number}")


def test_uuids_that_are_not_strings_never_crash_and_never_merge_different_containers(run, gateway, workdir):
    add_plain(gateway)
    odd = ['[1, 2]', '{"a": 1}', "1", "1.0", "true", '"1"', "null", '[[1, 2]]']
    for number, uuid_text in enumerate(odd):
        gateway.add_raw(ms(2025, 9, 3) + number, f'{{"uuid": {uuid_text}, "name": "odd-{number}"}}')
    gateway.add_raw(ms(2025, 9, 4), '{"uuid": [1, 2], "name": "same list uuid again"}')
    assert run(*WEEK) == 0
    stored = strict_load(workdir / "weekly_reports" / WEEK_FILE)
    names = sorted(container["name"] for container in stored)
    assert names == sorted([f"odd-{number}" for number in range(len(odd))] + [f"plain-{n}" for n in range(5)])


def test_deeply_nested_values_still_become_a_csv_cell(run, gateway, workdir):
    add_plain(gateway)
    deep = "[" * 600 + '"bottom"' + "]" * 600
    gateway.add_raw(ms(2025, 9, 3), f'{{"uuid": "deep", "name": "deep", "environment": {deep}}}')
    assert run(*WEEK) == 0
    rows = {row["uuid"]: row for row in read_csv_rows(workdir)}
    assert rows["deep"]["environment"] == deep.replace(" ", "")
    assert len(rows) == 6


def test_a_lone_surrogate_keeps_its_escape_in_the_json_and_becomes_a_replacement_in_the_csv(run, gateway, workdir):
    add_plain(gateway)
    gateway.add_raw(ms(2025, 9, 3), '{"uuid": "odd", "name": "bad \\ud800 name"}')
    assert run(*WEEK) == 0
    raw = (workdir / "weekly_reports" / WEEK_FILE).read_bytes()
    assert b'"bad \\ud800 name"' in raw
    raw.decode("utf-8")  # the file is valid UTF-8
    rows = {row["uuid"]: row for row in read_csv_rows(workdir)}
    assert rows["odd"]["name"] == "bad \ufffd name" and len(rows) == 6


def test_numbers_python_cannot_hold_stay_as_sent_and_the_json_stays_strict(run, gateway, workdir):
    add_plain(gateway)
    huge = "9" * 5000
    gateway.add_raw(ms(2025, 9, 3), '{"uuid": "big", "riskScore": 1e400, "maxQdsScore": -1E+400, '
                                    f'"vulnerabilities": [{{"qid": {huge}}}]}}')
    assert run(*WEEK) == 0
    path = workdir / "weekly_reports" / WEEK_FILE
    assert b'"riskScore": 1e400, "maxQdsScore": -1E+400' in path.read_bytes()
    assert len(strict_load(path)) == 6
    rows = {row["uuid"]: row for row in read_csv_rows(workdir)}
    assert rows["big"]["riskScore"] == "1e400" and rows["big"]["maxQdsScore"] == "-1E+400"
    assert rows["big"]["vuln_qid"] == huge


def test_each_container_is_stored_as_the_gateways_own_bytes(run, gateway, workdir):
    gateway.add_raw(ms(2025, 9, 3), '{ "uuid" : "spaced",\n  "name":"caf\\u00e9" ,"n": 1.50 }')
    gateway.add_raw(ms(2025, 9, 4), '{"uuid":"raw-utf8","name":"café ☕"}')
    assert run(*WEEK) == 0
    lines = (workdir / "weekly_reports" / WEEK_FILE).read_bytes().split(b"\n")
    assert lines == [b"[", b'{ "uuid" : "spaced",  "name":"caf\\u00e9" ,"n": 1.50 },',
                     '{"uuid":"raw-utf8","name":"café ☕"}'.encode(), b"]", b""]


def test_a_next_link_that_cannot_be_read_fails_the_week_in_one_line(run, gateway, workdir, capsys):
    gateway.generate(600, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    gateway.next_link_style = "bad-ipv6"
    assert run(*WEEK) == 1
    err = capsys.readouterr().err
    assert "FAILED: the gateway's Link header names a next page that cannot be read" in err
    assert len(gateway.list_calls()) == 1 and "Traceback" not in err
    assert files(workdir / "weekly_reports") == []


def test_a_page_nested_too_deeply_to_decode_fails_the_week_in_one_line(run, gateway, workdir, capsys):
    add_plain(gateway)
    gateway.add_raw(ms(2025, 9, 3), '{"uuid": "abyss", "x": ' + "[" * 100000 + "]" * 100000 + "}")
    assert run(*WEEK) == 1
    err = capsys.readouterr().err
    assert "FAILED: a container is nested too deeply to be decoded" in err and "Traceback" not in err
    assert len(gateway.list_calls()) == 1  # not retried: the same page can never be read


def test_nan_is_not_json_so_such_a_page_is_retried_and_then_fails(run, gateway, workdir, capsys):
    add_plain(gateway)
    gateway.add_raw(ms(2025, 9, 3), '{"uuid": "nan", "riskScore": NaN}')
    assert run(*WEEK) == 1
    err = capsys.readouterr().err
    assert "NaN is not JSON" in err and "gave up after 6 attempts" in err
    assert files(workdir / "weekly_reports") == []


def test_an_unexpected_error_is_one_line_on_screen_and_a_traceback_only_in_the_log(
        run, gateway, workdir, monkeypatch, capsys):
    add_plain(gateway)

    def broken(self, container):
        raise ZeroDivisionError("a bug in the flattening")

    monkeypatch.setattr(wcr.RowFlattener, "rows", broken)
    assert run(*WEEK) == 1
    err = capsys.readouterr().err
    assert "unexpected error ZeroDivisionError: a bug in the flattening" in err and "Traceback" not in err
    log = (workdir / "logs" / files(workdir / "logs")[0]).read_text()
    assert "Traceback (most recent call last)" in log and "ZeroDivisionError" in log


# --- Arguments -------------------------------------------------------------------------------

GATEWAY = "https://gateway.qg2.apps.qualys.com"


@pytest.mark.parametrize("args", [
    [GATEWAY, "--optional_filter", "state:DELETED) or (state:STOPPED"],
    ["--dry_run", "--optional_filter", "state:DELETED) or (state:STOPPED"],
    [GATEWAY, "--optional_filter", "(state:RUNNING"],
    [GATEWAY, "--optional_filter", 'name:"web) or (x'],
    [GATEWAY, "--optional_filter", "name:`web"],
    [GATEWAY, "--start_date", "9999-12-25", "--end_date", "9999-12-31"],
    [GATEWAY, "--start_date", "0001-01-01", "--end_date", "0001-01-08", "--local_time"],
    [GATEWAY, "--start_date", "1969-12-25", "--end_date", "1970-01-08"],
    [GATEWAY, "--read_timeout", "inf"], [GATEWAY, "--read_timeout", "nan"], [GATEWAY, "--read_timeout", "0"],
    [GATEWAY, "--read_timeout", "1e300"], [GATEWAY, "--csv_columns", ",,,"], [GATEWAY, "--workers", "33"],
    [GATEWAY, "--slices", "0"], ["http://[::1"], [GATEWAY + "?x=1"], [GATEWAY + "#top"],
], ids=lambda args: " ".join(args[1:]) or args[0])
def test_bad_arguments_exit_2_with_one_line_and_no_traceback(args, workdir, capsys):
    assert wcr.main(args, clock=FakeClock()) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error:" in err and "Traceback" not in err
    assert files(workdir) == []


def test_balanced_filters_with_quoted_parentheses_and_the_calendar_limits_are_accepted(workdir, capsys):
    for filter_text in ('name:"web (blue)" and state:RUNNING', "(state:RUNNING or state:STOPPED)",
                        'name:"say \\"hi\\" )"', "name:`a) or (b`"):
        assert wcr.main(["--dry_run", "--optional_filter", filter_text], clock=FakeClock()) == 0
    assert wcr.main(["--dry_run", "--start_date", "9999-11-24", "--end_date", "9999-12-01"], clock=FakeClock()) == 0
    assert wcr.main(["--dry_run", "--start_date", "1970-01-01", "--end_date", "1970-01-08"], clock=FakeClock()) == 0
    assert "9999-11-24..9999-12-01" in capsys.readouterr().out


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


def test_filters_whose_short_fingerprints_collide_get_files_of_their_own(run, gateway, workdir, capsys):
    first, second = "name:web-77890", "name:web-130004"
    assert wcr.filter_fingerprint(first)[:8] == wcr.filter_fingerprint(second)[:8]  # the old names collided
    gateway.add_container(ms(2025, 9, 2), name="web-77890")
    gateway.add_container(ms(2025, 9, 3), name="web-130004")
    assert run(*WEEK, "--optional_filter", first) == 0
    assert run(*WEEK, "--optional_filter", second) == 0
    names = files(workdir / "weekly_reports")
    assert len(names) == 2 and len(gateway.list_calls()) == 2
    assert wcr.main(["--dry_run", *WEEK, "--optional_filter", second], clock=FakeClock()) == 0
    out = capsys.readouterr()
    assert f"Filter fingerprint {wcr.filter_fingerprint(second)} (in the file names) means: {second}" in out.out
    assert f"Filter fingerprint {wcr.filter_fingerprint(first)} in the file names means: {first}" in out.err


# --- Files that are not ours ------------------------------------------------------------------


def test_cleaning_a_shared_temp_folder_removes_only_this_scripts_files(run, gateway, workdir, tmp_path):
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    for name in ("someone-elses.tmp", "report.json.tmp", "wcr-notours.tmp", "wcr-0123456789ab-x.json.tmp"):
        (shared / name).write_text("keep?")
    (workdir / "temp_reports").symlink_to(shared)
    assert run(*WEEK) == 0
    assert files(shared) == [".lock", "report.json.tmp", "someone-elses.tmp", "wcr-notours.tmp"]


def test_a_symlink_planted_at_the_logs_name_is_an_error_not_a_write_through_it(run, gateway, workdir, capsys):
    target = workdir / "precious.txt"
    target.write_text("do not touch")
    (workdir / "logs").mkdir()
    (workdir / "logs" / "weekly_report_20260115T120000Z.log").symlink_to(target)
    assert run(*WEEK) == 2
    assert target.read_text() == "do not touch"
    assert "refusing to write the run log through a symlink" in capsys.readouterr().err


def test_two_runs_in_one_second_get_two_logs(run, gateway, workdir):
    assert run(*WEEK) == 0
    assert run(*WEEK) == 0
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


def test_a_bug_outside_any_week_still_ends_the_run_in_one_line(run, gateway, workdir, monkeypatch, capsys):
    add_plain(gateway)
    gateway.faults = [Fault("status", status=404)]  # the week fails, and cleaning it up then breaks

    def broken_discard(self):
        raise RuntimeError("a bug while tidying up")

    monkeypatch.setattr(wcr.Fragment, "discard", broken_discard)
    assert run(*WEEK) == 1  # it ends (the pytest timeout would catch a hang), with exit 1
    err = capsys.readouterr().err
    assert "Stopped by an unexpected error" in err and "a bug while tidying up" in err
    assert "Traceback" not in err
    assert "Traceback (most recent call last)" in (workdir / "logs" / files(workdir / "logs")[0]).read_text()
