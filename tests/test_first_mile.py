"""The first mile (install, first run, the gateway from the environment) and what the screen says."""
import datetime as dt
import io
import os
import re
import shlex
import subprocess
import sys

import pytest

import weeklycontainerreport as wcr
from conftest import FakeClock, files, week_range
from fake_gateway import DEMO_TOKEN, SCRIPT

REPO = os.path.dirname(SCRIPT)
WEEK = week_range("2025-09-01", "2025-09-08")


def readme_commands():
    """The commands in the README's fenced bash blocks, one per line."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readmes_test_command():
    ci_command = open(os.path.join(REPO, ".ci", "run"), encoding="utf-8").read().strip().splitlines()[-1]
    assert ci_command in readme_commands()
    assert ci_command.startswith("python3 -m venv .venv && ") and ci_command.endswith("-m pytest tests")


def test_the_readmes_try_it_command_uses_the_same_virtual_environment():
    try_it = [line for line in readme_commands() if "try-it" in line][0]
    assert try_it.startswith("python3 -m venv .venv && .venv/bin/python -m pip install")
    assert try_it.endswith(".venv/bin/python tests/fake_gateway.py try-it try-it-output")


def test_the_gateway_comes_from_qualys_gateway_when_no_argument_is_given(gateway, workdir, clock, monkeypatch):
    gateway.generate(20, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    monkeypatch.setenv("QUALYS_GATEWAY", gateway.url)
    assert wcr.main([*WEEK, "--base_url_env"], clock=clock) == 0
    assert len(gateway.list_calls()) == 1


def test_the_gateway_argument_wins_over_qualys_gateway(gateway, workdir, clock, monkeypatch):
    gateway.generate(20, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    monkeypatch.setenv("QUALYS_GATEWAY", "https://gateway.qg9.apps.qualys.invalid")
    assert wcr.main([gateway.url, *WEEK], clock=clock) == 0
    assert len(gateway.list_calls()) == 1


@pytest.mark.parametrize("value", ["http://gateway.qg2.apps.qualys.com", "gateway.qg2.apps.qualys.com",
                                   "https://gateway.qg2.apps.qualys.com?x=1"])
def test_qualys_gateway_is_validated_like_the_argument(value, workdir, monkeypatch, capsys):
    monkeypatch.setenv("QUALYS_GATEWAY", value)
    assert wcr.main(WEEK, clock=FakeClock()) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "QUALYS_GATEWAY: " in err


def test_without_a_gateway_anywhere_the_error_names_both_ways(workdir, monkeypatch, capsys):
    monkeypatch.delenv("QUALYS_GATEWAY", raising=False)
    assert wcr.main(WEEK, clock=FakeClock()) == 2
    assert "QUALYS_GATEWAY" in capsys.readouterr().err


def test_a_missing_requests_package_says_both_ways_out(tmp_path):
    code = ("import sys, runpy; sys.modules['requests'] = None; sys.argv = [%r, 'https://gateway.qg2.apps.qualys.com']; "
            "runpy.run_path(%r, run_name='__main__')" % (SCRIPT, SCRIPT))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert ".venv/bin/python -m pip install -r requirements.txt" in result.stderr
    assert "python3-requests" in result.stderr and "Traceback" not in result.stderr


def test_the_try_it_command_exports_weeks_and_teaches_the_next_step(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, "tests", "fake_gateway.py"), "try-it", "demo", "--xlsx"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(files(tmp_path / "demo" / "weekly_reports")) == 8
    out = result.stdout
    for opened in ("demo/weekly_reports/2025-09-01_2025-09-08.json", "demo/weekly_csv_reports/2025-09-01_2025-09-08.csv",
                   "demo/weekly_xlsx_reports/2025-09-01_2025-09-08.xlsx"):
        assert opened in out and (tmp_path / opened).exists()
    assert "--dry_run" in out and "QUALYS_TOKEN" in out and DEMO_TOKEN not in out + result.stderr
    for line in out.splitlines():  # the commands it prints can be pasted and run as they are
        if "--rebuild_csv" in line or "try-it demo" in line:
            rerun = subprocess.run(shlex.split(line.split("#")[0]), capture_output=True, text=True, cwd=tmp_path,
                                   timeout=120)
            assert rerun.returncode == 0, (line, rerun.stderr)
            assert "Summary:" in rerun.stdout + rerun.stderr


def test_the_fake_gateways_docstring_points_at_nothing_outside_the_repository():
    import fake_gateway
    assert "shared/" not in fake_gateway.__doc__ and "../" not in fake_gateway.__doc__


def test_the_screen_says_one_week_and_one_page_and_the_rebuild_says_rebuilt(run, gateway, workdir, clock, capsys):
    gateway.generate(20, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    assert run(*WEEK) == 0
    err = capsys.readouterr().err
    assert "Planned 1 week (" in err and "1 page ->" in err and "Summary: 1 week planned, 1 fetched" in err
    assert wcr.main(["--rebuild_csv"], clock=clock) == 0
    assert "Summary: 1 week planned, 1 rebuilt" in capsys.readouterr().err
    assert not re.search(r"\b1 (weeks|pages|containers)\b", err)


def test_the_live_status_line_never_shows_zero_weeks():
    stream = io.StringIO()
    progress = wcr.Progress(stream, live=True)
    progress.waiting(30, "rate limit")  # before any week is planned
    progress.page(1)
    progress.weeks_total = 2
    progress.page(249)
    shown = stream.getvalue()
    assert "weeks 0/0" not in shown and "1 container  1 page  waiting 30s (rate limit)" in shown
    assert "weeks 0/2  250 containers  2 pages" in shown


def test_a_run_stopped_by_authentication_still_ends_with_its_summary(run, gateway, workdir, monkeypatch, capsys):
    gateway.generate(20, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    monkeypatch.setenv("QUALYS_TOKEN", "stale")
    assert run(*WEEK) == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert "Authentication failed" in lines[-2] and lines[-1].startswith("INFO Summary: 1 week planned, 0 fetched")


def test_a_dry_run_piped_into_head_ends_quietly(tmp_path):
    result = subprocess.run(f"{shlex.quote(sys.executable)} {shlex.quote(SCRIPT)} --dry_run | head -1", shell=True,
                            capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert result.stdout.startswith("Dry run: 53 weeks") and result.stderr == ""


def test_a_try_it_whose_export_cannot_start_says_so_in_one_line(tmp_path):
    (tmp_path / "demo").write_text("a file where the output folder should be")
    result = subprocess.run([sys.executable, os.path.join(REPO, "tests", "fake_gateway.py"), "try-it", "demo"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2  # the exporter's own exit code for a folder it cannot use
    assert "The export stopped (exit 2) before it wrote a week" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
