"""The command line as users meet it: help, version, dry run, bad input, the gateway from the
environment, the first mile (install, try-it), and what the screen shows."""
import datetime as dt
import io
import os
import pty
import re
import select
import shlex
import subprocess
import sys

import pytest

import weeklycontainerreport as wcr
from conftest import REPO, WEEK, FakeClock, files, script, week_range
from fake_gateway import DEMO_TOKEN, SCRIPT

GATEWAY = "https://gateway.qg2.apps.qualys.com"
TRY_IT = os.path.join(REPO, "tests", "try_it.py")


def readme_commands():
    """The commands in the README's fenced bash, cron and systemd (ini) blocks, one per line."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    blocks = re.findall(r"```(?:bash|cron|ini)\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


# --- The manual ------------------------------------------------------------------------------


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
                   "--dry_run", "--rebuild_csv", "--workers", "--local_time", "https://gateway.qg2.apps.qualys.com",
                   "csv format:", "workbooks (--xlsx", "odd records", "errors:", "unreachable"):
        assert needle in result.stdout, needle
    for column in wcr.CSV_COLUMNS:
        assert column in result.stdout
    assert os.listdir(tmp_path) == []


def test_version_prints_the_version(tmp_path):
    result = script("--version", cwd=tmp_path)
    assert result.returncode == 0 and wcr.__version__ in result.stdout


def test_the_script_uses_nothing_newer_than_python_3_8():
    code = ("import sys; from vermin.main import main; "
            f"sys.argv = ['vermin', '--no-tips', '--violations', '-t=3.8-', {SCRIPT!r}]; sys.exit(main())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Bad input: exit 2, one line -------------------------------------------------------------


def test_the_real_entry_point_exits_2_on_bad_input_without_a_traceback(tmp_path):
    result = script("https://gateway.qg2.apps.qualys.com", "--start_date", "2025-02-30", "--end_date", "2025-03-07",
                    cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--start_date" in result.stderr
    assert os.listdir(tmp_path) == []


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
    [GATEWAY, "--optional_filter", "state:DELETED) or (state:STOPPED"],
    ["--dry_run", "--optional_filter", "state:DELETED) or (state:STOPPED"],
    [GATEWAY, "--optional_filter", "(state:RUNNING"],
    [GATEWAY, "--optional_filter", 'name:"web) or (x'],
    [GATEWAY, "--optional_filter", "name:`web"],
    [GATEWAY, "--start_date", "9999-12-25", "--end_date", "9999-12-31"],
    [GATEWAY, "--start_date", "0001-01-01", "--end_date", "0001-01-08", "--local_time"],
    [GATEWAY, "--start_date", "1969-12-25", "--end_date", "1970-01-08"],
    [GATEWAY, "--read_timeout", "inf"], [GATEWAY, "--read_timeout", "nan"], [GATEWAY, "--read_timeout", "0"],
    [GATEWAY, "--read_timeout", "1e300"], [GATEWAY, "--csv_columns", ",,,"], [GATEWAY, "--workers", "33"], [GATEWAY, "--workers", "many"],
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


def test_an_output_folder_that_cannot_be_created_exits_2(workdir, capsys):
    (workdir / "a-file").write_text("not a folder")
    assert wcr.main(["https://gateway.qg2.apps.qualys.com", "--output_dir", "a-file/reports"], clock=FakeClock()) == 2
    assert "error:" in capsys.readouterr().err


# --- The gateway from the environment, and the first mile -----------------------------------


def test_ci_runs_exactly_the_readmes_test_command():
    ci_command = open(os.path.join(REPO, ".ci", "run"), encoding="utf-8").read().strip().splitlines()[-1]
    assert ci_command in readme_commands()
    assert ci_command.startswith("python3 -m venv .venv && ") and ci_command.endswith("-m pytest tests")


def test_the_readmes_try_it_command_uses_the_same_virtual_environment():
    try_it = [line for line in readme_commands() if "try-it" in line][0]
    assert try_it.startswith("python3 -m venv .venv && .venv/bin/python -m pip install")
    assert try_it.endswith(".venv/bin/python tests/try_it.py try-it-output")


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
    assert "dnf install python3-requests)" in result.stderr and "…" not in result.stderr  # whole, not cut


def test_the_try_it_command_exports_weeks_and_teaches_the_next_step(tmp_path):
    result = subprocess.run([sys.executable, TRY_IT, "demo", "--xlsx"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(files(tmp_path / "demo" / "weekly_reports")) == 8
    out = result.stdout
    for opened in ("demo/weekly_reports/2025-09-01_2025-09-08.json", "demo/weekly_csv_reports/2025-09-01_2025-09-08.csv",
                   "demo/weekly_xlsx_reports/2025-09-01_2025-09-08.xlsx"):
        assert opened in out and (tmp_path / opened).exists()
    assert "--dry_run" in out and "QUALYS_TOKEN" in out and DEMO_TOKEN not in out + result.stderr
    for line in out.splitlines():  # the commands it prints can be pasted and run as they are
        if "--rebuild_csv" in line or "try_it.py demo" in line:
            rerun = subprocess.run(shlex.split(line.split("#")[0]), capture_output=True, text=True, cwd=tmp_path,
                                   timeout=120)
            assert rerun.returncode == 0, (line, rerun.stderr)
            assert "Summary:" in rerun.stdout + rerun.stderr


def test_the_fake_gateways_docstring_points_at_nothing_outside_the_repository():
    import fake_gateway
    assert "shared/" not in fake_gateway.__doc__ and "../" not in fake_gateway.__doc__


def test_a_try_it_whose_export_cannot_start_says_so_in_one_line(tmp_path):
    (tmp_path / "demo").write_text("a file where the output folder should be")
    result = subprocess.run([sys.executable, TRY_IT, "demo"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2  # the exporter's own exit code for a folder it cannot use
    assert "The export stopped (exit 2) before it wrote a week" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


# --- What the screen shows -------------------------------------------------------------------


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


def test_dry_run_says_how_many_slices_a_large_week_would_take(workdir, capsys):
    assert wcr.main(["--dry_run", *week_range("2025-09-01", "2025-09-15")]) == 0
    assert "may be fetched as up to 64 chains of pages side by side" in capsys.readouterr().out
    assert wcr.main(["--dry_run", *week_range("2025-09-01", "2025-09-15"), "--slices", "1"]) == 0
    assert "chains of pages" not in capsys.readouterr().out


@pytest.mark.parametrize("value, ceiling", [("auto", 32), ("AUTO", 32), ("1", 1), ("12", 12)])
def test_workers_is_auto_or_a_ceiling(value, ceiling, workdir):
    parser = wcr.build_parser()
    settings = wcr.settings_from(parser.parse_args(["--dry_run", "--workers", value]), {}, "")
    assert settings.workers == ceiling


def test_a_dry_run_piped_into_head_ends_quietly(tmp_path):
    result = subprocess.run(f"{shlex.quote(sys.executable)} {shlex.quote(SCRIPT)} --dry_run | head -1", shell=True,
                            capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert result.stdout.startswith("Dry run: 53 weeks") and result.stderr == ""


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


# --- The README and the script's own map ---------------------------------------------------


def test_the_readmes_exit_codes_and_the_helps_say_the_same(tmp_path):
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    table = re.search(r"\| code \| meaning \|\n\|---\|---\|\n((?:\|.*\|\n)+)", readme).group(1)
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()]
    assert [(int(code), meaning) for code, meaning in rows] == list(wcr.EXIT_MEANINGS)
    shown = " ".join(script("--help", cwd=tmp_path).stdout.split())
    for code, meaning in wcr.EXIT_MEANINGS:
        assert f"{code} {meaning}" in shown


def test_the_readmes_commands_run_as_written(tmp_path):
    commands = [line for line in readme_commands() if "weeklycontainerreport.py" in line]
    assert len(commands) >= 3
    for line in commands:  # each with --dry_run: the flags and their values are checked, no call is made
        words = shlex.split(line)
        start = next(index for index, word in enumerate(words) if word.endswith("weeklycontainerreport.py"))
        ends = [index for index, word in enumerate(words) if word.startswith((">", "2>", "|", "&"))]
        words = words[start + 1:min(ends, default=len(words))]  # up to the shell's redirections
        result = subprocess.run([sys.executable, SCRIPT, *words, "--dry_run"], capture_output=True,
                                text=True, cwd=tmp_path, timeout=60, env=dict(os.environ, QUALYS_GATEWAY=GATEWAY))
        assert result.returncode == 0, (line, result.stderr)


def banners():
    """The script's banners: (line number, title)."""
    lines = open(SCRIPT, encoding="utf-8").read().split("\n")
    return [(number, match.group(1)) for number, line in enumerate(lines, 1)
            if (match := re.match(r"# --- (.+?) -+$", line))]


