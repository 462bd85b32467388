"""Tokens and secrets: the fallback order, logins and their renewal, tokens that die mid-run, and
no secret leaking in any form."""
import datetime as dt
import json
import logging
import os

import weeklycontainerreport as wcr
from conftest import (NOW, WEEK_FILE, WEEK_UNSLICED, FakeClock, everything_printed, files, fill_week, give_login,
                      ms, stored, week_range)
from fake_gateway import DEMO_TOKEN, FakeGateway, Fault, secret_echoes

WEEKS = week_range("2025-09-01", "2025-09-15") + ["--slices", "1"]  # faults on next pages stay exact
TOKENS = {"env": "env/Token+with=odd&chars-0001", "embedded": "embedded'Token\"é-0002"}
PASSWORD = " Pa$$ w0rd+é "  # leading and trailing spaces belong to it


def fill_two_weeks(gateway):
    gateway.generate(800, dt.date(2025, 9, 1), dt.date(2025, 9, 15))


def tokens_used(gateway):
    return [call["token"] for call in gateway.list_calls()]


# --- Which token, and logins -----------------------------------------------------------------


def test_a_rejected_environment_token_falls_back_to_the_in_script_token(run, gateway, workdir, monkeypatch):
    fill_two_weeks(gateway)
    monkeypatch.setenv("QUALYS_TOKEN", "stale-token")
    monkeypatch.setattr(wcr, "EMBEDDED_TOKEN", DEMO_TOKEN)
    assert run(*WEEKS, "--workers", "1") == 0
    used = tokens_used(gateway)
    assert used[0] == "stale-token" and set(used[1:]) == {DEMO_TOKEN}
    assert len(files(workdir / "weekly_reports")) == 2


def test_when_every_token_is_rejected_the_run_exits_3_and_writes_no_report(run, gateway, workdir, monkeypatch, capsys):
    fill_two_weeks(gateway)
    monkeypatch.setenv("QUALYS_TOKEN", "stale-token")
    monkeypatch.setattr(wcr, "EMBEDDED_TOKEN", "also-stale")
    assert run(*WEEKS) == 3
    assert files(workdir / "weekly_reports") == [] and files(workdir / "weekly_csv_reports") == []
    err = capsys.readouterr().err
    assert "Authentication failed" in err and "Not authenticated" in err and "Traceback" not in err


def test_without_any_token_the_run_exits_3_before_calling_the_gateway(run, gateway, workdir, monkeypatch, capsys):
    monkeypatch.delenv("QUALYS_TOKEN")
    assert run(*WEEKS) == 3
    assert gateway.calls == []
    assert "QUALYS_TOKEN" in capsys.readouterr().err


def test_a_403_on_every_token_exits_3_with_the_gateway_message(run, gateway, workdir, capsys):
    gateway.valid_tokens.discard(DEMO_TOKEN)
    gateway.forbidden_tokens.add(DEMO_TOKEN)
    assert run(*WEEKS) == 3
    assert "HTTP 403 Access denied for this module" in capsys.readouterr().err


def test_credentials_log_in_when_no_token_is_set(run, gateway, workdir, monkeypatch):
    fill_two_weeks(gateway)
    give_login(gateway, monkeypatch, "correct horse")
    assert run(*WEEKS) == 0
    assert gateway.logins == 1
    assert len(files(workdir / "weekly_reports")) == 2


def test_a_wrong_password_exits_3_with_a_clear_message(run, gateway, workdir, monkeypatch, capsys):
    fill_two_weeks(gateway)
    give_login(gateway, monkeypatch, "correct horse", typed="wrong")
    assert run(*WEEKS) == 3
    err = capsys.readouterr().err
    assert "login failed: HTTP 401" in err and "QUALYS_PASSWORD" in err and "Traceback" not in err
    assert files(workdir / "weekly_reports") == []


