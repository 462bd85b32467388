"""Observable by the tools ops teams use: --metrics_file for node_exporter's textfile collector,
--ping_url for a healthchecks-style service, --keep_logs for the run logs."""
import datetime as dt
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

import weeklycontainerreport as wcr
from conftest import free_port, WEEK, everything_printed, files, log_text, week_range
from fake_gateway import DEMO_TOKEN, SCRIPT, Fault
from ping_service import CHECK_ID, PingService

PREFIX = wcr.METRICS_PREFIX
WEEK2 = week_range("2025-09-08", "2025-09-15")


def metrics(path):
    """The samples of a metrics file, parsed back by Prometheus's own parser: {(name, result): value}."""
    text = path.read_text()
    samples = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.name.startswith(PREFIX)
        assert family.documentation
        for sample in family.samples:
            assert sample.timestamp is None
            samples[(sample.name[len(PREFIX):], sample.labels.get("result"))] = sample.value
    return samples


@pytest.fixture
def pings():
    with PingService() as service:
        yield service


# --- --metrics_file ----------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_the_metrics_file_parses_back_as_gauges_with_one_prefix_and_no_timestamps(run, gateway, workdir, clock):
    gateway.generate(30, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    assert run(*week_range("2025-09-01", "2025-09-15"), "--metrics_file", "job.prom") == 0
    raw = (workdir / "job.prom").read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")
    assert raw.count(b"# HELP ") == raw.count(b"# TYPE ") == 7
    samples = metrics(workdir / "job.prom")
    assert samples[("last_run_exit_code", None)] == 0
    assert samples[("last_run_end_time_seconds", None)] == pytest.approx(clock.now().timestamp(), abs=1)
    assert samples[("last_success_time_seconds", None)] == samples[("last_run_end_time_seconds", None)]
    assert {result: samples[("last_run_week_results", result)] for result in ("fetched", "skipped", "failed", "unfinished")
            } == {"fetched": 2, "skipped": 0, "failed": 0, "unfinished": 0}
    assert samples[("last_run_containers", None)] == 30
    assert samples[("last_run_csv_rows", None)] == sum(1 for _ in open(workdir / "weekly_csv_reports" /
                                                                       "2025-09-01_2025-09-08.csv")) - 1
    assert samples[("last_run_duration_seconds", None)] >= 0
    assert files(workdir) == ["job.prom", "logs", "temp_reports", "weekly_csv_reports", "weekly_reports"]


@pytest.mark.timeout(30)
def test_the_metrics_file_is_0644_under_umask_077_and_replaces_a_symlink_without_following_it(
        run, gateway, workdir):
    target = workdir / "elsewhere.txt"
    target.write_text("not ours\n")
    os.symlink(target, workdir / "job.prom")
    old = os.umask(0o077)
    try:
        assert run(*WEEK, "--metrics_file", str(workdir / "job.prom")) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(workdir / "job.prom").st_mode) == 0o644
    assert not os.path.islink(workdir / "job.prom") and target.read_text() == "not ours\n"
    assert metrics(workdir / "job.prom")[("last_run_exit_code", None)] == 0


@pytest.mark.timeout(30)
def test_after_a_failed_run_the_last_success_is_carried_over_unchanged(run, gateway, workdir, clock):
    gateway.generate(10, dt.date(2025, 9, 1), dt.date(2025, 9, 15))
    assert run(*WEEK, "--metrics_file", "job.prom") == 0
    first = metrics(workdir / "job.prom")
    clock.advance(86400)
    gateway.faults = [Fault("status", status=500, times=-1)]
    assert run(*WEEK2, "--metrics_file", "job.prom") == 1
    second = metrics(workdir / "job.prom")
    assert second[("last_run_exit_code", None)] == 1 and second[("last_run_week_results", "failed")] == 1
    assert second[("last_success_time_seconds", None)] == first[("last_success_time_seconds", None)]
    assert second[("last_run_end_time_seconds", None)] == pytest.approx(  # its retries took time too
        first[("last_run_end_time_seconds", None)] + 86400 + second[("last_run_duration_seconds", None)], abs=1)


@pytest.mark.timeout(30)
def test_a_run_that_cannot_reach_the_gateway_still_writes_its_metrics(run, workdir):
    code = run(*WEEK, "--metrics_file", "job.prom", url=f"http://127.0.0.1:{free_port()}")
    assert code == 1
    samples = metrics(workdir / "job.prom")
    assert samples[("last_run_exit_code", None)] == 1
    assert samples[("last_success_time_seconds", None)] == 0  # never succeeded
    assert samples[("last_run_week_results", "unfinished")] == 1