def test_the_script_reads_as_its_own_map():
    import ast
    text = open(SCRIPT, encoding="utf-8").read()
    found = banners()
    titles = [title for _, title in found]
    head = text[:text.index("# --- ")]
    assert all(title in " ".join(head.split()) for title in titles)  # the map after the imports names them all
    ends = [number for number, _ in found[1:]] + [text.count("\n") + 1]
    for (start, title), end in zip(found, ends):
        assert end - start <= 400, f"{title} is {end - start} lines: two concepts?"

    def section(line):
        return sum(1 for number, _ in found if number < line) - 1

    defined = {}
    for node in ast.parse(text).body:
        for target in getattr(node, "targets", []) + [node]:
            name = getattr(target, "name", None) or getattr(target, "id", None)
            if name:
                defined[name] = section(node.lineno)
    late = set()
    for node in ast.parse(text).body:
        here = section(node.lineno)
        if here < 0 or titles[here] == "Command line":
            continue
        for used in ast.walk(node):
            if isinstance(used, ast.Name) and isinstance(used.ctx, ast.Load) and defined.get(used.id, -1) > here:
                late.add(f"{titles[here]} uses {used.id} from {titles[defined[used.id]]}")
    assert not late  # each section uses only what stands above it


def test_a_log_line_clears_the_status_line_first_and_the_status_line_comes_back_after_it():
    stream = io.StringIO()
    progress = wcr.Progress(stream, live=True)
    progress.weeks_total = 1
    progress.page(250)
    progress.write_line("INFO a line")
    progress.finish()
    status = "\r\x1b[Kweeks 0/1  250 containers  1 page"
    assert stream.getvalue() == status + "\r\x1b[KINFO a line\n" + status + "\r\x1b[K"
