"""Tokens: the fallback order, logins, expiry in the middle of a run, and secrets kept secret."""
import datetime as dt
import json
import os

import weeklycontainerreport as wcr
from conftest import files, ms, week_range
from fake_gateway import DEMO_TOKEN, Fault

WEEKS = week_range("2025-09-01", "2025-09-15") + ["--slices", "1"]  # faults on next pages stay exact


def fill(gateway):
    gateway.generate(800, dt.date(2025, 9, 1), dt.date(2025, 9, 15))


def give_login(gateway, monkeypatch, password, typed=None, keep_token=False):
    """Give the gateway an account, and the environment its credentials (or a typo of them)."""
    gateway.credentials = {"alice": password}
    if not keep_token:
        monkeypatch.delenv("QUALYS_TOKEN")
    monkeypatch.setenv("QUALYS_USERNAME", "alice")
    monkeypatch.setenv("QUALYS_PASSWORD", typed or password)


def tokens_used(gateway):
    return [call["token"] for call in gateway.list_calls()]


def test_a_rejected_environment_token_falls_back_to_the_in_script_token(run, gateway, workdir, monkeypatch):
    fill(gateway)
    monkeypatch.setenv("QUALYS_TOKEN", "stale-token")
    monkeypatch.setattr(wcr, "EMBEDDED_TOKEN", DEMO_TOKEN)
    assert run(*WEEKS, "--workers", "1") == 0
    used = tokens_used(gateway)
    assert used[0] == "stale-token" and set(used[1:]) == {DEMO_TOKEN}
    assert len(files(workdir / "weekly_reports")) == 2


def test_when_every_token_is_rejected_the_run_exits_3_and_writes_no_report(run, gateway, workdir, monkeypatch, capsys):
    fill(gateway)
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
    fill(gateway)
    give_login(gateway, monkeypatch, "correct horse")
    assert run(*WEEKS) == 0
    assert gateway.logins == 1
    assert len(files(workdir / "weekly_reports")) == 2


def test_a_wrong_password_exits_3_with_a_clear_message(run, gateway, workdir, monkeypatch, capsys):
    fill(gateway)
    give_login(gateway, monkeypatch, "correct horse", typed="wrong")
    assert run(*WEEKS) == 3
    err = capsys.readouterr().err
    assert "login failed: HTTP 401" in err and "QUALYS_PASSWORD" in err and "Traceback" not in err
    assert files(workdir / "weekly_reports") == []


def test_a_token_expiring_mid_week_logs_in_again_and_loses_nothing(run, gateway, workdir, monkeypatch):
    fill(gateway)
    give_login(gateway, monkeypatch, "pw", keep_token=True)
    gateway.faults = [Fault("expire", with_cursor=True)]
    assert run(*WEEKS) == 0
    assert gateway.logins == 1
    stored = [json.loads((workdir / "weekly_reports" / name).read_text())
              for name in files(workdir / "weekly_reports")]
    assert {container["uuid"] for week in stored for container in week} == {r.uuid for r in gateway.records}


def test_a_login_token_that_expires_is_renewed_by_another_login(run, gateway, workdir, monkeypatch):
    fill(gateway)
    give_login(gateway, monkeypatch, "pw")
    gateway.faults = [Fault("expire", with_cursor=True, week_start_ms=ms(2025, 9, 1)),
                      Fault("expire", with_cursor=True, week_start_ms=ms(2025, 9, 8))]
    assert run(*WEEKS, "--workers", "1") == 0
    assert gateway.logins == 3


def test_a_token_expiring_mid_week_without_credentials_exits_3_and_keeps_only_whole_weeks(
        run, gateway, workdir):
    fill(gateway)
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


def test_tokens_and_passwords_never_appear_in_any_output(run, gateway, workdir, monkeypatch, capfd):
    fill(gateway)
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


def test_a_traceback_another_handler_already_formatted_is_redacted_and_kept_off_the_screen():
    import logging
    secrets = wcr.SecretFilter(["TOKEN-XYZ-123"])
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), None)
    record.exc_text = "Traceback (most recent call last):\nValueError: Bearer TOKEN-XYZ-123"
    assert secrets.filter(record)
    assert record.exc_text is None and record.exc_info is None
    assert logging.Formatter("%(message)s").format(record) == "failed"  # what the screen shows
    assert record.traceback_text.endswith("ValueError: Bearer ***")  # what the log file gets