@pytest.mark.timeout(30)
def test_a_run_stopped_by_a_bad_token_writes_exit_code_3(run, gateway, workdir, monkeypatch):
    monkeypatch.setenv("QUALYS_TOKEN", "not-the-demo-token")
    assert run(*WEEK, "--metrics_file", "job.prom") == 3
    assert metrics(workdir / "job.prom")[("last_run_exit_code", None)] == 3


@pytest.mark.timeout(60)
def test_a_run_stopped_by_sigterm_writes_exit_code_143_and_pings_it(gateway, tmp_path, pings):
    gateway.generate(1200, dt.date(2025, 9, 1), dt.date(2025, 9, 22))
    gateway.latency_seconds = 0.08
    process = subprocess.Popen(
        [sys.executable, SCRIPT, gateway.url, *week_range("2025-09-01", "2025-09-22"), "--workers", "1", "--slices",
         "1", "--output_dir", str(tmp_path), "--metrics_file", str(tmp_path / "job.prom"), "--ping_url", pings.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, QUALYS_TOKEN=DEMO_TOKEN))
    deadline = time.monotonic() + 20
    while len(gateway.list_calls()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=40)
    assert process.returncode == 143, err
    samples = metrics(tmp_path / "job.prom")
    assert samples[("last_run_exit_code", None)] == 143 and samples[("last_run_week_results", "unfinished")] >= 1
    assert pings.suffixes() == ["start", "143"]


@pytest.mark.timeout(30)
def test_a_metrics_file_that_cannot_be_written_at_the_end_is_one_line_and_changes_no_exit_code(
        run, gateway, workdir, capsys, monkeypatch):
    real_publish = wcr.StagedFile.publish

    def publish(staged):
        if staged.final_path.endswith("job.prom"):
            raise OSError(28, "No space left on device")
        real_publish(staged)

    monkeypatch.setattr(wcr.StagedFile, "publish", publish)
    assert run(*WEEK, "--metrics_file", str(workdir / "job.prom")) == 0
    err = capsys.readouterr().err
    assert err.count("Cannot write the metrics file") == 1 and "Traceback" not in err
    assert not (workdir / "job.prom").exists() and files(workdir / "temp_reports") == [".lock"]


@pytest.mark.parametrize("where", ["no-such-folder/job.prom", "a-folder", "weekly_reports/job.prom",
                                   "temp_reports/.lock", wcr.CATALOG_NAME, "logs/job.prom", "fifo.prom"])
