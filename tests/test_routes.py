"""Routes and their failures: every request has a deadline whatever the route (direct, an http:// or
https:// proxy, SOCKS), every resource a bound, and every way a route fails is one true sentence."""
import datetime as dt
import os
import subprocess
import sys
import threading
import time

import pytest
import requests

import weeklycontainerreport as wcr
from conftest import (QUERY, WEEK, WEEK_UNSLICED, client_for, everything_printed, files, fill_week,
                      free_port, give_login, keep_count, log_text, ms, week_range)
from fake_gateway import AUTH_PATH, DEMO_TOKEN, SCRIPT, FakeGateway, Fault
from proxies import CA, CERT, HttpProxy, SocksProxy

TLS = os.path.join(os.path.dirname(CERT))


def route_through(monkeypatch, **variables):
    """Set the proxy and CA variables a run reads, and nothing else that could bypass them."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "no_proxy",
                 "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def tls_gateway():
    with FakeGateway(tls=CERT) as fake:
        yield fake


def cut_at_the_deadline(url):
    """Fetch one page with a half-second deadline and one attempt; return the seconds it took."""
    client, session = client_for(url, read_timeout_seconds=0.5, max_attempts=1)
    started = time.monotonic()
    with session, pytest.raises(wcr.WeekFailed, match=r"timed out: no whole answer within --read_timeout"):
        client.fetch_page(QUERY, None, "test", keep_count)
    return time.monotonic() - started


# --- Every request has a deadline, whatever the route -------------------------------------------


def test_a_proxy_that_never_finishes_its_connect_answer_is_cut_at_the_deadline(tls_gateway, monkeypatch):
    with HttpProxy("stall") as proxy:
        route_through(monkeypatch, HTTPS_PROXY=proxy.url, REQUESTS_CA_BUNDLE=CA)
        assert cut_at_the_deadline(tls_gateway.url) < 3  # the proxy would go on for 8 s
        assert proxy.asked == [tls_gateway.url.split("//")[1]]


def test_through_an_https_proxy_the_deadline_cuts_the_tls_inside_tls(tls_gateway, monkeypatch):
    fill_week(tls_gateway, 10)
    tls_gateway.faults = [Fault("trickle", seconds=0.05, times=-1)]
    with HttpProxy("relay", tls=True) as proxy:  # by name: urllib3 1.26 sends no SNI to an IP, and then fails
        route_through(monkeypatch, HTTPS_PROXY=proxy.url.replace("127.0.0.1", "localhost"), REQUESTS_CA_BUNDLE=CA)
        assert cut_at_the_deadline(tls_gateway.url) < 3
        assert proxy.asked  # it did go through the https:// proxy


def test_through_a_socks_proxy_the_deadline_applies(gateway, monkeypatch):
    fill_week(gateway, 10)
    gateway.faults = [Fault("trickle", seconds=0.05, times=-1)]
    with SocksProxy() as proxy:
        route_through(monkeypatch, ALL_PROXY=proxy.url)
        assert cut_at_the_deadline(gateway.url) < 3
        assert proxy.asked == [gateway.url.split("//")[1]]


def test_a_socks_proxy_without_pysocks_is_one_line_and_a_fast_stop(gateway, tmp_path):
    fill_week(gateway, 10)
    code = ("import runpy, sys; sys.modules['socks'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    env = dict(os.environ, QUALYS_TOKEN=DEMO_TOKEN, ALL_PROXY="socks5h://127.0.0.1:1080", NO_PROXY="")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code, SCRIPT, gateway.url, *week_range("2025-01-06", "2026-01-05")],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 1 and time.monotonic() - started < 15
    assert result.stderr.count("needs the PySocks package") == 1
    assert "Missing dependencies for SOCKS support" in result.stderr and "Traceback" not in result.stderr
    assert gateway.calls == []


def test_a_connection_the_deadline_cannot_cut_is_said_once(run, gateway, workdir, clock):
    gateway.generate(60, dt.date(2025, 9, 1), dt.date(2025, 9, 22))
    with requests.Session() as plain:  # not the script's own: its connections are not watched
        code = wcr.main([gateway.url, *week_range("2025-09-01", "2025-09-22")], clock=clock, session=plain)
    assert code == 0
    assert log_text(workdir).count("The per-request deadline (--read_timeout) cannot cut a connection") == 1


# --- Every resource has a bound ----------------------------------------------------------------------


def test_a_redirect_is_never_followed_nor_its_endless_body_read(run, gateway, workdir):
    fill_week(gateway, 10)
    gateway.faults = [Fault("redirect", times=-1)]  # a body that never ends
    started = time.monotonic()
    assert run(*WEEK_UNSLICED) == 1
    assert time.monotonic() - started < 5
    assert ("FAILED: HTTP 302: the gateway redirects to https://qualysguard.qg2.apps.qualys.com/portal-front/login, "
            "which is not followed") in log_text(workdir)
    assert len(gateway.list_calls()) == 1  # not retried


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak RSS from /proc")
def test_a_redirect_with_a_gzip_bomb_never_takes_memory(gateway, tmp_path):
    from benchmark import run_exporter  # the benchmark's child reports its own peak RSS
    fill_week(gateway, 10)
    gateway.faults = [Fault("redirect", size=320 << 20)]
    code, _, _, peak = run_exporter(gateway.url, str(tmp_path), dt.date(2025, 9, 1), dt.date(2025, 9, 8),
                                    "--slices", "1")
    assert code == 1 and "redirects to https://qualysguard" in log_text(tmp_path)
    assert 0 < peak / 2 ** 20 < 100, f"peak RSS {peak / 2 ** 20:.0f} MiB"


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak RSS from /proc")
def test_a_huge_container_costs_a_small_multiple_of_its_size(tmp_path):
    from benchmark import run_exporter  # the benchmark's child reports its own peak RSS
    with FakeGateway(vulns_per_container=1500, software_per_vuln=100) as big, FakeGateway() as empty:
        big.generate(1, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
        size = len(big.container_text(big.records[0]))
        assert size > 4 << 20
        runs = [run_exporter(gateway.url, str(tmp_path / name), dt.date(2025, 9, 1), dt.date(2025, 9, 8))
                for gateway, name in ((big, "big"), (empty, "empty"))]
    assert [code for code, _, _, _ in runs] == [0, 0]
    (_, _, _, peak), (_, _, _, baseline) = runs
    assert (peak - baseline) / size < 10, f"{(peak - baseline) / size:.1f}x its JSON"


def fetch_four_slices_at_once(client, session, consume) -> list:
    """Four first pages of the week, asked for side by side; their (consume's result, cursor)."""
    start, end = ms(2025, 9, 1), ms(2025, 9, 8)
    bounds = [(start + (end - start) * part // 4, start + (end - start) * (part + 1) // 4) for part in range(4)]
    results = []
    threads = [threading.Thread(target=lambda low=low, high=high: results.append(
        client.fetch_page(wcr.range_query(low, high, ""), None, "slice", consume))) for low, high in bounds]
    with session:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    return results


def test_answers_in_flight_never_hold_more_than_the_run_wide_budget(gateway):
    gateway.generate(1000, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    gateway.latency_seconds = 0.05
    client, session = client_for(gateway.url, max_bytes_in_flight=1)  # room for one answer: the oldest
    holding = []

    class Watched(wcr.ByteBudget):
        def _grow(self, ticket, count):
            super()._grow(ticket, count)
            with self._changed:
                holding.append(sum(1 for held in self._held.values() if held))

    client.budget = Watched(1, client.stop)

    def consume(text):
        time.sleep(0.05)  # the other answers come meanwhile
        return keep_count(text)

    results = fetch_four_slices_at_once(client, session, consume)
    assert len(results) == 4 and sum(count for count, _ in results) == 4 * 250
    assert max(holding) == 1  # each answer was read only once the one before was processed


def test_answers_that_come_at_once_are_processed_one_at_a_time_each_whole(gateway):
    gateway.generate(1000, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    gateway.latency_seconds = 0.05
    client, session = client_for(gateway.url)  # room for all four answers at once
    busy, most, lock = [0], [0], threading.Lock()

    def consume(text):
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        time.sleep(0.05)  # a page's processing, which would let the others in
        with lock:
            busy[0] -= 1
        return keep_count(text)

    results = fetch_four_slices_at_once(client, session, consume)
    assert len(results) == 4 and sum(count for count, _ in results) == 4 * 250
    assert most[0] == 1  # the first done goes on at once, instead of all four late


def test_a_page_waiting_for_its_turn_to_be_processed_stops_with_the_run(gateway):
    gateway.generate(1000, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    client, session = client_for(gateway.url)
    processing, release, ended = threading.Event(), threading.Event(), []

    def stuck(text):
        processing.set()
        release.wait(10)  # a page whose processing does not end (a disk that hangs, say)
        return keep_count(text)

    def waiting():
        try:
            client.fetch_page(QUERY, None, "second", keep_count)
        except wcr.RunStopping:
            ended.append(time.monotonic())

    with session:
        first = threading.Thread(target=client.fetch_page, args=(QUERY, None, "first", stuck))
        first.start()
        assert processing.wait(10)
        second = threading.Thread(target=waiting)
        second.start()
        time.sleep(0.3)  # its answer came, and waits for its turn
        stopped = time.monotonic()
        client.stop()
        second.join(5)
        release.set()
        first.join(5)
    assert ended and ended[0] - stopped < 1.0


def test_a_workbook_librarys_temp_files_are_ours_and_a_stopped_run_removes_them(run, gateway, workdir, monkeypatch):
    fill_week(gateway, 40)
    stale = workdir / "temp_reports" / "wcr-0123456789ab-xlsxwriter.tmp"
    stale.mkdir(parents=True)
    (stale / "tmpk2j3h4").write_text("a killed run's sheet")
    real_write_row, rows = wcr.write_row, []

    def write_row(*args):
        rows.append(1)
        if len(rows) == 5:
            raise KeyboardInterrupt()  # Ctrl-C while the workbook is being written
        return real_write_row(*args)

    monkeypatch.setattr(wcr, "write_row", write_row)
    assert run(*WEEK_UNSLICED, "--xlsx") == 130
    assert files(workdir / "temp_reports") == [".lock"]  # the library's tmp* files too, and the stale folder
    assert files(workdir / "weekly_xlsx_reports") == []


# --- Every failure is one true sentence -------------------------------------------------------------


@pytest.mark.parametrize("token, problem", [
    ("eyJhbGciOi.eyJzdWIi.truncated…", "holds horizontal ellipsis (U+2026), which an HTTP header cannot carry"),
    ("eyJhbGciOi.eyJzd\nWIi.sig", "holds a line break, a space or a control character"),
    ('"eyJhbGciOi.eyJzdWIi.sig"', "is in quotes (docker --env-file and some .env files keep them)"),
    ("Bearer eyJhbGciOi.eyJzdWIi.sig", "starts with 'Bearer ': give the token alone"),
], ids=["ellipsis", "line-break", "quotes", "bearer"])
def test_a_token_that_cannot_be_sent_is_said_in_one_line_and_the_next_source_is_used(
        token, problem, run, gateway, workdir, monkeypatch, capfd):
    fill_week(gateway, 20)
    monkeypatch.setenv("QUALYS_TOKEN", token)
    monkeypatch.setattr(wcr, "EMBEDDED_TOKEN", DEMO_TOKEN)
    assert run(*WEEK_UNSLICED) == 0
    assert {call["token"] for call in gateway.list_calls()} == {DEMO_TOKEN}
    monkeypatch.setattr(wcr, "EMBEDDED_TOKEN", "")
    assert run(*WEEK_UNSLICED, "--output_dir", "second") == 3  # no source left
    printed = everything_printed(workdir, capfd.readouterr())
    assert printed.count(f"The token from QUALYS_TOKEN cannot be used: it {problem}") == 4  # 2 runs: screen, log
    assert "Traceback" not in printed and "unexpected error" not in printed
    body = token.strip('"').replace("Bearer ", "")
    assert body not in printed and repr(body.encode("utf-8"))[2:-1] not in printed


def test_a_429_on_the_login_is_waited_for_and_retried(run, gateway, workdir, monkeypatch, clock):
    fill_week(gateway, 20)
    give_login(gateway, monkeypatch, "pw")
    gateway.faults = [Fault("429", seconds=30, path=AUTH_PATH)]
    assert run(*WEEK_UNSLICED) == 0
    assert gateway.logins == 2 and 30.0 in clock.sleeps
    assert "Login: HTTP 429, waiting 30s" in log_text(workdir)


def test_a_redirect_on_the_login_says_the_url_is_not_the_gateway(run, gateway, workdir, monkeypatch, capsys):
    give_login(gateway, monkeypatch, "pw")
    gateway.faults = [Fault("redirect", path=AUTH_PATH, size=1 << 20)]
    assert run(*WEEK_UNSLICED) == 2
    err = capsys.readouterr().err
    assert "answered HTTP 302, a redirect to https://qualysguard.qg2.apps.qualys.com/portal-front/login: this URL " \
           "is probably not the API gateway" in err
    assert gateway.list_calls() == [] and "Traceback" not in err


def test_a_login_that_answers_an_html_page_is_an_authentication_failure(run, gateway, workdir, monkeypatch, capsys):
    give_login(gateway, monkeypatch, "pw")
    gateway.faults = [Fault("html", path=AUTH_PATH)]
    assert run(*WEEK_UNSLICED) == 3
    err = capsys.readouterr().err
    assert "answered HTTP 200 with an HTML page, not a token" in err and "Logged in" not in err
    assert "unexpected error" not in err


def test_a_proxy_that_refuses_is_named_not_the_gateway(tls_gateway, workdir, clock, monkeypatch, capsys):
    port = free_port()
    route_through(monkeypatch, HTTPS_PROXY=f"http://127.0.0.1:{port}", REQUESTS_CA_BUNDLE=CA)
    assert wcr.main([tls_gateway.url, *WEEK], clock=clock) == 1
    err = capsys.readouterr().err
    assert f"Cannot reach the gateway, stopping: connection refused by the proxy http://127.0.0.1:{port} " \
           "(HTTPS_PROXY)" in err


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_a_proxy_that_wants_a_password_stops_the_run_at_once(scheme, gateway, tls_gateway, workdir, clock,
                                                             monkeypatch, capsys):
    target = tls_gateway if scheme == "https" else gateway  # CONNECT, or an absolute-URI request
    with HttpProxy("407") as proxy:
        variable = "HTTPS_PROXY" if scheme == "https" else "HTTP_PROXY"
        route_through(monkeypatch, **{variable: proxy.url, "REQUESTS_CA_BUNDLE": CA})
        assert wcr.main([target.url, *week_range("2025-01-06", "2026-01-05")], clock=clock) == 1
        assert len([target for target in proxy.asked if target]) == 1  # not 52 weeks of retries
    err = capsys.readouterr().err
    assert f"the proxy {proxy.url} ({variable}) requires authentication (HTTP 407)" in err


@pytest.mark.parametrize("certificate, advice", [
    ("expired.pem", "has expired, or this machine's clock is wrong (it reads 2026-01-15 12:00 UTC)"),
    ("wronghost.pem", "the TLS certificate is not for 127.0.0.1: is the gateway URL right?"),
    ("untrusted.pem", "set REQUESTS_CA_BUNDLE to its CA bundle"),
])
def test_tls_advice_matches_the_failure(certificate, advice, workdir, clock, monkeypatch, capsys):
    route_through(monkeypatch, REQUESTS_CA_BUNDLE=CA)
    with FakeGateway(tls=os.path.join(TLS, certificate)) as bad:
        assert wcr.main([bad.url, *WEEK], clock=clock) == 1
    err = capsys.readouterr().err
    assert advice in err and "Traceback" not in err


def test_a_ca_bundle_that_does_not_exist_is_named(workdir, clock, monkeypatch, capsys):
    route_through(monkeypatch, REQUESTS_CA_BUNDLE="/etc/ssl/certs/corp-proxy-ca.pem")
    assert wcr.main(["https://gateway.qg2.apps.qualys.com", *WEEK], clock=clock) == 2
    err = capsys.readouterr().err
    assert "REQUESTS_CA_BUNDLE names '/etc/ssl/certs/corp-proxy-ca.pem', which does not exist" in err
    assert files(workdir) == []


def test_urllib3s_system_time_warning_is_one_log_line(tls_gateway, workdir, clock, monkeypatch, capfd):
    import urllib3.connection
    fill_week(tls_gateway, 20)
    route_through(monkeypatch, REQUESTS_CA_BUNDLE=CA)
    monkeypatch.setattr(urllib3.connection, "RECENT_DATE", dt.date(2999, 1, 1))  # "this clock is way off"
    assert wcr.main([tls_gateway.url, *week_range("2025-09-01", "2025-09-22")], clock=clock) == 0
    err = capfd.readouterr().err
    assert err.count("SystemTimeWarning") == 1 and "connection.py" not in err  # a log line, not Python's
    assert "SystemTimeWarning" in log_text(workdir)


def test_bytes_that_are_not_utf8_in_an_argument_are_one_line(tmp_path):
    result = subprocess.run([sys.executable, SCRIPT, "https://gateway.qg2.apps.qualys.com", "--optional_filter",
                             b"name:caf\xe9"], capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--optional_filter holds bytes that are not UTF-8" in result.stderr and "Traceback" not in result.stderr


def test_a_terminal_that_cannot_show_a_character_never_ends_a_dry_run(tmp_path):
    result = subprocess.run([sys.executable, SCRIPT, "--dry_run", "--optional_filter", "name:café☕"],
                            capture_output=True, cwd=tmp_path, timeout=30, env=dict(os.environ, PYTHONIOENCODING="ascii"))
    assert result.returncode == 0 and b"Traceback" not in result.stderr
    assert b"name:caf\\xe9\\u2615" in result.stdout


def test_an_output_folder_whose_name_is_not_utf8_still_gets_its_log(gateway, tmp_path):
    fill_week(gateway, 20)
    folder = os.fsdecode(b"out-caf\xe9")  # a name of Latin-1 bytes
    result = subprocess.run([sys.executable, SCRIPT, gateway.url, *WEEK, "--output_dir", folder], capture_output=True,
                            cwd=tmp_path, timeout=30, env=dict(os.environ, QUALYS_TOKEN=DEMO_TOKEN))
    assert result.returncode == 0, result.stderr
    logs = os.listdir(os.path.join(os.fsencode(str(tmp_path)), b"out-caf\xe9", b"logs"))
    text = open(os.path.join(os.fsencode(str(tmp_path)), b"out-caf\xe9", b"logs", logs[0]), "rb").read()
    assert b"Summary: 1 week planned, 1 fetched" in text and b"cannot be written" not in result.stderr


def test_text_from_the_gateway_never_drives_the_terminal(run, gateway, workdir, capsys):
    fill_week(gateway, 20)
    gateway.faults = [Fault("status", status=400, body={"message": "\x1b[2J\x1b[HSummary: all fine\r\x07"})]
    assert run(*WEEK_UNSLICED) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err and "\x07" not in err
    assert "\\x1b[2J\\x1b[HSummary: all fine" in err
    assert "\x1b" not in log_text(workdir)