def test_a_password_with_spaces_around_it_is_sent_exactly_as_given(run, gateway, workdir, monkeypatch):
    fill_week(gateway)
    gateway.credentials = {"alice": "  pw with spaces  "}
    monkeypatch.delenv("QUALYS_TOKEN")
    monkeypatch.setenv("QUALYS_USERNAME", "alice")
    monkeypatch.setenv("QUALYS_PASSWORD", "  pw with spaces  ")
    assert run(*WEEK_UNSLICED) == 0
    assert [call["form"]["password"] for call in gateway.calls if call["path"] == "/auth"] == ["  pw with spaces  "]


# --- Tokens that die during a run ------------------------------------------------------------


def test_a_token_expiring_mid_week_logs_in_again_and_loses_nothing(run, gateway, workdir, monkeypatch):
    fill_two_weeks(gateway)
    give_login(gateway, monkeypatch, "pw", keep_token=True)
    gateway.faults = [Fault("expire", with_cursor=True)]
    assert run(*WEEKS) == 0
    assert gateway.logins == 1
    weeks = [stored(workdir, name) for name in files(workdir / "weekly_reports")]
    assert {container["uuid"] for week in weeks for container in week} == {r.uuid for r in gateway.records}


def test_a_login_token_that_expires_is_renewed_by_another_login(run, gateway, workdir, monkeypatch):
    fill_two_weeks(gateway)
    give_login(gateway, monkeypatch, "pw")
    gateway.faults = [Fault("expire", with_cursor=True, week_start_ms=ms(2025, 9, 1)),
                      Fault("expire", with_cursor=True, week_start_ms=ms(2025, 9, 8))]
    assert run(*WEEKS, "--workers", "1") == 0
    assert gateway.logins == 3


def test_a_token_expiring_mid_week_without_credentials_exits_3_and_keeps_only_whole_weeks(
        run, gateway, workdir):
    fill_two_weeks(gateway)
    gateway.faults = [Fault("expire", with_cursor=True, week_start_ms=ms(2025, 9, 8))]
    assert run(*WEEKS, "--workers", "1") == 3
    assert files(workdir / "weekly_reports") == ["2025-09-01_2025-09-08.json"]
    assert files(workdir / "temp_reports") == [".lock"]


def test_workers_that_see_the_same_expired_token_log_in_only_once(run, gateway, workdir, monkeypatch):
    gateway.generate(2400, dt.date(2025, 9, 1), dt.date(2025, 10, 27))
    gateway.latency_seconds = 0.03
    give_login(gateway, monkeypatch, "pw", keep_token=True)
    gateway.faults = [Fault("expire", with_cursor=True)]
    assert run(*week_range("2025-09-01", "2025-10-27"), "--workers", "4") == 0
    assert gateway.logins == 1
    rejected = [call for call in gateway.list_calls() if call["token"] == DEMO_TOKEN]
    assert len(rejected) >= 2  # several workers really did hold the dying token


def test_a_login_token_is_renewed_before_its_four_hours_are_up():
    from conftest import FakeClock
    clock, logins = FakeClock(), []

    def login():
        logins.append(clock.monotonic())
        return f"login-{len(logins)}"

    broker = wcr.TokenBroker(sources=[("QUALYS_TOKEN", "")], login=login, clock=clock,
                             remember_secret=lambda secret: None)
    assert broker.current() == "login-1"
    clock.sleep(3 * 3600)
    assert broker.current() == "login-1"
    clock.sleep(0.6 * 3600)  # 3.6 hours after the login: the token has 24 minutes left
    assert broker.current() == "login-2" and len(logins) == 2