def test_a_metrics_file_that_could_never_be_written_or_is_the_exports_own_is_refused_before_any_call(
        run, gateway, workdir, capsys, where):
    (workdir / "a-folder").mkdir()
    os.mkfifo(workdir / "fifo.prom")
    assert run(*WEEK, "--metrics_file", str(workdir / where)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--metrics_file" in err and "Traceback" not in err
    assert gateway.calls == [] and not (workdir / "weekly_reports").exists()


@pytest.mark.timeout(30)
def test_a_rebuild_leaves_the_metrics_and_the_pings_alone(run, gateway, workdir, clock, pings):
    assert run(*WEEK, "--metrics_file", "job.prom") == 0
    before = (workdir / "job.prom").read_bytes()
    assert wcr.main(["--rebuild_csv", "--metrics_file", "job.prom", "--ping_url", pings.url], clock=clock) == 0
    assert (workdir / "job.prom").read_bytes() == before and pings.suffixes() == []


# --- --ping_url ----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_pings_go_out_in_order_with_the_exit_code_and_the_summary(run, gateway, workdir, pings):
    gateway.generate(10, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    assert run(*WEEK, "--ping_url", pings.url) == 0
    gateway.faults = [Fault("status", status=500, times=-1)]
    assert run(*WEEK2, "--ping_url", pings.url + "/") == 1
    assert pings.suffixes() == ["start", "0", "start", "1"]
    bodies = [body for _, body in pings.pings]
    assert bodies[0] == "" and bodies[1].startswith("Summary: 1 week planned, 1 fetched")
    assert "1 failed" in bodies[3] and len(bodies[3]) < 100_000


@pytest.mark.timeout(30)
def test_a_ping_service_that_refuses_is_retried_and_changes_nothing(run, gateway, workdir, pings):
    pings.status = 500
    assert run(*WEEK, "--ping_url", pings.url) == 0
    assert pings.suffixes() == ["start"] * wcr.PING_ATTEMPTS + ["0"] * wcr.PING_ATTEMPTS
    assert log_text(workdir).count("failed (HTTP 500, 3 attempts); the run's outcome stands") == 2


@pytest.mark.timeout(30)
def test_a_dead_ping_service_changes_nothing_and_never_holds_the_end_for_long(run, gateway, workdir, pings,
                                                                             monkeypatch):
    monkeypatch.setattr(wcr, "PING_BUDGET_SECONDS", 1)
    pings.stall = True
    started = time.monotonic()
    assert run(*WEEK, "--ping_url", pings.url) == 0
    assert time.monotonic() - started < 10
    assert "did not end within 1s; the run's outcome stands" in log_text(workdir)
    assert run(*WEEK2, "--ping_url", f"http://127.0.0.1:{free_port()}/{CHECK_ID}") == 0  # nothing listens
    assert "failed (ConnectionError" in log_text(workdir)
    assert "/***/start failed (ConnectionError: connection refused by 127.0.0.1" in log_text(workdir)


def test_the_ping_urls_secret_is_redacted_in_any_line_that_would_show_it():
    secrets = wcr.SecretFilter()
    url = f"https://hc-ping.example.com/{CHECK_ID}"
    pinger = wcr.Pinger(url, None, None, secrets)
    assert pinger.shown == "https://hc-ping.example.com/***"
    for line in (f"POST {url}/start", f'"POST /{CHECK_ID}/0 HTTP/1.1" 200',
                 f"Max retries exceeded with url: /{CHECK_ID}/0"):
        assert CHECK_ID not in secrets.redact(line) and "***" in secrets.redact(line)


@pytest.mark.timeout(30)
def test_the_ping_url_is_never_printed_nor_logged(run, gateway, workdir, pings, capsys):
    pings.status = 404
    assert run(*WEEK, "--ping_url", pings.url) == 0
    shown = everything_printed(workdir, capsys.readouterr())
    assert "/***" in shown and CHECK_ID not in shown and "ping-secret" not in shown


@pytest.mark.parametrize("url", ["http://hc-ping.example.com/abc", "ftp://127.0.0.1/x", "https://u:p@hc/x",
                                 "https://hc-ping.com/x#top"])
def test_a_ping_url_must_be_https_except_to_a_loopback_host(workdir, url, capsys):
    assert wcr.main(["--dry_run", "--ping_url", url]) == 2
    err = capsys.readouterr().err
    assert "--ping_url" in err and "Traceback" not in err


# --- --keep_logs ---------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_keep_logs_keeps_exactly_the_n_newest_of_ours_and_nothing_else_is_touched(run, gateway, workdir, tmp_path):
    logs = workdir / "logs"
    logs.mkdir()
    ours = ["weekly_report_20250101T000000Z.log", "weekly_report_20250102T000000Z.log",
            "weekly_report_20250102T000000Z-2.log", "weekly_report_20250103T000000Z.log"]
    others = ["notes.txt", "weekly_report_latest.log", "weekly_report_20250101T000000Z.log.gz"]
    for name in ours + others:
        (logs / name).write_text("x")
    outside = tmp_path.parent / f"{tmp_path.name}-target.log"
    outside.write_text("keep me")
    os.symlink(outside, logs / "weekly_report_20240101T000000Z.log")
    (logs / "weekly_report_20240102T000000Z.log").mkdir()
    assert run(*WEEK, "--keep_logs", "3") == 0
    left = files(logs)
    this_run = [name for name in left if name not in ours + others and wcr.LOG_NAME.match(name)
                and name.startswith("weekly_report_2026")]
    assert len(this_run) == 1
    assert sorted(set(left) & set(ours)) == ["weekly_report_20250102T000000Z-2.log",
                                             "weekly_report_20250103T000000Z.log"]
    assert set(others) <= set(left) and outside.read_text() == "keep me"
    assert "weekly_report_20240101T000000Z.log" in left and "weekly_report_20240102T000000Z.log" in left
    assert "Removed 2 old run logs (--keep_logs 3)" in (logs / this_run[0]).read_text()


@pytest.mark.timeout(30)
def test_without_keep_logs_every_log_stays(run, gateway, workdir):
    for _ in range(3):
        assert run(*WEEK) == 0
    assert len(files(workdir / "logs")) == 3


@pytest.mark.parametrize("count", ["0", "-1"])
def test_keep_logs_below_one_is_a_usage_error(workdir, count):
    assert wcr.main(["--dry_run", "--keep_logs", count]) == 2


# --- Monitoring under hostile conditions -------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_start_ping_that_never_ends_never_keeps_the_end_ping_from_going_out(run, gateway, workdir, pings):
    pings.stall_suffixes = {"start"}
    started = time.monotonic()
    assert run(*WEEK, "--ping_url", pings.url) == 0
    assert pings.wait_for(2) and pings.suffixes()[-1] == "0"
    assert time.monotonic() - started < wcr.PING_ORDER_SECONDS + 5


@pytest.mark.timeout(30)
def test_a_ping_answers_body_is_never_read(run, gateway, workdir, pings):
    pings.endless_body = True  # a gigabyte, trickled: reading it would take the whole deadline and more
    started = time.monotonic()
    assert run(*WEEK, "--ping_url", pings.url) == 0
    assert time.monotonic() - started < 3 and pings.suffixes() == ["start", "0"]
    assert "The ping" not in log_text(workdir)  # no warning: each ping ended at its status


@pytest.mark.timeout(30)
def test_a_run_refused_by_the_lock_pings_nothing_and_leaves_metrics_and_logs_alone(run, gateway, workdir, pings):
    import fcntl
    assert run(*WEEK, "--metrics_file", "job.prom") == 0
    before = (workdir / "job.prom").read_bytes()
    (workdir / "logs" / "weekly_report_20250101T000000Z.log").write_text("the running export's")
    with open(workdir / "temp_reports" / ".lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds the folder
        assert run(*WEEK, "--metrics_file", "job.prom", "--ping_url", pings.url, "--keep_logs", "1") == 1
    assert pings.suffixes() == [] and (workdir / "job.prom").read_bytes() == before
    assert (workdir / "logs" / "weekly_report_20250101T000000Z.log").exists()


@pytest.mark.timeout(30)
def test_keep_logs_always_keeps_this_runs_log_even_among_logs_named_in_the_future(run, gateway, workdir):
    logs = workdir / "logs"
    logs.mkdir()
    (logs / "weekly_report_20991231T235959Z.log").write_text("from the future")
    assert run(*WEEK, "--keep_logs", "1") == 0
    [kept] = files(logs)
    assert kept.startswith("weekly_report_2026") and "Removed 1 old run log" in (logs / kept).read_text()


@pytest.mark.timeout(30)
def test_the_ping_url_can_come_from_the_environment_and_keeps_its_query(run, gateway, workdir, pings, monkeypatch):
    monkeypatch.setenv("QUALYS_PING_URL", pings.url + "?rid=42")
    assert run(*WEEK) == 0
    assert pings.suffixes() == ["start?rid=42", "0?rid=42"]


@pytest.mark.parametrize("url", ["https://hc-ping.com:99999/s3cr3tk3y-ab12cd34", "hc-ping.com/s3cr3tk3y-ab12cd34"])
def test_a_malformed_ping_url_is_refused_without_repeating_it(workdir, url, capsys, monkeypatch):
    monkeypatch.setenv("QUALYS_PING_URL", url)
    assert wcr.main(["--dry_run"]) == 2
    err = capsys.readouterr().err
    assert "--ping_url" in err and "s3cr3tk3y" not in err


def test_only_the_pieces_of_a_ping_url_that_look_like_secrets_are_redacted():
    secrets = wcr.SecretFilter()
    wcr.Pinger("https://hc-ping.com/Xk2-pQ9zLm4RtW7uYvB1cE/containers", None, None, secrets)
    line = secrets.redact("Week done: 12 containers; ping https://hc-ping.com/Xk2-pQ9zLm4RtW7uYvB1cE/containers/0")
    assert "Xk2-pQ9zLm4RtW7uYvB1cE" not in line and "12 containers" in line


def test_no_metric_name_reads_as_a_time_unit_other_than_seconds_nor_as_a_counter():
    text = wcr.metrics_text(wcr.run_results(None, 0, wcr.SystemClock().now(), 1.0), 0.0)
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    for name in names:  # promtool check metrics: "use base unit" and "_total" on a gauge
        assert not set(name.split("_")) & {"minutes", "hours", "days", "weeks", "ms", "s", "m", "h", "d"}, name
        assert not name.endswith("_total")


@pytest.mark.timeout(30)
def test_a_der_ca_bundle_is_refused_in_one_line_before_any_call(run, gateway, workdir, capsys, monkeypatch):
    import ssl
    der = workdir / "ca.der"
    der.write_bytes(ssl.PEM_cert_to_DER_cert(open(os.path.join(os.path.dirname(__file__), "tls", "ca.pem")).read()))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(der))
    assert run(*WEEK) == 2
    err = capsys.readouterr().err
    assert err.count("not a PEM bundle") == 1 and gateway.calls == []
