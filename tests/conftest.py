"""Shared fixtures and helpers: a running fake gateway, a controllable clock, the CLI, and readers
of what a run left behind (its reports, its CSV rows, its log)."""
import csv
import datetime as dt
import io
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

import weeklycontainerreport as wcr
from fake_gateway import DEMO_TOKEN, SCRIPT, FakeGateway, epoch_ms

# A fixed "now" well after the test weeks, so none of them is open unless a test says so.
NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.timezone.utc)
REPO = os.path.dirname(SCRIPT)


class FakeClock:
    """Wall time and monotonic time that move only when slept on; a negative sleep is a bug."""

    def __init__(self, now=NOW, on_sleep=None):
        self._start = now
        self._monotonic = 1000.0
        self.sleeps = []
        self.on_sleep = on_sleep  # called with the seconds of each sleep, after the clock moved
        self._lock = threading.Lock()

    def now(self):
        with self._lock:
            return self._start + dt.timedelta(seconds=self._monotonic - 1000.0)

    def monotonic(self):
        with self._lock:
            return self._monotonic

    def thread_cpu(self):
        """CPU time, as the run sees it: it moves only when slept on, too."""
        return self.monotonic()

    def advance(self, seconds):
        """Time goes by without anyone sleeping (a machine suspended, say)."""
        with self._lock:
            self._monotonic += seconds

    def sleep(self, seconds, wake=None):
        assert seconds >= 0, f"negative sleep: {seconds}"
        with self._lock:
            self.sleeps.append(seconds)
            self._monotonic += seconds
        if self.on_sleep:
            self.on_sleep(seconds)


@pytest.fixture
def gateway():
    with FakeGateway() as fake:
        yield fake


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run inside an empty folder with only the demo token in the environment."""
    monkeypatch.chdir(tmp_path)
    for name in ("QUALYS_TOKEN", "QUALYS_USERNAME", "QUALYS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QUALYS_TOKEN", DEMO_TOKEN)
    monkeypatch.setattr(wcr, "EMBEDDED_TOKEN", "")
    leftover = [handler for handler in wcr.log.handlers if isinstance(handler, (wcr.LogFileHandler, wcr.ProgressHandler))]
    assert not leftover, "an earlier run left its log handlers behind"
    return tmp_path


@pytest.fixture
def run(workdir, gateway, clock):
    """Call main() against the fake gateway; returns the exit code. The gateway's clock (its Date
    header) is the run's clock, as on a machine whose clock is right, unless gateway_clock says."""
    def run_main(*args, url=None, use_clock=None, gateway_clock=None):
        gateway.now = (gateway_clock or use_clock or clock).now
        return wcr.main([url or gateway.url, *args], clock=use_clock or clock)
    return run_main


def free_port():
    """A loopback port nothing listens on (a connection to it is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- Weeks and data ----------------------------------------------------------------------------


def week_range(first, end):
    return ["--start_date", first, "--end_date", end]


def ms(year, month, day):
    return epoch_ms(dt.date(year, month, day))


WEEK = week_range("2025-09-01", "2025-09-08")
WEEK_UNSLICED = WEEK + ["--slices", "1"]  # one chain of pages, so that call counts stay exact
NAME = "2025-09-01_2025-09-08"
WEEK_FILE = f"{NAME}.json"
CSV_FILE = f"{NAME}.csv"


QUERY = f"created:[{epoch_ms(dt.date(2025, 9, 1))} ... {epoch_ms(dt.date(2025, 9, 8)) - 1}]"  # that week's


def fill_week(gateway, count=300):
    """Put count containers into the week of 2025-09-01; return their uuids."""
    gateway.generate(count, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    return {record.uuid for record in gateway.records}


def fill_weeks(gateway, count=600, first=dt.date(2025, 9, 1), end=dt.date(2025, 9, 15)):
    """Put count containers into the weeks from first to end (two weeks of 300 by default)."""
    gateway.generate(count, first, end)


def fill_four_weeks(gateway):
    """Four weeks of 350 containers, from 2025-09-01."""
    gateway.generate(1400, dt.date(2025, 9, 1), dt.date(2025, 9, 29))


def add_plain(gateway, count=5):
    """count hand-made containers, plain-0, plain-1..., created on 2025-09-02."""
    for number in range(count):
        gateway.add_container(ms(2025, 9, 2) + number, uuid=f"plain-{number}", name=f"plain-{number}")


def give_login(gateway, monkeypatch, password, typed=None, keep_token=False):
    """Give the gateway an account, and the environment its credentials (or a typo of them)."""
    gateway.credentials = {"alice": password}
    if not keep_token:
        monkeypatch.delenv("QUALYS_TOKEN")
    monkeypatch.setenv("QUALYS_USERNAME", "alice")
    monkeypatch.setenv("QUALYS_PASSWORD", typed or password)


# --- What a run left behind ----------------------------------------------------------------------


def files(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def stored(folder, name=WEEK_FILE):
    """The containers of a stored weekly JSON."""
    return json.loads((folder / "weekly_reports" / name).read_text())


def stored_uuids(folder, name=WEEK_FILE):
    return {container["uuid"] for container in stored(folder, name)}


def read_csv_rows(folder, name=CSV_FILE):
    text = (folder / "weekly_csv_reports" / name).read_bytes().decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def log_text(folder):
    """Every run log in folder/logs, oldest first."""
    return "".join((folder / "logs" / name).read_text() for name in files(folder / "logs"))


def everything_printed(folder, captured):
    """stdout, stderr, and every file the runs left (logs and reports)."""
    texts = [captured.out, captured.err]
    for path, _, names in os.walk(folder):
        texts += [open(os.path.join(path, name), encoding="utf-8", errors="replace").read() for name in names]
    return "\n".join(texts)


# --- The script as a process -----------------------------------------------------------------------


def script(*args, env=None, cwd=None, **kwargs):
    """Run the script to its end; return the CompletedProcess (text)."""
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, **(env or {})), timeout=60, **kwargs)


def run_script(gateway_url, folder, *args, token=DEMO_TOKEN, **popen):
    """Start the script exporting into folder; return the Popen."""
    env = dict(os.environ, QUALYS_TOKEN=token)
    return subprocess.Popen([sys.executable, SCRIPT, gateway_url, *args, "--output_dir", str(folder)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen)


# --- One client, as a run builds it ------------------------------------------------------------------


def client_for(url, clock=None, **policy):
    """A gateway client built as a run builds it, with the given retry policy; returns (client, session)."""
    settings = wcr.Settings(gateway=url, policy=wcr.RetryPolicy(**policy), env_token=DEMO_TOKEN)
    session = wcr.make_session(2)
    client = wcr.GatewayClient(settings=settings, session=session, clock=clock or FakeClock(),
                               progress=wcr.Progress(io.StringIO(), False), secrets=wcr.SecretFilter(),
                               stop=wcr.Stop())
    return client, session


def keep_count(text):
    """A page consumer that keeps nothing and counts the page's items."""
    return sum(1 for _ in wcr.walk_page(text)) if text is not None else 0
