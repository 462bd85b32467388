"""The command line as users meet it: help, version, dry run, screens, signals, the try-it command."""
import datetime as dt
import os
import pty
import re
import select
import subprocess
import sys

import weeklycontainerreport as wcr
from conftest import FakeClock, files, week_range
from fake_gateway import DEMO_TOKEN, SCRIPT

REPO = os.path.dirname(SCRIPT)


def script(*args, env=None, cwd=None, **kwargs):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, **(env or {})), timeout=60, **kwargs)


def test_importing_the_script_prints_creates_and_exits_nothing(tmp_path):
    code = f"import sys; sys.path.insert(0, {REPO!r}); import weeklycontainerreport"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={"PATH": os.environ.get("PATH", "")})
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert os.listdir(tmp_path) == []


def test_help_is_a_manual_with_examples_env_vars_files_columns_and_exit_codes(tmp_path):
    result = script("--help", cwd=tmp_path)
    assert result.returncode == 0
    for needle in ("examples:", "QUALYS_TOKEN", "QUALYS_USERNAME", "QUALYS_PASSWORD", "EMBEDDED_TOKEN",
                   "weekly_reports/<start>_<end>.json", ".partial.json", "exit codes:", "130", "--output_dir",
                   "--dry_run", "--rebuild_csv", "--workers", "--local_time", "https://gateway.qg2.apps.qualys.com"):
        assert needle in result.stdout, needle
    for column in wcr.CSV_COLUMNS:
        assert column in result.stdout
    assert os.listdir(tmp_path) == []


def test_version_prints_the_version(tmp_path):
    result = script("--version", cwd=tmp_path)
    assert result.returncode == 0 and wcr.__version__ in result.stdout


def test_the_real_entry_point_exits_2_on_bad_input_without_a_traceback(tmp_path):
    result = script("https://gateway.qg2.apps.qualys.com", "--start_date", "2025-02-30", "--end_date", "2025-03-07",
                    cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--start_date" in result.stderr
    assert os.listdir(tmp_path) == []


def test_dry_run_prints_weeks_names_and_queries_without_a_call_or_a_token(gateway, workdir, monkeypatch, capsys):
    monkeypatch.delenv("QUALYS_TOKEN")
    code = wcr.main([gateway.url, "--dry_run", *week_range("2025-09-27", "2025-10-11"),
                     "--optional_filter", "state:RUNNING"], clock=FakeClock())
    assert code == 0
    out = capsys.readouterr().out
    assert "created:[1758931200000 ... 1759535999999] and (state:RUNNING)" in out
    assert re.search(r"weekly_reports/2025-09-27_2025-10-04\.[0-9a-f]{16}\.json", out)
    assert "2025-10-04_2025-10-11" in out
    assert gateway.calls == [] and os.listdir(workdir) == []


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


def test_every_run_ends_with_a_summary_line_on_screen_and_in_the_log(run, gateway, workdir, capsys):
    gateway.generate(40, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    assert run(*week_range("2025-09-01", "2025-09-08")) == 0
    line = "Summary: 1 week planned, 1 fetched, 0 skipped, 0 failed; 40 containers"
    assert line in capsys.readouterr().err
    log_name = files(workdir / "logs")[0]
    assert re.match(r"weekly_report_\d{8}T\d{6}Z\.log", log_name)
    assert line in (workdir / "logs" / log_name).read_text()


def test_without_a_terminal_there_are_no_control_codes(gateway, tmp_path):
    gateway.generate(300, dt.date(2025, 9, 1), dt.date(2025, 9, 15))
    result = script(gateway.url, *week_range("2025-09-01", "2025-09-15"), cwd=tmp_path,
                    env={"QUALYS_TOKEN": DEMO_TOKEN})
    assert result.returncode == 0
    output = result.stdout + result.stderr
    assert "Summary:" in output and "\r" not in output and "\x1b" not in output


def test_on_a_terminal_a_live_status_line_shows_progress(gateway, tmp_path):
    gateway.generate(600, dt.date(2025, 9, 1), dt.date(2025, 9, 15))
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, SCRIPT, gateway.url, *week_range("2025-09-01", "2025-09-15")],
                               stdout=follower, stderr=follower, cwd=tmp_path,
                               env=dict(os.environ, QUALYS_TOKEN=DEMO_TOKEN))
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 10)
        try:
            chunk = os.read(leader, 65536) if ready else b""
        except OSError:
            chunk = b""
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.wait(timeout=30) == 0
    assert b"\r\x1b[K" in output and b"weeks 2/2" in output and b"600 containers" in output


def test_the_script_uses_nothing_newer_than_python_3_8():
    code = ("import sys; from vermin.main import main; "
            f"sys.argv = ['vermin', '--no-tips', '--violations', '-t=3.8-', {SCRIPT!r}]; sys.exit(main())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