def test_a_token_refused_mid_run_keeps_the_finished_weeks_and_still_summarizes(run, gateway, workdir, capsys):
    gateway.generate(80, dt.date(2025, 9, 1), dt.date(2025, 10, 27))  # 8 one-page weeks
    gateway.latency_seconds = 0.05
    gateway.faults = [Fault("revoke", times=-1, pages=3, seconds=0.2)]  # dies while several workers are busy
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
        big.add_container(ms(2025, 8, 26), name="a small week first")
        big.generate(240, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
        big.add_container(ms(2025, 9, 9), name="the other week")
        big.faults = [Fault("revoke", times=-1, pages=2),  # refused at once, once both pages went out
                      Fault("after-pages", pages=2, seconds=0.05, week_start_ms=ms(2025, 9, 8))]
        code = wcr.main([big.url, *week_range("2025-08-25", "2025-09-15"), "--slices", "1", "--workers", "2"],
                        clock=clock)
    finally:
        big.stop()
    assert code == 3  # the other week's call was refused while the big week's page was being written
    assert files(workdir / "weekly_reports") == ["2025-08-25_2025-09-01.json", WEEK_FILE]
    assert len(json.loads((workdir / "weekly_reports" / WEEK_FILE).read_text())) == 240
    assert files(workdir / "temp_reports") == [".lock"]


def test_a_login_token_dead_on_arrival_is_renewed_by_another_login(run, gateway, workdir, monkeypatch):
    fill_week(gateway, 300)
    gateway.credentials = {"alice": "pw"}
    gateway.faults = [Fault("dead-login")]  # expired before its first use (a long wait, say)
    monkeypatch.delenv("QUALYS_TOKEN")
    monkeypatch.setenv("QUALYS_USERNAME", "alice")
    monkeypatch.setenv("QUALYS_PASSWORD", "pw")
    assert run(*WEEK_UNSLICED) == 0
    assert gateway.logins == 2
    assert len(json.loads((workdir / "weekly_reports" / WEEK_FILE).read_text())) == 300


def test_a_gateway_that_refuses_every_fresh_login_token_ends_in_exit_3(run, gateway, workdir, monkeypatch, capsys):
    fill_week(gateway, 300)
    gateway.credentials = {"alice": "pw"}
    gateway.faults = [Fault("dead-login", times=-1)]
    monkeypatch.delenv("QUALYS_TOKEN")
    monkeypatch.setenv("QUALYS_USERNAME", "alice")
    monkeypatch.setenv("QUALYS_PASSWORD", "pw")
    assert run(*WEEK_UNSLICED) == 3
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
            clock.advance(4 * 3600)
            gateway.expire_all()

    clock = FakeClock(on_sleep=hours_go_by)
    slow_quota = {"X-RateLimit-Limit": "1", "X-RateLimit-Window-Sec": "900"}  # the next call waits in the pacer
    gateway.faults = [Fault("limit-headers", headers=slow_quota, with_cursor=False)]
    assert wcr.main([gateway.url, *WEEK_UNSLICED], clock=clock) == 0
    assert gateway.logins == 2  # renewed for its age before the call, not after a refusal
    assert all(call["token"] in gateway.valid_tokens for call in gateway.list_calls()[2:])
    assert not any(call["token"] in gateway.expired_tokens for call in gateway.list_calls()[2:])


def test_a_run_stopped_by_authentication_still_ends_with_its_summary(run, gateway, workdir, monkeypatch, capsys):
    gateway.generate(20, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    monkeypatch.setenv("QUALYS_TOKEN", "stale")
    assert run(*WEEK_UNSLICED) == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert "Authentication failed" in lines[-2] and lines[-1].startswith("INFO Summary: 1 week planned, 0 fetched")


# --- Secrets stay secret ---------------------------------------------------------------------


def test_tokens_and_passwords_never_appear_in_any_output(run, gateway, workdir, monkeypatch, capfd):
    fill_two_weeks(gateway)
    env_token, embedded, password = "SECRET-ENV-1111", "SECRET-EMBEDDED-2222", "SECRET-PASSWORD-3333"
    give_login(gateway, monkeypatch, password, keep_token=True)
    monkeypatch.setenv("QUALYS_TOKEN", env_token)
    monkeypatch.setattr(wcr, "EMBEDDED_TOKEN", embedded)
    gateway.faults = [Fault("expire", with_cursor=True)]  # the login token dies too, and is replaced
    assert run(*WEEKS) == 0
    captured = capfd.readouterr()
    secrets = [env_token, embedded, password] + [token for token in gateway.valid_tokens | gateway.expired_tokens
                                                 if token.startswith("fake-jwt")]
    assert len(secrets) >= 4
    outputs = [captured.out, captured.err]
    for path, _, names in os.walk(workdir):
        outputs += [open(os.path.join(path, name), encoding="utf-8", errors="replace").read() for name in names]
    for secret in secrets:
        assert not any(secret in text for text in outputs), secret
    assert "Using the token from QUALYS_TOKEN" in captured.err  # the runs did log, just not the secrets


def test_the_secret_filter_redacts_messages_arguments_and_tracebacks():
    import logging
    secrets = wcr.SecretFilter(["TOKEN-XYZ"])
    secrets.remember("LOGIN-ABC")
    try:
        raise ValueError("bad header Bearer LOGIN-ABC")
    except ValueError:
        import sys
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "token %s", ("TOKEN-XYZ",), sys.exc_info())
    assert secrets.filter(record)
    assert record.getMessage() == "token ***"
    assert "LOGIN-ABC" not in record.traceback_text  # the traceback goes to the log file, redacted too
    assert "ValueError: bad header Bearer ***" in record.traceback_text and record.exc_info is None


def test_a_traceback_another_handler_already_formatted_is_redacted_and_kept_off_the_screen():
    import logging
    secrets = wcr.SecretFilter(["TOKEN-XYZ-123"])
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), None)
    record.exc_text = "Traceback (most recent call last):\nValueError: Bearer TOKEN-XYZ-123"
    assert secrets.filter(record)
    assert record.exc_text is None and record.exc_info is None
    assert logging.Formatter("%(message)s").format(record) == "failed"  # what the screen shows
    assert record.traceback_text.endswith("ValueError: Bearer ***")  # what the log file gets


def test_every_secret_echoed_by_a_hostile_gateway_in_every_encoding_is_redacted(
        run, gateway, workdir, monkeypatch, capfd):
    gateway.generate(300, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    gateway.credentials = {"alice": PASSWORD}
    monkeypatch.setenv("QUALYS_TOKEN", TOKENS["env"])  # refused: the gateway echoes it back
    monkeypatch.setattr(wcr, "EMBEDDED_TOKEN", TOKENS["embedded"])  # refused, echoed too
    monkeypatch.setenv("QUALYS_USERNAME", "alice")
    monkeypatch.setenv("QUALYS_PASSWORD", PASSWORD)
    gateway.faults = [Fault("echo-secrets", times=-1),
                      Fault("expire", with_cursor=True)]  # the first login token dies mid-week, echoed
    assert run(*WEEK_UNSLICED) == 0
    first_login = "fake-jwt-0001-7"
    monkeypatch.setenv("QUALYS_PASSWORD", PASSWORD + "typo")  # a second run whose login is refused, echoed
    assert run(*WEEK_UNSLICED, "--output_dir", "second") == 3
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
    gateway.faults = [Fault("echo-secrets", times=-1, size=240)]  # the echo starts near character 280
    monkeypatch.setenv("QUALYS_TOKEN", token)
    assert run(*WEEK_UNSLICED) == 3
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
    assert run(*WEEK_UNSLICED) == 0
    assert {call["token"] for call in gateway.list_calls()} == {DEMO_TOKEN}
    gateway.credentials = {"alice": "pw"}
    monkeypatch.delenv("QUALYS_TOKEN")
    monkeypatch.setenv("QUALYS_USERNAME", "alice")
    monkeypatch.setenv("QUALYS_PASSWORD", "pw")
    assert run(*WEEK_UNSLICED, "--output_dir", "login") == 0
    logins = [call for call in gateway.calls if call["path"] == "/auth"]
    assert logins and all(call["authorization"] is None for call in logins)
