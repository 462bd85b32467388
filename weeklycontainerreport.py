#!/usr/bin/env python3
"""Export Qualys Container Security containers, with their vulnerabilities, one week per file.

    export QUALYS_TOKEN=...            # or QUALYS_USERNAME + QUALYS_PASSWORD
    python3 weeklycontainerreport.py https://gateway.qg2.apps.qualys.com \\
        --start_date 2025-09-27 --end_date 2025-10-04

Every week becomes weekly_reports/<start>_<end>.json (empty weeks too) and, when it
has containers, weekly_csv_reports/<start>_<end>.csv (and with --xlsx a workbook in
weekly_xlsx_reports/); --snapshot adds what runs now, and what changed, in snapshots/.
Weeks already exported are skipped without an API call. --help is the whole manual.
Exit codes: 0 done, 1 some weeks failed or the gateway cannot be reached, 2 usage
error, 3 authentication failed, 128+N stopped by signal N (130 Ctrl-C, 143 SIGTERM,
129 SIGHUP).
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import csv
import dataclasses
import datetime as dt
import email.utils
import enum
import errno
import functools
import hashlib
import heapq
import http.client
import io
import ipaddress
import itertools
import json
import logging
import math
import operator
import os
import queue
import random
import re
import shutil
import signal
import socket
import ssl
import stat
import sys
import textwrap
import threading
import time
import traceback
import typing
import unicodedata
import uuid
import warnings
import zlib
from urllib.parse import parse_qs, quote, quote_plus, urlsplit, urlunsplit

try:  # flock on POSIX; msvcrt on Windows; the script still starts without either
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
try:
    import msvcrt
except ImportError:
    msvcrt = None

try:
    import requests
    import urllib3
except ImportError:  # reported by main(), so that --help still works
    requests = urllib3 = None

__version__ = "3.0.0"
log = logging.getLogger("weeklycontainerreport")

# The map. Each banner below holds one concept and uses only what stands above it:
#   Settings you may edit, Constants, Errors and the stop, Settings and time, Files and the lock,
#   Weeks and names, Screen, log and secrets, HTTP, Tokens, Throughput, Gateway client,
#   Reading pages, A week's JSON, Derived files, QID knowledge, Workers, Snapshot, Modes,
#   Monitoring, Command line.
# One week's path, top to bottom: Weeks and names plan it -> Throughput paces its calls and splits
# it into chains -> the Gateway client fetches each page -> Reading pages decodes it -> A week's JSON
# stages it, merges the chains in time order -> Derived files write its CSV and workbook from that
# JSON (QID knowledge fills their knowledge columns) -> Workers publish the files, the JSON last ->
# Modes count it in the summary -> Monitoring tells -> Command line: main returns the exit code.


# --- Settings you may edit -----------------------------------------------------------

# You may paste an API token between the quotes. It is used only when QUALYS_TOKEN is
# unset or rejected; the environment variable (or QUALYS_USERNAME/QUALYS_PASSWORD) is
# preferred, because a token in a file is easy to leak and dies after 4 hours.
EMBEDDED_TOKEN = ""


# --- Constants -----------------------------------------------------------------------

EXIT_OK = 0
EXIT_WEEKS_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_SIGNAL_BASE = 128  # stopped by signal N: 128 + N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)
# What each exit code means, for --help and the README (a test keeps the README's table the same).
EXIT_MEANINGS = (
    (EXIT_OK, "every week done or skipped"),
    (EXIT_WEEKS_FAILED, "one or more weeks or the snapshot failed (the others are kept; the next run retries "
                        "them), the gateway cannot be reached, or another run is using the output folder"),
    (EXIT_USAGE, "usage or input error, or a folder or file the run needs cannot be written"),
    (EXIT_AUTH, "authentication failed (no token accepted, the login was refused, or vulnerability details were "
                "refused)"),
    (EXIT_SIGNAL_BASE + 2, "interrupted (Ctrl-C, SIGINT)"),
    (EXIT_SIGNAL_BASE + 15, "stopped by SIGTERM (timeout, systemd, a container runtime)"),
    (EXIT_SIGNAL_BASE + 1, "stopped by SIGHUP"),
)
API_PATH = "/csapi/v1.3/containers/list"
AUTH_PATH = "/auth"
DETAILS_PATH = "/csapi/v1.3/containers/{sha}/vuln"  # a container's vulnerability details (the QID knowledge)
METRICS_PREFIX = "weeklycontainerreport_"  # every metric of --metrics_file starts with it
METRIC_WEEK_RESULTS = ("fetched", "skipped", "failed", "unfinished")  # always written, zeros too
METRICS_FILE_MODE = 0o644  # node_exporter runs as another user; the umask may be 077
MAX_METRICS_BYTES = 1024 * 1024  # an earlier metrics file is read no further than this
PING_ATTEMPTS = 3  # per ping, about 1 s and 2 s apart
PING_SECONDS = 5.0  # one ping's deadline, from its connection to its answer's status
PING_ORDER_SECONDS = 2.0  # the end ping waits this long at most for the start ping, to come after it
PING_BUDGET_SECONDS = 25  # the end ping never holds the end of a run longer than this
MAX_PING_BODY_BYTES = 10_000  # the summary line sent with the end ping
LOG_NAME = re.compile(r"weekly_report_(\d{8}T\d{6}Z)(?:-(\d+))?\.log\Z")  # a run log: its time, its number
CATALOG_NAME = "qid_catalog.json"  # in the output folder: what was learned per QID, and when
KNOWLEDGE_MAX_AGE = dt.timedelta(days=30)  # knowledge of a QID older than this is refreshed when it is seen
CANDIDATES_PER_QID = 8  # holders of an unknown QID remembered (the last seen), to ask another when one is gone
MORE_HOLDERS_LOOKS = 3  # times a week's containers are looked at again for holders not asked yet
CONTAINER_SHA = re.compile(r"[0-9a-fA-F]{12,128}\Z")  # a sha that can name a container in a URL
KNOWLEDGE_BOUNDS = {"severity": (1, 5), "cvss3Base": (0.0, 10.0)}  # what Qualys's scales allow
REFUSED_DETAILS = ("{what}: the gateway refused vulnerability details for every container asked (HTTP 403): the "
                   "token's user may list containers but not read their vulnerability details. Ask your Qualys "
                   "admin to give that user the Container Security permission to view vulnerability details, or "
                   "leave out the columns vuln_severity, vuln_title and the other knowledge columns")
DETAILS_AT_ONCE = 16  # vulnerability details asked side by side (their limit is documented at 5000 per 60 s)
DETAILS_STORM_SECONDS = 600  # 429 waits of the details, run-wide, before what is left to learn fails
PAGE_LIMIT = 250  # the API's maximum; its default is undocumented, so always send it
OPEN_WEEK_GRACE = dt.timedelta(hours=24)  # a week ending later than this before the run is partial
CLOCK_SKEW = dt.timedelta(minutes=5)  # the gateway's Date and this machine's clock may differ this much
HISTORY_WEEKS = 52  # complete weeks before the current one, when no dates are given
FIRST_DATE, LAST_DATE = dt.date(1970, 1, 1), dt.date(9999, 12, 1)  # dates the weeks may use
LOGIN_MAX_AGE_SECONDS = 3.5 * 3600  # a JWT lives 4 hours; log in again before that
MAX_REFUSED_LOGINS = 3  # fresh login tokens refused in a row before the run gives up (exit 3)
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
TOKEN_STATUSES = frozenset({401, 403})
REQUEST_HEADERS = {"Accept": "application/json", "Accept-Encoding": "gzip"}
READ_TIMEOUT_RANGE = (1.0, 3600.0)  # --read_timeout, seconds
MAX_PAGE_BYTES = 256 * 1024 * 1024  # an answer that grows past this (inflated) is abandoned
MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024  # all answers not yet processed, together, run-wide (the oldest may grow)
READ_CHUNK_BYTES = 64 * 1024
RAW_PIECE_CHARACTERS = 1024 * 1024  # a large container is written to its staged file this much at a time
ROWS_PER_WRITE = 512  # and its CSV rows this many at a time
COPY_CHUNK_BYTES = 1024 * 1024  # a week's files are merged from its chains' this much at a time
INFLATE_STEP_BYTES = 1024 * 1024  # a compressed chunk is inflated this much at a time
PAGES_WITHOUT_PROGRESS = 3  # pages in a row with no uuid not seen before: the week fails
MAX_PAGES_PER_CHAIN = 40_000  # 10 million containers in one week (or slice): the week fails
DEFAULT_SLICES = 64  # chains of pages one week may be fetched as, side by side
MAX_SLICES = 128
MIN_CHAIN_MS = 1000  # a chain's range is never split below a second
LONG_WAIT_SECONDS = 5.0  # every wait at least this long is logged with its cause
MIN_RATE_LIMIT_WAIT_SECONDS = 1.0  # a 429 that says "wait 0" still waits this long
STOP_GRACE_SECONDS = 15.0  # how long a stopping run waits for weeks being published
SETTLE_SECONDS = 1.0  # and for the other workers (one stuck resolving a name is not waited for)
MAX_WORKERS = 32  # the most requests in flight; --workers auto keeps as many as the gateway calls for
SHORT_SECRET = 8  # secrets shorter than this are redacted only where they stand alone
MAX_TOKEN_BYTES = 64 * 1024  # a login answer longer than this is not a token
REPORTS_DIR = "weekly_reports"
CSV_DIR = "weekly_csv_reports"
XLSX_DIR = "weekly_xlsx_reports"
TEMP_DIR = "temp_reports"
LOGS_DIR = "logs"
SNAPSHOTS_DIR = "snapshots"
RUNNING = "state:RUNNING"  # what a snapshot asks for, with the filter
CHANGES_COLUMNS = ("change", "imageId", "imageSha", "vuln_qid", "vuln_severity", "vuln_title", "vuln_cveids",
                   "containers_now", "containers_before")
CHANGES_KNOWLEDGE = ("severity", "title", "cveids")  # what the changes say of a QID
LOCK_NAME = ".lock"
TEMP_NAME = re.compile(r"wcr-[0-9a-f]{12}-[\w.-]+\.tmp\Z")  # ours alone; temp_reports/ may be shared
DAMAGED_SUFFIX = ".damaged"  # a final JSON that cannot be trusted is kept aside under its name + this
# Files and folders follow the user's umask, but are never writable by everyone.
FILE_MODE = 0o664
FOLDER_MODE = 0o775
CSV_COLUMNS = (
    "containerId", "uuid", "name", "state", "ipv4", "ipv6", "created", "updated", "stateChanged", "riskScore",
    "qdsSeverity", "maxQdsScore", "imageId", "imageSha", "imageUuid", "customerUuid", "privileged", "isRoot",
    "isVulnPropagated", "source", "sensorUuid",  # the container: its identity and status
    "host.sensorUuid", "host.hostname", "host.ipAddress", "cluster.name", "cluster.uid", "cluster.version",
    "cluster.k8s.pod.name", "cluster.k8s.pod.namespace", "cluster.k8s.pod.uuid", "cluster.k8s.pod.controller[0].name",
    "cluster.k8s.pod.controller[0].type", "hostArchitecture",  # its host and cluster
    "environment", "command", "arguments",  # what it runs
    "vuln_qid", "vuln_firstFound", "vuln_lastFound", "vuln_typeDetected", "vuln_scanTypes",  # one row per QID
    "vuln_software_names", "vuln_software_versions", "vuln_software_fixVersions",
    "vuln_software_packagePaths",  # from the vulnerability's software[], joined when several
)
# Columns read from each vulnerability rather than from the container: column -> field.
VULN_FIELDS = {
    "vuln_qid": "qid", "vuln_firstFound": "firstFound", "vuln_lastFound": "lastFound",
    "vuln_typeDetected": "typeDetected", "vuln_scanTypes": "scanType",
}
VULN_SOFTWARE_FIELDS = {
    "vuln_software_names": "name", "vuln_software_versions": "version",
    "vuln_software_fixVersions": "fixVersion", "vuln_software_packagePaths": "packagePath",
}
# Columns of what Qualys knows of a QID, from its vulnerability details (not in the default set):
# column -> the field kept per QID in the QID catalog. Asking for any of them turns the knowledge on.
KNOWLEDGE_COLUMNS = {
    "vuln_severity": "severity", "vuln_title": "title", "vuln_cveids": "cveids", "vuln_cvss3Base": "cvss3Base",
    "vuln_patchAvailable": "patchAvailable", "vuln_published": "published", "vuln_category": "category",
}
SUPPORTED_COLUMNS = CSV_COLUMNS + tuple(KNOWLEDGE_COLUMNS)
# Epoch-millisecond columns, rendered as ISO-8601 UTC in the CSV and as dates in the workbook.
TIME_COLUMNS = frozenset({"created", "updated", "stateChanged", "vuln_firstFound", "vuln_lastFound", "vuln_published"})
LIST_SEPARATOR = "; "
FORMULA_TRIGGERS = frozenset("=+-@\t\r")  # OWASP CSV injection: cells a spreadsheet evaluates
PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
CSV_FORMAT = {"quoting": csv.QUOTE_ALL, "lineterminator": "\r\n"}
SURROGATE = re.compile("[\ud800-\udfff]")
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
REPORT_NAME = re.compile(
    r"(?P<first>\d{4}-\d{2}-\d{2})_(?P<end>\d{4}-\d{2}-\d{2})"
    r"(?:\.(?P<fingerprint>[0-9a-f]{16}|[0-9a-f]{8}))?(?P<partial>\.partial)?\.(?P<extension>json|csv|xlsx)\Z"
)
SNAPSHOT_NAME = re.compile(r"(?P<day>\d{4}-\d{2}-\d{2})(?:\.(?P<fingerprint>[0-9a-f]{16}))?\.json\Z")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
XLSX_MAX_ROWS = 1_048_576  # one sheet's rows, header included; more continue on the next sheet
XLSX_TIME_FORMAT = 'yyyy-mm-dd hh:mm:ss "UTC"'
XLSX_EXACT_INTEGER = 2 ** 53  # larger integers would lose digits as spreadsheet numbers


# --- Errors and the stop -------------------------------------------------------------


class ReportError(Exception):
    """Base class of the errors this script reports in one line."""


class UsageError(ReportError):
    """The command line or its input is wrong (exit 2)."""


class AuthError(ReportError):
    """No token source is left that the gateway accepts (exit 3)."""


class WrongGateway(ReportError):
    """The URL answers, but not as the API gateway does (a redirect on login) (exit 2)."""


class GatewayUnreachable(ReportError):
    """The gateway never answered this run, and retrying will not help (exit 1)."""


class FolderBusyError(ReportError):
    """Another run holds the output folder's lock (exit 1)."""


class WeekFailed(ReportError):
    """A week could not be fetched completely; nothing is written for it."""


class RunStopping(WeekFailed):
    """The run is stopping (no token left, a signal): the week is left unfinished, not failed."""


class PageUndecodable(WeekFailed):
    """A page that can never be read (nested too deeply, or its next page cannot be named)."""


class TransientError(ReportError):
    """A failure worth retrying: 5xx, network trouble, a body that is not JSON."""

    unreachable = ""  # set when the cause will not heal (name, refusal, certificate)


class NotAPage(TransientError):
    """A JSON object without a data field: an error answer in disguise (a 200 saying "under
    maintenance", or {}), never an empty page; gateway_text is what it said, unredacted."""

    def __init__(self, gateway_text: str):
        super().__init__("the answer is not a page of containers (it has no data field)")
        self.gateway_text = gateway_text


class RateLimited(ReportError):
    """The gateway answered 429; wait_seconds says how long to wait."""

    def __init__(self, wait_seconds: float, source: str):
        super().__init__(f"HTTP 429, waiting {wait_seconds:g}s ({source})")
        self.wait_seconds = wait_seconds


class KnowledgeRefused(AuthError):
    """The gateway refused vulnerability details (403): the token's user lacks the permission (exit 3)."""


class TokenRejected(ReportError):
    """The gateway rejected the token in use; the broker has already moved on."""


class NotJson(ValueError):
    """A value JSON does not have (NaN, Infinity)."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal: SIGINT (Ctrl-C), SIGTERM or SIGHUP (exit 128 + N)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @classmethod
    def of(cls, exc: KeyboardInterrupt) -> "Interrupted":
        """Ctrl-C, converted once: a plain KeyboardInterrupt is SIGINT's."""
        return exc if isinstance(exc, cls) else cls(signal.SIGINT)


class Ending(enum.Enum):
    """How a week ended: written whole, failed (retried next run), unfinished (the run stopped), or not begun."""

    DONE = "done"
    FAILED = "failed"
    UNFINISHED = "unfinished"
    NOT_STARTED = "not started"


STOPS_THE_RUN = (AuthError, GatewayUnreachable, WrongGateway)  # no retry can help: no token, no gateway


def stops_the_run(exc: BaseException) -> bool:
    """Whether an error stops the whole run: no token left (details refused too), a gateway that never
    answers or is the wrong one, an interrupt."""
    return isinstance(exc, STOPS_THE_RUN) or not isinstance(exc, Exception)


class Stop:
    """The one stop of a run: the first error that stopped it, and a wake-up for whatever waits (nothing polls)."""

    def __init__(self):
        self._event, self._lock = threading.Event(), threading.Lock()
        self._wakers = []
        self.error = None

    def __call__(self, error=None) -> None:
        with self._lock:
            first, wakers = not self._event.is_set(), list(self._wakers)
            self.error = self.error or error
            self._event.set()
        for wake in wakers if first else ():
            wake()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise RunStopping once the run is stopping."""
        if self._event.is_set():
            raise RunStopping("the run stopped")

    def wait(self, seconds: float) -> bool:
        """Sleep for seconds, or until the run stops (a clock's sleep is woken by it)."""
        return self._event.wait(seconds)

    def on_stop(self, wake) -> None:
        """Call wake when the run stops (at once, if it has)."""
        with self._lock:
            self._wakers.append(wake)
            stopped = self._event.is_set()
        if stopped:
            wake()

    def wakes(self, condition: threading.Condition) -> threading.Condition:
        """Have the stop notify everyone waiting on condition; return it."""
        def notify():
            with condition:
                condition.notify_all()
        self.on_stop(notify)
        return condition

    def wait_until(self, condition: threading.Condition, ready, seconds=None) -> bool:
        """With condition held (one the stop wakes), wait until ready() or the run stops, at most seconds
        if given; return ready()."""
        ends = None if seconds is None else time.monotonic() + seconds
        while not ready() and not self._event.is_set():
            left = None if ends is None else ends - time.monotonic()
            if left is not None and left <= 0:
                break
            condition.wait(left)
        return ready()


@contextlib.contextmanager
def signals_stop_the_run():
    """Make SIGINT, SIGTERM and SIGHUP raise Interrupted in the main thread, once; a signal the
    process was told to ignore (nohup, a background job) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = []

    def stop(signum, frame):
        if not raised:  # a second signal while stopping must not cut the tidying short
            raised.append(signum)
            raise Interrupted(signum)

    previous = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) not in (signal.SIG_IGN, None):
            previous[number] = signal.signal(number, stop)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class Probe:
    """While a doubt holds (is the gateway there at all? do its details still answer 429?), one request at a
    time goes to find out while the others wait; once settled, all go. The run's stop wakes the waiters."""

    def __init__(self, stop: Stop, doubt: bool):
        self.doubt, self._stop, self._probing = doubt, stop, False
        self._changed = stop.wakes(threading.Condition())

    @contextlib.contextmanager
    def turn(self):
        with self._changed:
            self._stop.wait_until(self._changed, lambda: not self.doubt or not self._probing)
            self._stop.check()
            held = self._probing = self.doubt
        try:
            yield
        finally:
            if held:
                with self._changed:
                    self._probing = False
                    self._changed.notify_all()

    def settle(self, doubt: bool) -> None:
        """What the latest answer says: a doubt, or none."""
        if doubt != self.doubt:
            with self._changed:
                self.doubt = doubt
                self._changed.notify_all()


# --- Settings and time ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry and wait; the one place these bounds live."""

    max_attempts: int = 6
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 60.0
    max_total_retry_wait_seconds: float = 300.0
    max_rate_limit_wait_seconds: float = 900.0  # one wait of any kind the gateway asks for
    max_total_rate_limit_wait_seconds: float = 3600.0  # 429 waits per request, then the week fails
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 120.0  # a whole answer, first byte to last
    max_page_bytes: int = MAX_PAGE_BYTES
    max_bytes_in_flight: int = MAX_BYTES_IN_FLIGHT  # all answers held at once, run-wide

    def backoff_seconds(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with jitter for the given 1-based attempt."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (attempt - 1))
        return ceiling * rng.uniform(0.5, 1.0)


class GaveUp(ReportError):
    """A request that kept failing: its last trouble, and the attempts made."""

    def __init__(self, trouble: TransientError, attempts: int):
        super().__init__(f"{trouble} (gave up after {plural(attempts, 'attempt')})")
        self.trouble, self.attempts = trouble, attempts


def retried(once, what: str, policy: RetryPolicy, *, rng, wait, give_up=GaveUp, on_rate_limit=None):
    """The one retry loop (pages, details, logins, pings): call once again after TokenRejected, a 429 (on_rate_limit)
    or TransientError (after a backoff), until the policy gives up: give_up(last trouble, attempts)."""
    attempt, waited = 0, 0.0
    while True:
        try:
            return once()
        except TokenRejected:
            continue
        except RateLimited as exc:
            on_rate_limit(exc)
        except TransientError as exc:
            attempt += 1
            delay = policy.backoff_seconds(attempt, rng)
            if attempt >= policy.max_attempts or waited + delay > policy.max_total_retry_wait_seconds:
                raise give_up(exc, attempt) from None
            log.warning("%s: %s (attempt %d of %d); retrying in %.1fs", what, exc, attempt, policy.max_attempts,
                        delay)
            wait(delay)
            waited += delay


class SystemClock:
    """Wall time, monotonic time, CPU time and sleep, passed in so that tests can replace them."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def thread_cpu(self) -> float:
        """The CPU time the calling thread has used: the work it did, without its waits for others."""
        return time.thread_time()

    def sleep(self, seconds: float, wake=None) -> None:
        """Sleep, or return early when the wake event is set (the run is stopping)."""
        if wake is None:
            time.sleep(seconds)
        else:
            wake.wait(seconds)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a run needs, validated; built from the command line and the environment."""

    gateway: str = ""  # the gateway's base URL; '' where none is needed
    start_date: typing.Optional[dt.date] = None  # None: the last 52 weeks and the current one
    end_date: typing.Optional[dt.date] = None  # exclusive
    optional_filter: str = ""
    csv_columns: tuple = CSV_COLUMNS
    output_dir: str = "."
    workers: int = MAX_WORKERS
    local_time: bool = False
    dry_run: bool = False
    rebuild_csv: bool = False
    xlsx: bool = False
    slices: int = DEFAULT_SLICES
    policy: RetryPolicy = RetryPolicy()
    env_token: str = dataclasses.field(default="", repr=False)
    embedded_token: str = dataclasses.field(default="", repr=False)
    username: str = dataclasses.field(default="", repr=False)
    password: str = dataclasses.field(default="", repr=False)
    metrics_file: str = ""  # --metrics_file: a Prometheus textfile written at the end of every export
    ping_url: str = dataclasses.field(default="", repr=False)  # --ping_url: it holds the check's secret id
    keep_logs: typing.Optional[int] = None  # --keep_logs: the newest run logs kept; None keeps them all
    snapshot: bool = False  # --snapshot: what runs now, after the weeks
    weeks: bool = True  # False with --snapshot_only

    @property
    def knowledge(self) -> tuple:
        """The QID catalog fields the asked columns need; none: no details call is ever made."""
        return tuple(KNOWLEDGE_COLUMNS[column] for column in self.csv_columns if column in KNOWLEDGE_COLUMNS)

    @property
    def mode(self) -> str:
        """What the run does: "dry run", "rebuild" or "export"."""
        return "dry run" if self.dry_run else "rebuild" if self.rebuild_csv else "export"

    def calls_gateway(self) -> bool:
        """Whether this run may call the gateway: an export, or a rebuild that may learn QIDs (a gateway given)."""
        return not self.dry_run and (not self.rebuild_csv or bool(self.gateway))


def is_loopback(host: str) -> bool:
    """Tell whether host is localhost or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_url(text: str, what: str, example: str, secret: bool = False):
    """Split a URL given by the user, refusing what must not be sent anywhere: a bad host or port,
    another scheme than https (plain http only to a loopback host), credentials, a query (unless it is
    a secret's: a ping URL's) or a fragment. A secret URL is never repeated in the message."""
    shown = "the URL given" if secret else repr(text)
    try:
        parts = urlsplit(text.strip())
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
        if host:
            host.encode("idna")  # an empty or over-long label can never be looked up
    except ValueError:  # UnicodeError included
        raise UsageError(f"{what}: the URL has a bad host or port: {shown}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        raise UsageError(f"{what}: must be an https:// URL,{example} not {shown}")
    if parts.username or parts.password or parts.query and not secret or parts.fragment:
        raise UsageError(f"{what}: the URL must not carry credentials, a query or a fragment")
    if scheme == "http" and not is_loopback(host):
        raise UsageError(f"{what}: plain http is allowed only to a loopback host (127.0.0.1, ::1, localhost); "
                         "use https")
    return parts


def plural(count: int, noun: str) -> str:
    """Say '1 week', '2 weeks'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


EPOCH_MS_TEXT = re.compile(r"-?\d{1,18}\Z")


def epoch_ms_time(value):
    """Epoch milliseconds as a UTC datetime, or None when value is not such a number."""
    try:
        seconds, millis = divmod(int(value), 1000)
        return EPOCH + dt.timedelta(seconds=seconds, milliseconds=millis)
    except (TypeError, ValueError, OverflowError):
        return None


def iso_time(text):
    """An ISO-8601 time (2026-12-01T16:00:00Z) as an aware datetime, or None when unreadable."""
    try:
        when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def shown_time(moment: dt.datetime) -> str:
    """A time as a message shows it: 2026-12-01 16:00 UTC."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def http_date(value):
    """An HTTP Date header as an aware UTC datetime, or None when absent or unreadable."""
    try:
        when = email.utils.parsedate_to_datetime(value.strip()) if value else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.year < 2000:  # no answer of today's gateway is dated in the last century
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def describe_duration(span: dt.timedelta) -> str:
    """Say a length of time the way a person would: '31 days', '7 minutes'."""
    seconds = span.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            return plural(int(seconds // size), unit)
    return plural(int(seconds), "second")


# --- Files and the lock --------------------------------------------------------------


def open_new(path: str, mode: str, **options):
    """Open a new file with FILE_MODE under the umask (mkstemp would force 0600), never through a symlink."""
    flags = os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | (os.O_APPEND if "a" in mode else os.O_EXCL)
    flags |= os.O_RDWR if "+" in mode else os.O_WRONLY
    return open(os.open(path, flags, FILE_MODE), mode, **options)


def open_regular(path: str):
    """Open a file the run only reads, never through a symlink and never waiting (on a FIFO, say): what
    is not a regular file raises OSError, in one line."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise OSError(errno.EINVAL, f"{path} is not a regular file")
    return os.fdopen(descriptor, "rb")


def read_regular(path: str, limit: int) -> bytes:
    """The first limit bytes of a file the run only reads (open_regular)."""
    with open_regular(path) as stream:
        return stream.read(limit)


def remove_quietly(path: str) -> None:
    """Delete a file if it is there."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def fsync_folder(folder: str) -> None:
    """Make a rename in folder durable, where the OS allows it."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def same_filesystem(first: str, second: str) -> bool:
    """Whether two folders are on one filesystem, so that a rename between them is atomic."""
    try:
        return os.stat(first).st_dev == os.stat(second).st_dev
    except OSError:
        return False


def temp_name(final_name: str) -> str:
    """Name a staged file in temp_reports/ so that only this script's cleaner ever removes it."""
    return f"wcr-{uuid.uuid4().hex[:12]}-{final_name}.tmp"


class StagedFile:
    """A binary file staged in temp_reports/ (or beside its place, on another filesystem) and moved into place
    whole, or removed when its with block ends without publish()."""

    def __init__(self, temp_folder: str, final_path: str, mode=None):
        final_folder = os.path.dirname(final_path) or "."
        self.mode = mode  # its permission bits whatever the umask, or None for FILE_MODE under the umask
        folder = temp_folder if same_filesystem(temp_folder, final_folder) else final_folder
        self.temp_path = os.path.join(folder, temp_name(os.path.basename(final_path)))
        self.final_path = final_path
        self.published = False
        self.stream = open_new(self.temp_path, "w+b")

    def __enter__(self) -> "StagedFile":
        return self

    def __exit__(self, *exc_info) -> None:
        if not self.published:
            self.discard()

    def publish(self) -> None:
        """Flush and fsync the file, move it into place, and fsync its folder."""
        self.stream.flush()
        if self.mode is not None:
            os.chmod(self.temp_path, self.mode)
        os.fsync(self.stream.fileno())
        self.stream.close()
        os.replace(self.temp_path, self.final_path)
        self.published = True
        fsync_folder(os.path.dirname(self.final_path) or ".")

    def discard(self) -> None:
        """Remove the temp file, even when closing it fails (a full disk)."""
        with contextlib.suppress(OSError):
            self.stream.close()
        remove_quietly(self.temp_path)


@contextlib.contextmanager
def folder_lock(temp_folder: str, root: str):
    """Hold the output folder's lock (in temp_folder) for a run; the OS drops it if the process dies."""
    handle = open_new(os.path.join(temp_folder, LOCK_NAME), "a")
    try:
        try:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            elif msvcrt is not None:  # pragma: no cover - Windows
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK):
                raise
            raise FolderBusyError(
                f"another run is using this folder ({os.path.abspath(root)}); stopping") from None
        yield
    finally:
        handle.close()


def clean_temp(folders) -> int:
    """Delete this script's staged files (a killed run's, or this run's) from temp_reports/ and the
    report folders (a folder on another filesystem stages beside its final place); return how many."""
    removed = 0
    for folder in folders:
        for name in os.listdir(folder) if os.path.isdir(folder) else ():
            if TEMP_NAME.match(name):
                path = os.path.join(folder, name)
                if os.path.isdir(path) and not os.path.islink(path):  # a workbook library's temp folder
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    remove_quietly(path)
                removed += 1
    return removed


def set_aside(path: str) -> str:
    """Rename a damaged file to <name>.damaged (or .damaged-2, ...), never deleting it; return the new path."""
    for number in range(1, 1000):
        aside = f"{path}{DAMAGED_SUFFIX}{'' if number == 1 else f'-{number}'}"
        if not os.path.lexists(aside):
            os.replace(path, aside)
            return aside
    raise OSError(errno.EEXIST, f"too many damaged copies of {os.path.basename(path)}")


# --- Weeks and names -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Week:
    """One export window [start, end), named by its first day and its exclusive end day."""

    first_day: dt.date
    end_day: dt.date
    start: dt.datetime
    end: dt.datetime
    name: str = ""  # a snapshot's: "Snapshot 2026-12-06"

    start_ms = property(lambda self: int(self.start.timestamp()) * 1000)
    end_ms = property(lambda self: int(self.end.timestamp()) * 1000)
    days = property(lambda self: f"{self.first_day.isoformat()}..{self.end_day.isoformat()}")
    label = property(lambda self: self.name or f"Week {self.days}")  # Week 2025-09-01..2025-09-08, Snapshot 2026-12-06


def midnight(day: dt.date, local_time: bool) -> dt.datetime:
    """Return 00:00 of day as an aware datetime, in UTC or in the machine's zone."""
    if local_time:  # astimezone() on a naive time applies the local offset of that date
        return dt.datetime(day.year, day.month, day.day).astimezone()
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


def make_week(first_day: dt.date, end_day: dt.date, local_time: bool) -> Week:
    """Build the Week from first_day to end_day (exclusive)."""
    return Week(first_day, end_day, midnight(first_day, local_time), midnight(end_day, local_time))


def plan_weeks(start_date, end_date, now: dt.datetime, local_time: bool) -> list:
    """List the weeks to export: 7-day steps over [start_date, end_date), or the last year."""
    if start_date is None:
        today = (now.astimezone() if local_time else now.astimezone(dt.timezone.utc)).date()
        end_date = today - dt.timedelta(days=today.weekday()) + dt.timedelta(days=7)
        start_date = end_date - dt.timedelta(days=7 * (HISTORY_WEEKS + 1))
    weeks = []
    first_day = start_date
    try:
        while first_day < end_date:
            end_day = min(first_day + dt.timedelta(days=7), end_date)
            weeks.append(make_week(first_day, end_day, local_time))
            first_day = end_day
    except (OverflowError, ValueError, OSError):
        raise UsageError(f"the weeks from {start_date} to {end_date} do not fit the calendar; "
                         f"use dates from {FIRST_DATE} to {LAST_DATE}") from None
    if weeks and weeks[0].start_ms < 0:
        raise UsageError("weeks cannot start before 1970-01-01 00:00 UTC (the API counts time from then)")
    return weeks


def is_open(week: Week, run_started: dt.datetime, gateway_now=None) -> bool:
    """Whether a week may still gain containers: it ended less than 24 hours before this machine's clock, or
    the gateway's when known (a clock that runs ahead never freezes a week that has not happened)."""
    now = run_started if gateway_now is None else min(run_started, gateway_now)
    return now - week.end < OPEN_WEEK_GRACE


def range_query(start_ms: int, end_ms: int, optional_filter: str) -> str:
    """Return the QQL for [start_ms, end_ms); QQL ranges include both ends, so stop 1 ms short."""
    window = f"created:[{start_ms} ... {end_ms - 1}]"
    return f"{window} and ({optional_filter})" if optional_filter else window


def check_filter(optional_filter: str) -> None:
    """Refuse a filter whose parentheses, quotes or back-ticks do not balance: it could escape its week."""
    depth, quote_char, escaped = 0, "", False
    for char in optional_filter:
        if quote_char:
            if escaped:
                escaped = False
            elif char == "\\" and quote_char == '"':
                escaped = True
            elif char == quote_char:
                quote_char = ""
        elif char in '"`':
            quote_char = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                break
    if depth or quote_char:
        problem = f"an unclosed {quote_char}" if quote_char else "parentheses that do not balance"
        raise UsageError(f"--optional_filter has {problem}, so it could match containers outside "
                         f"each week: {optional_filter!r}")


def filter_fingerprint(optional_filter: str) -> str:
    """Return the 16-hex-digit (64-bit) fingerprint that names a filtered export ('' for none)."""
    return hashlib.sha256(optional_filter.encode("utf-8")).hexdigest()[:16] if optional_filter else ""


def report_name(week: Week, fingerprint: str, partial: bool, extension: str) -> str:
    """Name a week's file, e.g. 2025-09-27_2025-10-04.f3a9c1e25b7d0a64.partial.json."""
    return ".".join([f"{week.first_day.isoformat()}_{week.end_day.isoformat()}"] + [fingerprint] * bool(fingerprint)
                    + ["partial"] * partial + [extension])


def parse_report_name(name: str, local_time: bool = False):
    """Read a report name back as (its week, filter fingerprint, open state, extension), or None when it is not
    one of ours."""
    match = REPORT_NAME.match(name)
    if not match:
        return None
    try:
        first_day = dt.date.fromisoformat(match["first"])
        end_day = dt.date.fromisoformat(match["end"])
        week = make_week(first_day, end_day, local_time)
    except (ValueError, OverflowError, OSError):
        return None
    return week, match["fingerprint"] or "", bool(match["partial"]), match["extension"]


def parse_snapshot_name(name: str):
    """Read a snapshot's JSON name back as (its day, its filter's fingerprint), or None when it is not one."""
    match = SNAPSHOT_NAME.match(name)
    try:
        return (dt.date.fromisoformat(match["day"]), match["fingerprint"] or "") if match else None
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a run's folders are, under one output folder."""

    root: str
    xlsx: bool = False
    snapshot: bool = False
    reports = property(lambda self: os.path.join(self.root, REPORTS_DIR))
    csvs = property(lambda self: os.path.join(self.root, CSV_DIR))
    workbooks = property(lambda self: os.path.join(self.root, XLSX_DIR))
    temp = property(lambda self: os.path.join(self.root, TEMP_DIR))
    logs = property(lambda self: os.path.join(self.root, LOGS_DIR))
    snapshots = property(lambda self: os.path.join(self.root, SNAPSHOTS_DIR))
    # the folders a staged file may be in: temp_reports/, or beside its final place
    staging = property(lambda self: (self.temp, self.reports, self.csvs, self.workbooks, self.snapshots))

    def create(self) -> None:
        folders = [self.reports, self.csvs, self.temp, self.logs] + ([self.workbooks] if self.xlsx else []) + (
            [self.snapshots] if self.snapshot else [])
        for folder in folders:
            os.makedirs(folder, mode=FOLDER_MODE, exist_ok=True)


@dataclasses.dataclass(frozen=True)
class WeekFiles:
    """The paths of one week's JSON, CSV and workbook: the one place they are named."""

    week: Week
    json: str
    csv: str
    xlsx: str

    @classmethod
    def of(cls, layout: Layout, week: Week, fingerprint: str, partial: bool) -> "WeekFiles":
        return cls(week, *(os.path.join(folder, report_name(week, fingerprint, partial, extension)) for folder,
                           extension in ((layout.reports, "json"), (layout.csvs, "csv"), (layout.workbooks, "xlsx"))))

    def __iter__(self):
        return iter((self.json, self.csv, self.xlsx))


@dataclasses.dataclass(frozen=True)
class WeekJob:
    """One week to export, with its query and the files it will be published as."""

    week: Week
    query: str
    partial: bool
    files: WeekFiles
    stale: tuple  # files of the same week this export replaces (its old partial files)
    open_files: WeekFiles  # its files as an open week, should it turn out not to have settled
    filter: str = ""  # the user's filter (a snapshot's: RUNNING and it), ANDed with each chain's range
    snapshot: bool = False  # what runs now, not a week: never settles, never open


def plan_job(week: Week, settings, run_started: dt.datetime, layout: Layout) -> WeekJob:
    """The job that exports one week: open (.partial) if it ended less than 24 hours ago."""
    fingerprint = filter_fingerprint(settings.optional_filter)
    partial = is_open(week, run_started)
    open_files = WeekFiles.of(layout, week, fingerprint, partial=True)
    files = open_files if partial else WeekFiles.of(layout, week, fingerprint, partial=False)
    return WeekJob(week=week, query=range_query(week.start_ms, week.end_ms, settings.optional_filter), partial=partial,
                   files=files, stale=() if partial else tuple(open_files), open_files=open_files,
                   filter=settings.optional_filter)


def plan_jobs(weeks, settings, run_started: dt.datetime, layout: Layout):
    """Split weeks into jobs to fetch and the files of weeks already done (their final JSON exists)."""
    fingerprint = filter_fingerprint(settings.optional_filter)
    jobs, done = [], []
    for week in weeks:
        final = WeekFiles.of(layout, week, fingerprint, partial=False)
        if os.path.exists(final.json):
            done.append(final)
        else:
            jobs.append(plan_job(week, settings, run_started, layout))
    return jobs, done


# --- Screen, log and secrets ---------------------------------------------------------


class Progress:
    """Counts pages, containers and weeks, and keeps a live status line on a terminal."""

    def __init__(self, stream, live: bool):
        self.stream, self.live = stream, live
        self.weeks_total = self.weeks_done = self.containers = self.pages = 0
        self._waits, self._lock, self._shown = {}, threading.RLock(), False

    def page(self, containers: int) -> None:
        with self._lock:
            self.pages += 1
            self.containers += containers
            self._redraw()

    def week_done(self) -> None:
        with self._lock:
            self.weeks_done += 1
            self._redraw()

    def waiting(self, seconds: float, why: str) -> None:
        with self._lock:
            if seconds > 0:
                self._waits[threading.get_ident()] = f"waiting {seconds:.0f}s ({why})"
            else:
                self._waits.pop(threading.get_ident(), None)
            self._redraw()

    def write_line(self, text: str) -> None:
        """Print a log line above the status line."""
        with self._lock:
            self._clear()
            self.stream.write(text + "\n")
            self.stream.flush()
            self._redraw()

    def finish(self) -> None:
        with self._lock:
            self._clear()

    def _status(self) -> str:
        wait = next(iter(self._waits.values()), "")
        weeks = f"weeks {self.weeks_done}/{self.weeks_total}  " if self.weeks_total else ""
        return f"{weeks}{plural(self.containers, 'container')}  {plural(self.pages, 'page')}  {wait}".rstrip()

    def _redraw(self) -> None:
        if self.live:
            self.stream.write("\r\033[K" + self._status())
            self.stream.flush()
            self._shown = True

    def _clear(self) -> None:
        if self.live and self._shown:
            self.stream.write("\r\033[K")
            self._shown = False


def secret_forms(secret: str) -> set:
    """The forms a secret can take in someone else's text: raw, URL-, JSON- and repr-encoded."""
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret),
             json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1],
             repr(secret.encode("utf-8", "surrogatepass"))[2:-1],  # as http.client would print its bytes
             repr(secret.encode("latin-1", "backslashreplace"))[2:-1]}
    forms |= {re.sub("%[0-9A-F]{2}", lambda match: match.group(0).lower(), form) for form in forms}
    return {form for form in forms if form}


SECRET_LOOKING = re.compile(r"(?![a-z]+(?:[-_.][a-z]+)*\Z).{8,}\Z")  # a URL path's piece: not a word, nor a-slug


class SecretFilter(logging.Filter):
    """Replaces every known secret, in any of its encodings, with '***': one of 8 characters or more
    wherever it appears, a shorter one only where it stands alone (so 'Week' never becomes 'W***k')."""

    def __init__(self, secrets=()):
        super().__init__()
        self._lock, self._secrets, self._pattern = threading.Lock(), set(), None
        for secret in secrets:
            self.remember(secret)

    def remember(self, secret: str) -> None:
        """Add a secret (a token from a login, say) to those redacted from now on."""
        if not secret or not secret.strip() or secret in self._secrets:
            return
        with self._lock:
            self._secrets.add(secret)
            pieces = []
            for known in self._secrets:
                for form in secret_forms(known):
                    escaped = re.escape(form)
                    pieces.append(escaped if len(known) >= SHORT_SECRET
                                  else rf"(?<!\w){escaped}(?!\w)")
            pieces.sort(key=len, reverse=True)
            self._pattern = re.compile("|".join(pieces))

    def redact(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub("***", text) if pattern is not None else text

    def filter(self, record) -> bool:
        message = escape_controls(self.redact(record.getMessage()))
        details = record.exc_text or ""  # another handler may have formatted the traceback already
        if record.exc_info and not details:
            details = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        details = "\n".join(part for part in (details, record.stack_info) if part)
        if details:  # for the log file only, redacted too
            record.traceback_text = "\n".join(escape_controls(line) for line in self.redact(details).split("\n"))
        record.exc_info = record.exc_text = record.stack_info = None
        record.msg, record.args = message, None
        return True


def escape_controls(text: str) -> str:
    """Show control characters and escape sequences as text (\\x1b, \\r, \\u202e), so that nothing the
    gateway sends can drive a terminal: clear it, move the cursor, or fake a line."""
    return CONTROL_CHARACTERS.sub(lambda match: repr(match.group())[1:-1], text)


def shorten(text: str, limit: int = 300) -> str:
    """Put text on one line and cut it to limit characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_error(exc: BaseException) -> str:
    """One line for an error: a usage error whole (its words are ours), other errors of ours and OS
    errors as they say, others with their type; all cut short."""
    if isinstance(exc, UsageError):
        return shorten(str(exc), 1000)
    if isinstance(exc, (ReportError, OSError)):
        return shorten(str(exc) or type(exc).__name__)
    return shorten(f"{type(exc).__name__}: {exc}")


class LogFileHandler(logging.StreamHandler):
    """Writes the run's log file; when it cannot (a full disk), says so once and goes on without it."""

    def __init__(self, stream, on_failure):
        super().__init__(stream)
        self.on_failure, self.broken = on_failure, False

    def emit(self, record) -> None:
        if not self.broken:
            super().emit(record)

    def handleError(self, record) -> None:  # noqa: N802 - logging's name
        if not self.broken:
            self.broken = True
            error = sys.exc_info()[1]
            self.on_failure(f"WARNING The log file cannot be written ({describe_error(error)}); "
                            "logging to the screen only from now on")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.close()
        super().close()


class ProgressHandler(logging.Handler):
    """Writes log lines to the screen above the live status line."""

    def __init__(self, progress: Progress):
        super().__init__()
        self.progress = progress

    def emit(self, record) -> None:
        try:
            self.progress.write_line(self.format(record))
        except Exception:
            pass  # a closed or broken terminal must not stop the run, nor print Python's logging errors


class FileFormatter(logging.Formatter):
    """The log file's lines: a time stamp, and an unexpected error's traceback under its line."""

    def format(self, record) -> str:
        line = super().format(record)
        details = getattr(record, "traceback_text", "")
        return f"{line}\n{details}" if details else line


def open_log(logs_folder: str, stamp: str):
    """Create logs/weekly_report_<stamp>.log (-2, -3, ... if a run this second has one), never through a
    symlink someone planted there; return (its stream, its path)."""
    for number in range(1, 100):
        name = f"weekly_report_{stamp}{'' if number == 1 else f'-{number}'}.log"
        path = os.path.join(logs_folder, name)
        try:
            return open_new(path, "w", encoding="utf-8", errors="backslashreplace"), path
        except OSError as exc:
            if exc.errno == errno.ELOOP or isinstance(exc, FileExistsError) and os.path.islink(path):
                raise UsageError(f"refusing to write the run log through a symlink: {path}") from None
            if not isinstance(exc, FileExistsError):
                raise
    raise UsageError(f"too many run logs for {stamp} in {logs_folder}")


def prune_logs(logs_folder: str, keep: int, this_log: str) -> None:
    """Keep the keep newest run logs (by the time in their names; this run's always) and remove the others;
    only files named as this script names its logs, never a link or a folder."""
    ours = []
    for entry in os.scandir(logs_folder):
        match = LOG_NAME.match(entry.name)
        if match and entry.is_file(follow_symlinks=False) and entry.name != os.path.basename(this_log):
            ours.append((match.group(1), int(match.group(2) or 1), entry.path))
    ours.sort(reverse=True)
    removed = 0
    for _, _, path in ours[keep - 1:]:
        try:
            os.remove(path)
            removed += 1
        except OSError as exc:
            log.warning("Cannot remove the old run log %s: %s", os.path.basename(path), exc.strerror or exc)
    if removed:
        log.info("Removed %s (--keep_logs %d)", plural(removed, "old run log"), keep)


@contextlib.contextmanager
def warnings_logged():
    """While a run lasts, a library's warning (urllib3's SystemTimeWarning, say) is one log line,
    said once, never raw text on stderr."""
    said = set()

    def show(message, category, filename, lineno, file=None, line=None):
        key = (category.__name__, str(message))
        if key not in said:
            said.add(key)
            log.warning("%s: %s", category.__name__, shorten(str(message)))

    previous = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


@contextlib.contextmanager
def run_log(settings: Settings, clock, progress: Progress, secrets: SecretFilter):
    """Log to logs/weekly_report_<timestamp>.log (its path is yielded) and to the screen while the block
    runs. The HTTP library's own messages go to the log file only, redacted too (never raw onto the screen)."""
    logs_folder = Layout(settings.output_dir).logs
    os.makedirs(logs_folder, mode=FOLDER_MODE, exist_ok=True)
    stream, path = open_log(logs_folder, clock.now().strftime("%Y%m%dT%H%M%SZ"))
    file_handler = LogFileHandler(stream, progress.write_line)
    file_handler.setFormatter(FileFormatter("%(asctime)s %(levelname)s %(message)s"))
    screen_handler = ProgressHandler(progress)
    screen_handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    library = logging.getLogger("urllib3")
    attached = [(log, file_handler), (log, screen_handler), (library, file_handler)]
    for logger, handler in attached:
        handler.addFilter(secrets)
        logger.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate, library_propagates, library.propagate = False, library.propagate, False
    try:
        yield path
    finally:
        progress.finish()
        library.propagate = library_propagates
        for logger, handler in attached:
            logger.removeHandler(handler)
        file_handler.close()


# --- HTTP ----------------------------------------------------------------------------

_AuthBase = requests.auth.AuthBase if requests is not None else object


class BearerAuth(_AuthBase):
    """Sends a token as 'Authorization: Bearer ...' through requests' auth hook (so ~/.netrc cannot replace it)."""

    def __init__(self, token: str):
        self.token = token

    def __call__(self, request):
        if self.token:
            request.headers["Authorization"] = f"Bearer {self.token}"
        return request


REQUEST_WATCH = threading.local()  # .current: the Deadline of the request this thread is sending


def underlying_socket(connection_socket):
    """The socket.socket beneath a connection's socket: itself, or the one under urllib3's
    SSLTransport (TLS inside the TLS of an https:// proxy); None when there is none to find."""
    for _ in range(4):
        if connection_socket is None or isinstance(connection_socket, socket.socket):
            return connection_socket
        connection_socket = getattr(connection_socket, "socket", None)
    return None


class Deadline:
    """Ends one request when its time is up, from its connection to its answer's last byte: a timer shuts
    its socket down from outside (a read's own timeout waits only for the next byte)."""

    def __init__(self, seconds: float):
        self.seconds, self.expired, self.attached = seconds, False, False
        self.unknown = ""  # the kind of a connection whose socket could not be found
        self._lock, self._socket, self._timer = threading.Lock(), None, None

    def attach(self, connection_socket) -> None:
        """Start the clock on the socket of the connection in use (called by the connection)."""
        sock = underlying_socket(connection_socket)
        if sock is None:
            self.unknown = type(connection_socket).__name__
            return
        with self._lock:
            self._socket, self.attached = sock, True
            if self._timer is None and not self.expired:
                self._timer = threading.Timer(self.seconds, self.expire)
                self._timer.daemon = True
                self._timer.start()
            expired = self.expired
        if expired:
            self._shut()

    def expire(self) -> None:
        with self._lock:
            self.expired = True
        self._shut()

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()

    def _shut(self) -> None:
        sock = self._socket
        if sock is not None:  # socket.socket's own shutdown: it works on a TLS socket another thread is reading
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


def attach_deadline(connection_socket) -> None:
    """Hand a connection's socket to the deadline of the request this thread is sending, if any."""
    deadline = getattr(REQUEST_WATCH, "current", None)
    if deadline is not None:
        deadline.attach(connection_socket)


class RequestWatch:
    """The deadlines of the requests in flight, so that a stopping run can cut them all off."""

    def __init__(self):
        self._lock, self._live, self._stopped, self._said_unattached = threading.Lock(), set(), False, False

    @contextlib.contextmanager
    def deadline(self, seconds: float):
        deadline = Deadline(seconds)
        with self._lock:
            self._live.add(deadline)
            stopped = self._stopped
        if stopped:
            deadline.expire()
        REQUEST_WATCH.current = deadline
        try:
            yield deadline
        finally:
            REQUEST_WATCH.current = None
            deadline.close()
            with self._lock:
                self._live.discard(deadline)

    def answered_unwatched(self, deadline: Deadline) -> None:
        """An answer came over a connection the deadline could not attach to: say so, once."""
        with self._lock:
            said, self._said_unattached = self._said_unattached, True
        if not said:
            log.warning("The per-request deadline (--read_timeout) cannot cut a connection of this kind (%s); "
                        "only each read's own timeout bounds it", deadline.unknown or "not opened by this script")

    def abort_all(self) -> None:
        """Cut off every request in flight, and every later one (the run is stopping)."""
        with self._lock:
            self._stopped = True
            live = list(self._live)
        for deadline in live:
            deadline.expire()


def watched(connection_class):
    """A urllib3 connection class that hands its socket to the thread's Deadline: as soon as it is
    opened (so a proxy's CONNECT answer is under the deadline too), and when it awaits an answer."""
    class WatchedConnection(connection_class):
        def _new_conn(self, *args, **kwargs):
            sock = super()._new_conn(*args, **kwargs)
            attach_deadline(sock)
            return sock

        def getresponse(self, *args, **kwargs):
            attach_deadline(self.sock)
            return super().getresponse(*args, **kwargs)
    return WatchedConnection


def watched_pools(http_pool, https_pool) -> dict:
    """urllib3 pool classes (direct, through an http(s) proxy, or SOCKS: urllib3.contrib.socks, which needs
    PySocks) whose connections are watched."""
    return {scheme: type(f"Watched{pool.__name__}", (pool,), {"ConnectionCls": watched(pool.ConnectionCls)})
            for scheme, pool in (("http", http_pool), ("https", https_pool))}


def make_session(workers: int):
    """A requests session whose pool fits all workers, whose requests end at their deadline on every route
    (direct, http(s) proxies, SOCKS), and which never follows a redirect nor reads its body."""
    pools = watched_pools(urllib3.HTTPConnectionPool, urllib3.HTTPSConnectionPool)

    class DeadlineAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy, **proxy_kwargs):
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)  # without PySocks: InvalidSchema
            if proxy.lower().startswith("socks"):
                from urllib3.contrib import socks
                manager.pool_classes_by_scheme = watched_pools(socks.SOCKSHTTPConnectionPool,
                                                               socks.SOCKSHTTPSConnectionPool)
            else:
                manager.pool_classes_by_scheme = pools
            return manager

    class ExportSession(requests.Session):
        def get_redirect_target(self, response):
            return None  # never followed: the caller says where it pointed

    session = ExportSession()
    adapter = DeadlineAdapter(pool_connections=2, pool_maxsize=workers + 2)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class ByteBudget:
    """The bytes all answers in flight may hold together, run-wide, until each is processed: an answer waits
    for room (the oldest may always grow, so nothing deadlocks), no longer than its deadline or the run."""

    def __init__(self, capacity: int, stop):
        self._capacity, self._stop = capacity, stop
        self._held = {}  # ticket -> bytes held
        self._tickets = itertools.count()
        self._changed = stop.wakes(threading.Condition())

    @contextlib.contextmanager
    def hold(self):
        """A claim on the budget for one answer, given back when the block ends."""
        with self._changed:
            ticket = next(self._tickets)
            self._held[ticket] = 0
        try:
            yield functools.partial(self._grow, ticket)
        finally:
            with self._changed:
                del self._held[ticket]
                self._changed.notify_all()

    def _grow(self, ticket: int, count: int) -> None:
        deadline = getattr(REQUEST_WATCH, "current", None)
        with self._changed:
            if not self._stop.wait_until(self._changed, lambda: sum(self._held.values()) + count <= self._capacity
                                         or ticket == min(self._held), deadline.seconds if deadline else None):
                self._stop.check()
                raise TransientError("timed out waiting for room in the memory budget of answers in flight")
            self._held[ticket] += count


def make_inflater(encoding: str):
    """A zlib decompressor for the body's Content-Encoding (None for identity)."""
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise TransientError(f"the answer uses Content-Encoding {encoding!r}, which was not asked for")


def read_body(response, cap_bytes: int, grow=None) -> bytearray:
    """Read a streamed body whole, inflating it in bounded steps, each piece claimed by grow (the ByteBudget);
    whatever its headers claim, past cap_bytes it is abandoned (a gzip bomb is stopped as it inflates)."""
    inflater = make_inflater(response.headers.get("Content-Encoding", "").strip().lower())
    body = bytearray()
    while True:
        data = response.raw.read(READ_CHUNK_BYTES, decode_content=False)
        if not data:
            break
        for piece in ([data] if inflater is None else inflate(inflater, data)):
            if len(body) + len(piece) > cap_bytes:
                raise TransientError(f"the answer grew past {cap_bytes / 2 ** 20:g} MiB; abandoned")
            if grow is not None:
                grow(len(piece))
            body += piece
    if inflater is not None and (not inflater.eof or inflater.unused_data.strip()):
        raise TransientError("the compressed answer was cut short or has data after its end")
    return body


def inflate(inflater, data: bytes):
    """Yield what data inflates to, at most INFLATE_STEP_BYTES at a time."""
    while data:
        try:
            piece = inflater.decompress(data, INFLATE_STEP_BYTES)
        except zlib.error as exc:
            raise TransientError(f"the compressed answer is damaged ({exc})") from None
        data = inflater.unconsumed_tail
        yield piece


@dataclasses.dataclass
class Answer:
    """One HTTP answer, its body read whole."""

    status: int
    reason: str
    headers: object
    body: bytearray
    is_login: bool = False


def exception_chain(exc):
    """Yield an exception and the exceptions behind it (causes, contexts, urllib3 reasons), bounded."""
    seen, pending = set(), [exc]
    while pending and len(seen) < 20:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        pending += [item.__cause__, item.__context__, getattr(item, "reason", None)]
        pending += [arg for arg in getattr(item, "args", ()) if isinstance(arg, BaseException)]


PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")


@dataclasses.dataclass(frozen=True)
class Route:
    """The way to the gateway: its host and port, and the proxy in between (as requests picks it from
    the environment: HTTPS_PROXY, ALL_PROXY, NO_PROXY), shown without its credentials."""

    host: str
    port: int
    proxy: str = ""  # scheme://host:port, or '' when direct
    proxy_variable: str = ""  # the environment variable that named it

    @classmethod
    def to(cls, url: str) -> "Route":
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url)) if requests else None
        if not proxy:
            return cls(parts.hostname or "", port)
        variable = next((name for name in PROXY_VARIABLES if os.environ.get(name) == proxy), "the proxy settings")
        shown = urlsplit(proxy if "://" in proxy else "http://" + proxy)
        return cls(parts.hostname or "", port, f"{shown.scheme}://{shown.hostname}:{shown.port or ''}".rstrip(":"),
                   variable)


@dataclasses.dataclass(frozen=True)
class Trouble:
    """Why a request failed, in words: reason is '' when it may heal by itself; fatal when no retry
    can help whatever the gateway did before (a proxy that wants a password, a missing package)."""

    reason: str = ""
    fatal: bool = False


def describe_tls(error, host: str, now: dt.datetime) -> str:
    """Advice that matches a failed TLS certificate check."""
    code = getattr(error, "verify_code", None)
    message = str(getattr(error, "verify_message", "") or error)
    reading = shown_time(now)
    if code == 10 or "expired" in message:
        return f"the TLS certificate of {host} has expired, or this machine's clock is wrong (it reads {reading})"
    if code == 9 or "not yet valid" in message:
        return f"the TLS certificate of {host} is not valid yet: is this machine's clock right? (it reads {reading})"
    if code == 62 or "mismatch" in message or "doesn't match" in message:
        return f"the TLS certificate is not for {host}: is the gateway URL right? (see the README's table)"
    return (f"TLS certificate not trusted ({message}): behind a proxy that re-signs TLS, set "
            "REQUESTS_CA_BUNDLE to its CA bundle (see the README)")


def describe_proxy_trouble(text: str, route: Route) -> Trouble:
    """What a proxy's refusal of the tunnel means (urllib3: 'Tunnel connection failed: 407 ...')."""
    if " 407" in text:
        return Trouble(f"the proxy {route.proxy} ({route.proxy_variable}) requires authentication (HTTP 407): "
                       f"give it as http://user:password@host:port in {route.proxy_variable}", fatal=True)
    said = shorten(text.split("failed:", 1)[-1], 80)
    return Trouble(f"the proxy {route.proxy} ({route.proxy_variable}) would not connect to {route.host}:{route.port} "
                   f"({said})")


def network_trouble(exc, route: Route, now: dt.datetime) -> Trouble:
    """Say, in words a person understands, why a request found no gateway to answer it."""
    for cause in exception_chain(exc):
        text = str(cause)
        if "Missing dependencies for SOCKS support" in text:
            return Trouble(f"{route.proxy_variable} names a SOCKS proxy ({route.proxy}), which needs the PySocks "
                           "package: .venv/bin/python -m pip install PySocks (requests says: Missing dependencies "
                           "for SOCKS support.)", fatal=True)
        if "CA certificate bundle" in text:
            return Trouble(f"{shorten(text, 200)} (check REQUESTS_CA_BUNDLE)", fatal=True)
        if "Tunnel connection failed" in text:
            return describe_proxy_trouble(text, route)
        if isinstance(cause, socket.gaierror):
            return Trouble(f"cannot resolve {route.proxy or route.host}")
        if isinstance(cause, ConnectionRefusedError):
            if route.proxy:
                return Trouble(f"connection refused by the proxy {route.proxy} ({route.proxy_variable})")
            return Trouble(f"connection refused by {route.host}:{route.port}")
        if isinstance(cause, ssl.SSLCertVerificationError) or type(cause).__name__ == "CertificateError":
            return Trouble(describe_tls(cause, route.host, now))  # urllib3 1.26 checks names itself
        if requests is not None and isinstance(cause, requests.exceptions.ConnectTimeout):
            where = f"the proxy {route.proxy}" if route.proxy else f"{route.host}:{route.port}"
            return Trouble(f"no answer from {where} (connect timeout; a firewall or a wrong address?)")
    library = next((cause for cause in exception_chain(exc) if type(cause) is ValueError), None)
    if library is not None:  # urllib3 or ssl gave up on the connection itself (an old urllib3's bug, say)
        return Trouble(f"the HTTP library could not make the connection ({shorten(str(library), 120)}; urllib3 "
                       f"{getattr(urllib3, '__version__', '?')})")
    return Trouble()


def network_errors() -> tuple:
    """What a request and the reading of its body may raise when the network misbehaves."""
    return (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException,
            OSError, ValueError)  # ValueError: what an old urllib3 raises for a TLS proxy it cannot use


# --- Tokens --------------------------------------------------------------------------


def token_problem(token: str) -> str:
    """What keeps a token from being sent as it should be ('' when nothing does): quotes or a
    'Bearer ' kept from an env file, or a character an HTTP header cannot carry."""
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
        return "is in quotes (docker --env-file and some .env files keep them): remove the quotes"
    if token[:7].lower() == "bearer ":
        return "starts with 'Bearer ': give the token alone"
    for char in token:
        if ord(char) > 0xFF:
            return (f"holds {unicodedata.name(char, 'a character').lower()} (U+{ord(char):04X}), which an HTTP "
                    "header cannot carry: was it cut short when it was copied?")
        if unicodedata.category(char) == "Cc" or char.isspace():
            return "holds a line break, a space or a control character: copy it again, as one line"
    return ""


class TokenBroker:
    """Hands all workers one token: QUALYS_TOKEN, EMBEDDED_TOKEN, then a login, moving on when one is
    rejected; a fresh login token refused before any use leads to another login, MAX_REFUSED_LOGINS in a row."""

    def __init__(self, *, sources, login, clock, remember_secret):
        self._sources = [(label, token) for label, token in sources if token]
        self._login = login  # None without credentials
        self._clock, self._remember_secret, self._lock = clock, remember_secret, threading.Lock()
        self._token, self._current_label, self._from_login, self._proven = None, "", False, False
        self._login_time, self._refused_logins, self._error = 0.0, 0, None
        self._failures, self._unusable = [], []  # the tokens refused, and the sources whose token could not be sent

    def current(self) -> str:
        """Return the token to use now, logging in if needed; raise AuthError if none is left."""
        with self._lock:
            if self._error:
                raise self._error
            if self._token is None:
                self._advance()
            elif self._from_login and self._clock.monotonic() - self._login_time > LOGIN_MAX_AGE_SECONDS:
                log.info("The login token is close to its 4-hour lifetime; logging in again")
                self._log_in()
            return self._token

    def accepted(self, token: str) -> None:
        """Note that the gateway accepted this token."""
        with self._lock:
            if token == self._token:
                self._proven = True
                self._refused_logins = 0

    def rejected(self, token: str, reason: str) -> None:
        """Move past a rejected token; only the first worker to report it does the work."""
        with self._lock:
            if self._error:
                raise self._error
            if token != self._token:
                return
            log.warning("The gateway rejected the token from %s: %s", self._source_label, reason)
            self._failures = (self._failures + [f"{self._source_label}: {reason}"])[-4:]
            if not self._from_login:
                self._advance()
                return
            if not self._proven:
                self._refused_logins += 1
                if self._refused_logins >= MAX_REFUSED_LOGINS:
                    self._error = AuthError(f"the gateway refused {self._refused_logins} fresh login tokens "
                                            f"in a row, the last with {reason}")
                    raise self._error
            self._log_in()  # a login token that worked has expired, or one expired before its first use

    _source_label = property(lambda self: "the login" if self._from_login else self._current_label)

    def _advance(self) -> None:
        while self._sources:
            label, token = self._sources.pop(0)
            problem = token_problem(token)
            if problem:  # never sent: one line, then the next source
                log.warning("The token from %s cannot be used: it %s", label, problem)
                self._unusable.append(f"{label} {problem}")
                continue
            log.info("Using the token from %s", label)
            self._token, self._current_label, self._from_login, self._proven = token, label, False, False
            return
        if self._login and not self._from_login:
            self._log_in()
            return
        self._error = AuthError(self._failure_message())
        raise self._error

    def _log_in(self) -> None:
        try:
            token = self._login()
        except AuthError as exc:
            self._error = exc
            raise
        self._remember_secret(token)
        self._token, self._from_login, self._proven = token, True, False
        self._login_time = self._clock.monotonic()

    def _failure_message(self) -> str:
        unusable = "; ".join(self._unusable)
        if not self._failures:
            return (f"no usable token ({unusable})" if unusable else "no token") + (
                ": set QUALYS_TOKEN, or QUALYS_USERNAME and QUALYS_PASSWORD, or paste a token into EMBEDDED_TOKEN "
                "in the script")
        return ("the gateway refused every token (" + "; ".join(self._failures) + (f"; {unusable}" if unusable else "")
                + "). Set a fresh QUALYS_TOKEN, or QUALYS_USERNAME and QUALYS_PASSWORD for a login")


# --- Throughput ----------------------------------------------------------------------


def header_number(headers, name: str):
    """Read a numeric header as a finite float, or None when absent, unreadable, NaN or infinite."""
    try:
        number = float(headers.get(name))
    except (TypeError, ValueError):  # absent (None), or no number
        return None
    return number if math.isfinite(number) else None


class Pacer:
    """Spaces one endpoint's calls by its X-RateLimit headers (unpaced until one tells them): evenly, 5% under
    the rate, up to BURST_SHARE of a window's calls at once after a lull (GCRA), never more than allowed in any
    window; Remaining: 0 that its own calls do not explain holds every call for the window, a 429 for its wait."""

    MARGIN = 1.05  # run a little under the limit, so that jitter does not draw 429s
    BURST_SHARE = 0.1  # of a window's allowed calls, the most that go at once after a lull
    MAX_COUNTED = 10_000  # a larger limit is not counted per call, only spaced

    def __init__(self, clock, cap_seconds: float):
        self._clock, self._cap = clock, cap_seconds  # no spacing, hold or turn is ever longer than cap
        self._lock = threading.Lock()
        self._interval = self._window = self._burst = 0.0  # unknown until the first answer
        self._allowed = 0  # calls this client may send in one window; 0 while unknown or not counted
        self._due = 0.0  # when the next call is due by the even spacing (it may lie in the past: a burst)
        self._sent = collections.deque(maxlen=self.MAX_COUNTED)  # when the recent calls went

    def wait_turn(self, wake=None) -> float:
        """Block until this caller may send (or wake is set); return the time it was given (monotonic)."""
        with self._lock:
            now = self._clock.monotonic()
            slot = max(now, self._due - self._burst)
            if self._allowed and len(self._sent) >= self._allowed:  # the window would hold one too many
                window_ends = self._sent[-self._allowed] + self._window
                if window_ends > slot:
                    slot = self._hold_until(window_ends)
            slot = min(slot, now + self._cap)
            self._due = max(self._due, slot) + self._interval
            self._sent.append(slot)
        if slot > now:
            self._clock.sleep(slot - now, wake)
        return slot

    def learn(self, headers, sent_at: float, rate_limited: bool = False) -> None:
        """Take the limit, window and remaining calls from the headers of the answer to a call sent at
        sent_at, if they are sane. On a 429 the wait headers say how long to wait, so its
        Remaining: 0 adds no hold."""
        limit, window, remaining = (header_number(headers, f"X-RateLimit-{name}")
                                    for name in ("Limit", "Window-Sec", "Remaining"))
        with self._lock:
            if limit is not None and window is not None and limit >= 1 and window > 0:
                interval = min(window / limit * self.MARGIN, self._cap)
                if interval >= LONG_WAIT_SECONDS and interval != self._interval:
                    log.warning("The gateway allows %g calls per %gs: waiting %.0fs between calls",
                                limit, window, interval)
                allowed = int(limit / self.MARGIN)
                self._interval, self._window = interval, min(window, self._cap)
                self._allowed = max(allowed, 1) if allowed <= self.MAX_COUNTED else 0
                self._burst = min(int(allowed * self.BURST_SHARE) * interval, self._cap)
            if remaining is not None and remaining <= 0 and window is not None and window > 0 and not rate_limited:
                self._hold_for_spent_window(min(window, self._cap), limit, sent_at)

    def _hold_for_spent_window(self, window: float, limit, sent_at: float) -> None:
        """Remaining: 0. If this client's own calls spent the window, counting them paces it already;
        if not (another client shares the quota), every call waits for the window. The gateway
        counted its window somewhere between the call's sending and now, so ours are counted over both."""
        now = self._clock.monotonic()
        ours = sum(1 for stamp in self._sent if sent_at - window < stamp <= now)
        if limit is not None and ours >= limit:
            return
        if window >= LONG_WAIT_SECONDS and now + window > self._due - self._burst + 1:
            log.warning("X-RateLimit-Remaining is 0: every worker waits %.0fs for the window", window)
        self._hold_until(now + window)

    def hold(self, seconds: float) -> None:
        """Keep every caller from sending for the given seconds (after a 429)."""
        with self._lock:
            self._hold_until(self._clock.monotonic() + min(seconds, self._cap))

    def _hold_until(self, moment: float) -> float:
        """No call goes before moment, and none at once after it (the calls banked are spent)."""
        self._due = max(self._due, moment + self._burst)
        return moment

    def calls_per_second(self):
        """The rate this pacer keeps to, from the gateway's headers; None while no header told it."""
        return 1.0 / self._interval if self._interval > 0 else None


def moving_average(average, measurement: float, weight: float = 0.3) -> float:
    """An exponential moving average with a new measurement, weighing weight (the first: the measurement)."""
    return measurement if average is None else average + weight * (measurement - average)


def pages_in_flight(rate, answer_seconds, processing_seconds, ceiling: int) -> int:
    """The pages to keep in flight: the allowed rate times the time a page takes (answer and processing),
    but no more than keep the one-at-a-time processing busy (1 + answer / processing), with a margin, 1 to ceiling."""
    if answer_seconds is None or processing_seconds is None:
        return 1
    for_rate = rate * (answer_seconds + processing_seconds) if rate is not None else math.inf
    for_processing = 1 + answer_seconds / processing_seconds if processing_seconds > 0 else math.inf
    wanted = min(for_rate, for_processing) * Throughput.IN_FLIGHT_MARGIN
    return max(1, min(ceiling, math.ceil(wanted) if math.isfinite(wanted) else ceiling))


def pages_to_come(low_ms: int, high_ms: int, created, shown: int) -> float:
    """About how many pages a chain over [low_ms, high_ms) still holds: those past its latest page, as dense (where
    the order follows created), but at least the pages it has shown (where updated lags: a page is a sample)."""
    if len(created) < 2:
        return float(shown)
    earliest, latest = min(created), max(created)
    tail = (high_ms - latest) * (len(created) - 1) / max(latest - earliest, 1)
    return max(tail / PAGE_LIMIT, float(shown))


def split_plan(low_ms: int, high_ms: int, created, parts: int) -> list:
    """Cut [low_ms, high_ms) into at most parts ranges in time order, each holding about as much: the page's
    containers where they lie, and past them as many more as dense; none narrower than MIN_CHAIN_MS.

        split_plan(0, 100_000, [0, 1000, 2000, 3000], 2) -> [(0, 49500), (49500, 100000)]"""
    points = sorted(created)
    tail = (high_ms - points[-1]) * (len(points) - 1) / max(points[-1] - points[0], 1) if points else 0.0
    whole, cuts = len(points) + tail, []
    for index in range(1, parts):
        share = whole * index / parts
        if share < len(points):
            cut = points[int(share)]
        else:
            cut = points[-1] + int((share - len(points)) / tail * (high_ms - points[-1]))
        if cut - (cuts[-1] if cuts else low_ms) >= MIN_CHAIN_MS and high_ms - cut >= MIN_CHAIN_MS:
            cuts.append(cut)
    edges = [low_ms] + cuts + [high_ms]
    return list(zip(edges, edges[1:]))


class Throughput:
    """How fast the list is fetched, in one place: it paces the list's calls, keeps as many pages in flight as
    the gateway's rate calls for, processes one page at a time, and says when and where a chain is split."""

    IN_FLIGHT_MARGIN = 1.2  # keep this many times (rate x latency) pages in flight
    ONE_PAGE_AT_A_TIME = True  # the first of many answers that came at once is done first, not all late

    def __init__(self, clock, ceiling: int, cap_seconds: float, stop=None):
        self.clock, self.ceiling, self.stop = clock, ceiling, stop or Stop()
        self.pacer = Pacer(clock, cap_seconds)
        self.answer_seconds = self.processing_seconds = None  # moving averages, None before the first page
        self._turn, self._busy = self.stop.wakes(threading.Condition()), False

    def answered(self, seconds: float) -> None:
        """An answer came, seconds after its request was sent."""
        self.answer_seconds = moving_average(self.answer_seconds, seconds)

    @contextlib.contextmanager
    def processing(self):
        """Process one page (one at a time, waiting no longer than the run lasts), measured in CPU time."""
        one = self.ONE_PAGE_AT_A_TIME
        if one:
            with self._turn:
                self.stop.wait_until(self._turn, lambda: not self._busy)
                self.stop.check()
                self._busy = True
        try:
            started = self.clock.thread_cpu()
            yield
            self.processing_seconds = moving_average(self.processing_seconds, self.clock.thread_cpu() - started)
        finally:
            if one:
                with self._turn:
                    self._busy = False
                    self._turn.notify()

    def wanted(self) -> int:
        """The pages to keep in flight now, by the gateway's numbers and this run's."""
        return pages_in_flight(self.pacer.calls_per_second(), self.answer_seconds, self.processing_seconds,
                               self.ceiling)

    def split(self, low_ms: int, high_ms: int, created, shown: int, others: int, most: int) -> list:
        """The ranges a chain goes on as side by side (its own first), or []: split while the pages wanted in flight
        outnumber the chains alive (others), into no more parts than it reckons to hold, nor most."""
        parts = min(self.wanted() - others, math.floor(pages_to_come(low_ms, high_ms, created, shown)), most)
        bounds = split_plan(low_ms, high_ms, created, parts) if parts >= 2 else []
        return bounds if len(bounds) >= 2 else []


# --- Gateway client ------------------------------------------------------------------


def gateway_message(answer, redact) -> str:
    """The gateway's own short error text (its message or error field), redacted first, then cut.

    Bodies of 401/403 answers and of logins are never quoted beyond those two fields."""
    raw = bytes(answer.body[:65536]).decode("utf-8", "replace")
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict):
        text = next((value for value in (body.get("message"), body.get("error"))
                     if isinstance(value, str) and value.strip()), "")
    elif answer.status in TOKEN_STATUSES or answer.is_login:
        text = ""
    else:
        text = raw or answer.reason or ""
    return shorten(redact(text))


KEYSET_CURSOR = re.compile(r"updated\s*>=\s*\d+(\s+and\s+not\s+uuid\s*:\s*\[[^\]]*\])?\Z", re.IGNORECASE)


def reusable_cursor(cursor) -> bool:
    """Whether a cursor is the documented keyset clause (updated>=N AND not uuid: [...]), which goes on over
    a narrower range of the same filter; any other (opaque) cursor is used only as given."""
    return bool(cursor) and bool(KEYSET_CURSOR.match(cursor.strip()))


def next_cursor(headers):
    """The paginationQuery of the Link header's rel=next, or None on the last page; a next page whose URL
    cannot be read fails the page (stopping there would mark a week done that may not be)."""
    header = (headers.get("Link") or "").strip()
    if not header or header.lower() == "null":
        return None
    try:
        for link in requests.utils.parse_header_links(header):
            if "next" in str(link.get("rel", "")).lower().split():
                values = parse_qs(urlsplit(link.get("url", "")).query).get("paginationQuery")
                cursor = values[0].strip() if values else ""
                return cursor if cursor and cursor.lower() != "null" else None
    except ValueError:
        if "paginationquery" in header.lower():
            raise PageUndecodable("the gateway's Link header names a next page that cannot be read: "
                                  f"{shorten(header, 120)!r}") from None
    return None


def redirect_target(answer, redact) -> str:
    """Where a redirect points, as it can be shown."""
    return shorten(redact(answer.headers.get("Location") or "nowhere (no Location header)"), 120)


def check_status(answer, route: Route, redact, now: dt.datetime) -> None:
    """Raise what a list answer's status means, unless it is a page (2xx) or a refused token."""
    status = answer.status
    if 200 <= status < 300:
        return
    if status == 429:
        raise RateLimited(*rate_limit_wait(answer.headers, now))
    if status in RETRYABLE_STATUSES:
        raise TransientError(f"HTTP {status}")
    if status == 407:
        raise GatewayUnreachable(describe_proxy_trouble("failed: 407", route).reason)
    if 300 <= status < 400:
        raise WeekFailed(f"HTTP {status}: the gateway redirects to {redirect_target(answer, redact)}, which is not "
                         "followed (is GATEWAY the API gateway? see the README's table)")
    raise WeekFailed(f"HTTP {status} {gateway_message(answer, redact)}".rstrip())


def rate_limit_wait(headers, now: dt.datetime):
    """Return (seconds, header used) for a 429: ToWait-Sec, Retry-After, the window, else 60 s."""
    to_wait = header_number(headers, "X-RateLimit-ToWait-Sec")
    if to_wait is not None and to_wait >= 0:
        return to_wait, "X-RateLimit-ToWait-Sec"
    seconds, when = header_number(headers, "Retry-After"), http_date(headers.get("Retry-After"))
    if seconds is not None or when is not None:  # seconds, or an HTTP date
        return max(seconds if seconds is not None else (when - now).total_seconds(), 0.0), "Retry-After"
    window = header_number(headers, "X-RateLimit-Window-Sec")
    if window is not None and window > 0:
        return window, "X-RateLimit-Window-Sec"
    return 60.0, "no wait header"


def login_token(answer, auth_url: str, redact, now: dt.datetime) -> str:
    """The JWT a login answered with; raise what the answer means when it is none."""
    status, body = answer.status, bytes(answer.body).strip()
    if status == 429:
        raise RateLimited(*rate_limit_wait(answer.headers, now))
    if 300 <= status < 400:
        raise WrongGateway(f"the login at {auth_url} answered HTTP {status}, a redirect to "
                           f"{redirect_target(answer, redact)}: this URL is probably not the API gateway "
                           "(see the README's table)")
    if status in RETRYABLE_STATUSES or (200 <= status < 300 and not body):
        raise TransientError(f"HTTP {status}" + (" without a token in its body" if status < 300 else ""))
    if not 200 <= status < 300:
        raise AuthError(f"login failed: HTTP {status} {gateway_message(answer, redact)}".rstrip()
                        + " (check QUALYS_USERNAME and QUALYS_PASSWORD)")
    token = body.decode("utf-8", "replace")
    if len(body) > MAX_TOKEN_BYTES or token_problem(token):
        kind = "an HTML page" if body[:1] == b"<" or "html" in answer.headers.get("Content-Type", "") else "text"
        raise AuthError(f"the login at {auth_url} answered HTTP {status} with {kind}, not a token: the URL is "
                        "probably the Qualys UI or a single-sign-on page, not the API gateway (see the README's table)")
    return token


class GatewayClock:
    """The gateway's clock, as the Date headers of its answers tell it, beside this machine's."""

    def __init__(self, clock):
        self._clock, self._lock, self._said = clock, threading.Lock(), False
        self._offset = None  # the gateway's time minus this machine's, from the latest dated answer

    def saw(self, date_header) -> None:
        """Learn from one answer's Date header; say once when the two clocks disagree."""
        when = http_date(date_header)
        if when is None:
            return
        local = self._clock.now()
        with self._lock:
            self._offset = when - local
            say, self._said = not self._said and abs(self._offset) > CLOCK_SKEW, True
        if say:
            log.warning("This machine's clock (%s) and the gateway's (%s) disagree by %s: a week is final only "
                        "once it ended 24 hours before both", shown_time(local),
                        shown_time(when), describe_duration(abs(self._offset)))

    def now(self):
        """The gateway's time now, or None before any answer told it."""
        with self._lock:
            offset = self._offset
        return None if offset is None else self._clock.now() + offset


def page_text(body) -> str:
    """Decode a page as UTF-8: a byte-order mark is dropped, bytes that are not UTF-8 become U+FFFD."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("utf-8", "replace")
        log.warning("A page held bytes that are not UTF-8; they were replaced by U+FFFD")
    return text[1:] if text.startswith("\ufeff") else text


class GatewayClient:
    """The only code that does HTTP: pages of the list API, with pacing, retries, deadlines and tokens."""

    def __init__(self, *, settings: Settings, session, clock, progress, secrets, stop, throughput=None, rng=None):
        self.list_url, self.details_url = settings.gateway + API_PATH, settings.gateway + DETAILS_PATH
        self.auth_url, self.route = settings.gateway + AUTH_PATH, Route.to(settings.gateway + API_PATH)
        self.session, self.clock, self.policy, self.rng = session, clock, settings.policy, rng or random.Random()
        self.progress, self.redact, self.stop = progress, secrets.redact, stop
        self.throughput = throughput or Throughput(clock, settings.workers, self.policy.max_rate_limit_wait_seconds,
                                                   stop)
        self.pacer = self.throughput.pacer
        self.details_pacer = Pacer(clock, self.policy.max_rate_limit_wait_seconds)  # its endpoint's own limit
        self.watch = RequestWatch()
        stop.on_stop(self.watch.abort_all)
        self.budget = ByteBudget(self.policy.max_bytes_in_flight, stop)
        self._reached = Probe(stop, doubt=True)  # until the gateway answers, one request finds out if it can
        self._calm = Probe(stop, doubt=False)  # after a 429 on details, one request finds out if it may go on
        self.details_limited_seconds = 0.0  # the 429 waits of all details requests, run-wide
        login = None
        if settings.username and settings.password:
            login = functools.partial(self.log_in, settings.username, settings.password)
        sources = [("QUALYS_TOKEN", settings.env_token), ("EMBEDDED_TOKEN in the script", settings.embedded_token)]
        self.tokens = TokenBroker(sources=sources, login=login, clock=clock, remember_secret=secrets.remember)
        self.gateway_clock = GatewayClock(clock)

    def fetch_page(self, query: str, cursor, label: str, consume):
        """Fetch one page and pass its text to consume; return (consume's result, the next cursor). What is
        transient (a body consume cannot read too) is retried; anything else raises WeekFailed."""
        params = {"filter": query, "limit": PAGE_LIMIT}
        if cursor:
            params["paginationQuery"] = cursor
        with self._reached.turn(), self._fatal_stops_the_run():
            return self._with_retries(functools.partial(self._try_once, params, consume), label, self.pacer)

    def _with_retries(self, once, what: str, pacer):
        """Call once through the retry loop (retried): a 429 waits as the gateway asks (held by pacer, at
        most an hour in all); a request that keeps failing fails its week (WeekFailed), or the run when
        the gateway never answered and cannot be reached (GatewayUnreachable)."""
        limit_waited = [0.0]

        def after_rate_limit(exc: RateLimited) -> None:
            limit_waited[0] = self._after_rate_limit(exc, what, limit_waited[0], pacer)

        def checked():
            self.stop.check()  # a request cut off because the run is stopping is not worth a retry
            return once()
        return retried(checked, what, self.policy, rng=self.rng, wait=lambda seconds: self._wait(seconds, "retry"),
                       give_up=self._gave_up, on_rate_limit=after_rate_limit)

    def _gave_up(self, trouble: TransientError, attempts: int) -> ReportError:
        if trouble.unreachable and not self.answered:
            return GatewayUnreachable(trouble.unreachable)
        return WeekFailed(str(GaveUp(trouble, attempts)))

    @contextlib.contextmanager
    def _fatal_stops_the_run(self):
        """What no retry can help (no token left, a gateway that cannot be reached or is the wrong one)
        stops the other workers before they send."""
        try:
            yield
        except STOPS_THE_RUN as exc:
            if not isinstance(exc, KnowledgeRefused):  # one container's: the Learner asks another
                self.stop(exc)
            raise

    answered = property(lambda self: not self._reached.doubt)  # whether the gateway answered anything in this run

    def _after_rate_limit(self, exc: RateLimited, what: str, waited: float, pacer) -> float:
        wait = min(max(exc.wait_seconds, MIN_RATE_LIMIT_WAIT_SECONDS), self.policy.max_rate_limit_wait_seconds)
        waited += wait
        if waited > self.policy.max_total_rate_limit_wait_seconds:
            raise WeekFailed(f"{exc}; rate-limited for over {waited:g}s in all") from None
        if pacer is self.details_pacer:  # a storm on the details fails what is left to learn within minutes
            self.details_limited_seconds += wait
        log.warning("%s: %s; every worker waits %.0fs", what, exc, wait)
        pacer.hold(wait)
        self._wait(wait, "rate limit")
        return waited

    def _wait(self, seconds: float, why: str) -> None:
        self.progress.waiting(seconds, why)
        try:
            self.clock.sleep(seconds, self.stop)
        finally:
            self.progress.waiting(0, "")
        self.stop.check()

    def _try_once(self, params, consume):
        sent_at = self.pacer.wait_turn(self.stop)
        self.stop.check()
        token = self.tokens.current()  # taken after the pacing wait, so it is as fresh as it can be
        with self.budget.hold() as grow:  # the answer's bytes count until processed
            started = self.clock.monotonic()
            answer = self.send("GET", self.list_url, params=params, headers=REQUEST_HEADERS, auth=BearerAuth(token),
                               grow=grow)
            self.throughput.answered(self.clock.monotonic() - started)
            self.pacer.learn(answer.headers, sent_at, rate_limited=answer.status == 429)
            if answer.status in TOKEN_STATUSES:
                self.tokens.rejected(token, f"HTTP {answer.status} {gateway_message(answer, self.redact)}".rstrip())
                raise TokenRejected()
            check_status(answer, self.route, self.redact, self.clock.now())
            self.tokens.accepted(token)
            with self.throughput.processing():
                return self._page(answer, consume)

    def _page(self, answer, consume):
        """Pass a page's text to consume; return (consume's result, the next cursor)."""
        if answer.status == 204:
            return consume(None), None
        cursor = next_cursor(answer.headers)
        text, answer = page_text(answer.body), None  # the bytes go before the page is walked
        try:
            return consume(text), cursor
        except NotAPage as exc:  # what the gateway said, redacted before it is cut
            said = shorten(self.redact(exc.gateway_text), 200)
            raise TransientError(f"{exc}{': ' + said if said else ''}") from None

    def send(self, method: str, url: str, grow=None, **options) -> Answer:
        """One HTTP exchange, its body read whole (a redirect's never), all under one deadline;
        network trouble is transient, unless no retry can help (GatewayUnreachable at once)."""
        with self.watch.deadline(self.policy.read_timeout_seconds) as deadline:
            try:
                response = self.session.request(  # each read's own timeout is only a backstop to the deadline
                    method, url, stream=True, allow_redirects=False,
                    timeout=(self.policy.connect_timeout_seconds, self.policy.read_timeout_seconds + 1), **options)
                if response.status_code != 407:  # a 407 is the proxy's
                    self._reached.settle(False)
                self.gateway_clock.saw(response.headers.get("Date"))
                try:
                    redirect = 300 <= response.status_code < 400
                    body = bytearray() if redirect else read_body(response, self.policy.max_page_bytes, grow)
                finally:
                    response.close()
            except network_errors() as exc:
                raise self._network_problem(exc, deadline) from None
            if deadline.expired:  # cut off mid-headers, http.client may see only a short, quiet answer
                raise self._network_problem(None, deadline)
            if not deadline.attached:
                self.watch.answered_unwatched(deadline)
        return Answer(response.status_code, response.reason or "", response.headers, body, url == self.auth_url)

    def _network_problem(self, exc, deadline) -> ReportError:
        if deadline.expired:
            return TransientError(f"timed out: no whole answer within --read_timeout "
                                  f"({self.policy.read_timeout_seconds:g}s)")
        trouble = network_trouble(exc, self.route, self.clock.now())
        if trouble.fatal:
            return GatewayUnreachable(trouble.reason)
        timed_out = isinstance(exc, (requests.exceptions.Timeout, socket.timeout))
        problem = TransientError(f"{'timed out' if timed_out else 'network error'} "
                                 f"({type(exc).__name__}{': ' + trouble.reason if trouble.reason else ''})")
        problem.unreachable = trouble.reason
        return problem

    def fetch_details(self, sha: str, consume):
        """Fetch one container's details and return what consume makes of them, or None when it is gone (404),
        on the details' own pace; retried like a page; a 403 raises KnowledgeRefused (one container's)."""
        url = self.details_url.format(sha=quote(sha, safe=""))
        with self._fatal_stops_the_run():
            return self._with_retries(functools.partial(self._details_once, url, consume),
                                      f"Vulnerability details of container {sha[:12]}", self.details_pacer)

    def _details_once(self, url: str, consume):
        with self._calm.turn():
            if self.details_limited_seconds > DETAILS_STORM_SECONDS:
                raise WeekFailed(f"vulnerability details rate-limited for over {DETAILS_STORM_SECONDS:g}s in all "
                                 "in this run")
            sent_at = self.details_pacer.wait_turn(self.stop)
            self.stop.check()
            token = self.tokens.current()
            with self.budget.hold() as grow:
                answer = self.send("GET", url, headers=REQUEST_HEADERS, auth=BearerAuth(token), grow=grow)
                self.details_pacer.learn(answer.headers, sent_at, rate_limited=answer.status == 429)
                self._calm.settle(answer.status == 429)
                return self._details(answer, token, consume)

    def _details(self, answer: Answer, token: str, consume):
        if answer.status == 401:
            self.tokens.rejected(token, f"HTTP 401 {gateway_message(answer, self.redact)}".rstrip())
            raise TokenRejected()
        if answer.status == 403:
            said = gateway_message(answer, self.redact)
            raise KnowledgeRefused(f"its details were refused (HTTP 403{': ' + said if said else ''})")
        if answer.status in (204, 404):
            return None  # the container is gone (purged since the list named it)
        check_status(answer, self.route, self.redact, self.clock.now())
        self.tokens.accepted(token)
        return consume(page_text(answer.body))

    def log_in(self, username: str, password: str) -> str:
        """POST /auth and return the JWT: refused credentials or no token raise AuthError, a redirect WrongGateway;
        5xx, 429 and network trouble are retried like a page."""
        try:
            token = self._with_retries(functools.partial(self._log_in_once, username, password), "Login", self.pacer)
        except WeekFailed as failure:
            raise WeekFailed(f"login failed: {failure}") from None
        log.info("Logged in as QUALYS_USERNAME")
        return token

    def _log_in_once(self, username: str, password: str) -> str:
        answer = self.send("POST", self.auth_url, auth=BearerAuth(""),
                           data={"username": username, "password": password, "token": "true"})
        return login_token(answer, self.auth_url, self.redact, self.clock.now())


# --- Reading pages -------------------------------------------------------------------


class NumberText(str):
    """A JSON number Python cannot hold (1e400, or an integer of thousands of digits), as its text."""


def exact_float(text: str):
    value = float(text)
    return value if math.isfinite(value) else NumberText(text)


def exact_int(text: str):
    try:
        return int(text)
    except ValueError:  # Python 3.11+ refuses to convert integers of more than 4,300 digits
        return NumberText(text)


def reject_constant(name: str):
    raise NotJson(f"{name} is not JSON")


STRICT_JSON = json.JSONDecoder(parse_float=exact_float, parse_constant=reject_constant)
LENIENT_JSON = json.JSONDecoder(parse_float=exact_float, parse_int=exact_int, parse_constant=reject_constant)
JSON_SPACE = re.compile(r"[ \t\n\r]*")


def decode_at(text: str, position: int):
    """Decode the JSON value that starts at position; return (value, end)."""
    try:
        try:
            return STRICT_JSON.raw_decode(text, position)
        except (json.JSONDecodeError, NotJson):
            raise
        except ValueError:  # an integer too long to convert: decode it as text instead
            return LENIENT_JSON.raw_decode(text, position)
    except ValueError as exc:
        raise TransientError(f"the body is not valid JSON ({shorten(str(exc), 120)})") from None
    except RecursionError:
        raise PageUndecodable("a container is nested too deeply to be decoded") from None


def skip_space(text: str, position: int) -> int:
    return JSON_SPACE.match(text, position).end()


def expect(text: str, position: int, char: str) -> int:
    """Check that char is at position; return the position after it and any space."""
    if text[position:position + 1] != char:
        raise TransientError(f"the body is not valid JSON (expected {char!r} at character {position})")
    return skip_space(text, position + 1)


def walk_page(text: str):
    """Yield (item, start, end) for each item of a page's data, decoding one at a time; an object without data
    is an error in disguise: NotAPage, with what its errorCode/message/error said."""
    position = expect(text, skip_space(text, 0), "{")
    seen_data, said = False, []
    while text[position:position + 1] != "}":
        if text[position:position + 1] != '"':
            raise TransientError("the body is not valid JSON (a key is not a string)")
        key, position = decode_at(text, position)
        position = expect(text, skip_space(text, position), ":")
        if key == "data":
            if seen_data:
                raise TransientError("the page has two data fields")
            seen_data = True
            position = yield from walk_data(text, position)
        else:
            value, position = decode_at(text, position)
            if key in ("errorCode", "message", "error") and type(value) in (str, int) and len(said) < 3:
                said.append(f"{key}: {value}")
        position = skip_space(text, position)
        if text[position:position + 1] != ",":
            break
        position = skip_space(text, position + 1)
    position = expect(text, position, "}")
    if position != len(text):
        raise TransientError("the body has data after its JSON object")
    if not seen_data:
        raise NotAPage("; ".join(said))


def walk_data(text: str, position: int):
    """Yield the items of the data value at position; return the position after it."""
    if text[position:position + 1] != "[":
        value, end = decode_at(text, position)
        if isinstance(value, dict):
            yield value, position, end
        elif value is not None:
            raise TransientError("the response's data is neither a list nor an object")
        return end
    position = skip_space(text, position + 1)
    if text[position:position + 1] == "]":
        return position + 1
    while True:
        item, end = decode_at(text, position)
        yield item, position, end
        position = skip_space(text, end)
        if text[position:position + 1] != ",":
            break
        position = skip_space(text, position + 1)
    if text[position:position + 1] != "]":
        raise TransientError(f"the body is not valid JSON (expected ']' at character {position})")
    return position + 1


def compact_json(value) -> str:
    """Render a decoded value as compact JSON with sorted keys; deep values without recursion."""
    with contextlib.suppress(RecursionError):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    parts, pending = [], [value]
    while pending:
        item = pending.pop()
        if type(item) is _Markup:
            parts.append(item)
        elif isinstance(item, dict):
            entries = sorted(item.items())
            pending.append(_Markup("}"))
            for index in range(len(entries) - 1, -1, -1):
                pending.append(entries[index][1])
                pending.append(_Markup(("," if index else "") + json.dumps(entries[index][0], ensure_ascii=False)
                                       + ":"))
            pending.append(_Markup("{"))
        elif isinstance(item, list):
            pending.append(_Markup("]"))
            for index in range(len(item) - 1, -1, -1):
                pending.append(item[index])
                if index:
                    pending.append(_Markup(","))
            pending.append(_Markup("["))
        else:
            parts.append(json.dumps(item, ensure_ascii=False))
    return "".join(parts)


class _Markup(str):
    """A piece of JSON punctuation on compact_json's work list."""


def created_ms(container):
    """A container's created time in epoch milliseconds, or None when it is missing or unreadable."""
    value = container.get("created")
    if type(value) is str and EPOCH_MS_TEXT.match(value):
        return int(value)
    if type(value) is int or (type(value) is float and value.is_integer()):
        return int(value)
    return None


def uuid_key(container):
    """The key a container is de-duplicated by: its uuid, typed, so that 1, 1.0, true and "1" differ."""
    value = container.get("uuid") if type(container) is dict else None
    if value is None or type(value) is str:
        return value
    return (type(value).__name__, compact_json(value))


def json_lines(stream):
    """Yield (line, container) for the container lines of a staged or stored weekly JSON."""
    for line in stream:
        line = line.rstrip(b"\r\n").rstrip(b",")
        if line in (b"", b"[", b"]", b"[]"):
            continue
        text = line.decode("utf-8")
        container, end = decode_at(text, 0)
        if end != len(text):
            raise TransientError("a line holds more than one JSON value")
        yield line, container


def read_report(path: str):
    """Yield the containers of a stored weekly JSON, a line at a time when it has our layout."""
    with open(path, "rb") as stream:
        first = stream.readline().strip()
        if first in (b"[", b"[]"):
            for _, container in json_lines(stream):
                yield container
            return
        stream.seek(0)
        text = stream.read().decode("utf-8")
    containers, end = decode_at(text, skip_space(text, 0))
    if not isinstance(containers, list) or skip_space(text, end) != len(text):
        raise TransientError("it is not a JSON array")
    yield from containers


# --- A week's JSON -------------------------------------------------------------------


@dataclasses.dataclass
class PageStats:
    """What one page brought: its items, the containers written, uuids not seen before, items
    that are not containers (dropped), containers created outside the range asked for (left
    out), containers already written (duplicates), and the created times of those written."""

    items: int = 0
    written: int = 0
    new_uuids: int = 0
    dropped: int = 0
    outside: int = 0
    duplicates: int = 0
    created: list = dataclasses.field(default_factory=list)  # the created times (ms) of its containers


class Entry(typing.NamedTuple):
    """Where one container stands in its fragment's file, and the key that orders the week by time."""

    key: tuple  # (created unknown?, created ms, uuid, crc of its bytes): a week in time order
    start: int
    length: int
    uuid: object  # its uuid_key, by which a copy served twice is dropped


def order_key(container, uuid, crc: int) -> tuple:
    """A container's place in its week: by created time, then uuid, then its bytes; one whose created
    cannot be read goes last. Any split of a week into chains gives the same order."""
    created = created_ms(container)
    uuid_text = uuid if type(uuid) is str else "" if uuid is None else str(uuid)
    return (0, created, uuid_text, crc) if created is not None else (1, 0, uuid_text, crc)


class Fragment:
    """One chain's share of a week, staged as JSON lines: each container as the gateway sent it, once (by uuid),
    within [start_ms, end_ms); a page written whole or cut back, with an Entry per container for the merge."""

    def __init__(self, job: WeekJob, temp_folder: str, *, tag: str, whole_week: bool, start_ms: int, end_ms: int,
                 needs=None):
        self.whole_week = whole_week  # the week's first chain: if it stays alone, its file is the week's
        self.needs, self.start_ms, self.end_ms = needs, start_ms, end_ms  # needs: a KnowledgeNeeds, or None
        self.keys, self.outside_keys = set(), set()
        self.entries, self.in_order = [], True
        self.totals = PageStats()
        self.json = StagedFile(temp_folder, job.files.json + tag)
        if whole_week:
            self.json.stream.write(b"[\n")

    containers = property(lambda self: self.totals.written)

    def add_page(self, text) -> PageStats:
        """Write a page's containers that this fragment does not have yet; all of them, or none."""
        if text is None:
            return PageStats()
        start, entries, in_order = self.json.stream.tell(), len(self.entries), self.in_order
        try:
            stats, new_keys, new_outside = self._write_page(text)
        except BaseException:
            self.json.stream.seek(start)
            self.json.stream.truncate()
            del self.entries[entries:]
            self.in_order = in_order
            raise
        self.keys |= new_keys
        self.outside_keys |= new_outside
        for field in ("items", "written", "dropped", "outside", "duplicates"):
            setattr(self.totals, field, getattr(self.totals, field) + getattr(stats, field))
        return stats

    def _write_page(self, text: str):
        one_line = "\n" not in text and "\r" not in text
        stats, new_keys, new_outside, out = PageStats(), set(), set(), self.json.stream
        for container, start, end in walk_page(text):
            stats.items += 1
            if type(container) is not dict:
                stats.dropped += 1
                continue
            key = uuid_key(container)
            if not self._within(container, stats):
                stats.outside += 1
                if key is not None and key not in self.outside_keys:
                    new_outside.add(key)
                continue
            if key is not None:
                if key in self.keys or key in new_keys:
                    stats.duplicates += 1
                    continue
                new_keys.add(key)
            if self.needs is not None:
                self.needs.note(container)
            position = out.tell()
            crc = write_raw(out, text, start, end, one_line)
            entry = Entry(order_key(container, key, crc), position, out.tell() - position, key)
            self.in_order = self.in_order and not (self.entries and entry.key < self.entries[-1].key)
            self.entries.append(entry)
            stats.written += 1
        stats.new_uuids = len(new_keys) + len(new_outside)
        return stats, new_keys, new_outside

    def _within(self, container, stats: PageStats) -> bool:
        """Whether a container belongs here: created in the range, or its created unreadable; note its
        created time."""
        created = created_ms(container)
        if created is None:
            return True
        if not self.start_ms <= created < self.end_ms:
            return False
        stats.created.append(created)
        return True

    def read_back(self):
        """Yield the containers staged so far (decoded again)."""
        self.json.stream.flush()
        with open_regular(self.json.temp_path) as stream:
            for _, container in json_lines(stream):
                yield container

    def in_time_order(self) -> list:
        """The entries, ordered by time (created, uuid, bytes)."""
        return self.entries if self.in_order else sorted(self.entries)

    def __enter__(self) -> "Fragment":
        return self

    def __exit__(self, *exc_info) -> None:
        """Remove what the fragment staged, unless it was published as the week's own file."""
        self.json.__exit__(*exc_info)

    def discard(self) -> None:
        self.__exit__(None, None, None)


def write_raw(stream, text: str, start: int, end: int, one_line: bool) -> int:
    """Write text[start:end], a container exactly as the gateway sent it, as one line and ','; return
    the CRC of its bytes. A large one goes in pieces, so that it is never copied whole."""
    crc = 0
    for low in range(start, end, RAW_PIECE_CHARACTERS):
        piece = text[low:min(low + RAW_PIECE_CHARACTERS, end)]
        data = (piece if one_line else piece.replace("\n", "").replace("\r", "")).encode("utf-8")
        stream.write(data)
        crc = zlib.crc32(data, crc)
    stream.write(b",\n")
    return crc


def close_json_array(stream, containers: int) -> None:
    """End a staged weekly JSON: '[' + lines 'container,' becomes a JSON array, or '[]' when empty."""
    if containers:
        stream.seek(-2, os.SEEK_END)  # the last container's ',\n'
        stream.truncate()
        stream.write(b"\n]\n")
    else:
        stream.seek(0)
        stream.truncate()
        stream.write(b"[]\n")


def merge_fragments(job: WeekJob, fragments, temp_folder: str):
    """Merge the chains' fragments into the week's staged JSON, in time order, whatever the chains
    were: the same week gives the same bytes however it was split. A container served to two
    chains is kept once (its first copy in time order); return (staged JSON, containers)."""
    with contextlib.ExitStack() as owned:
        final_json = owned.enter_context(StagedFile(temp_folder, job.files.json))
        final_json.stream.write(b"[\n")
        ordered = [[(entry, number) for entry in fragment.in_time_order()] for number, fragment in enumerate(fragments)]
        seen, containers, twice = set(), 0, 0
        copier = RangeCopier([fragment.json.stream for fragment in fragments], final_json.stream)
        for entry, number in heapq.merge(*ordered, key=lambda item: (item[0].key, item[1])):
            if entry.uuid is not None:
                if entry.uuid in seen:
                    twice += 1
                    continue
                seen.add(entry.uuid)
            copier.add(number, entry.start, entry.length)
            containers += 1
        copier.flush()
        if twice:
            log.info("%s: %s came in two chains; kept once", job.week.label, plural(twice, "container"))
        owned.pop_all()  # the caller publishes it, or discards it
        return final_json, containers


class RangeCopier:
    """Copies byte ranges of the fragments' files to the week's, in the order given: ranges that
    follow each other in the same fragment (a chain's containers, in time order) go as one copy."""

    def __init__(self, sources: list, target):
        self.sources, self.target = sources, target
        self.number, self.start, self.end = None, 0, 0

    def add(self, number: int, start: int, length: int) -> None:
        """Copy length bytes from start in fragment number's file, after those added before."""
        if number != self.number or start != self.end:
            self.flush()
            self.number, self.start = number, start
        self.end = start + length

    def flush(self) -> None:
        """Copy the range added and not copied yet."""
        if self.number is not None:
            copy_range(self.sources[self.number], self.start, self.end - self.start, self.target)
        self.number = None


def copy_range(source, start: int, length: int, target) -> None:
    """Copy length bytes from start in source to the end of target, COPY_CHUNK_BYTES at a time."""
    source.seek(start)
    while length > 0:
        data = source.read(min(length, COPY_CHUNK_BYTES))
        if not data:
            raise OSError(f"a staged file ended {length} bytes early")
        target.write(data)
        length -= len(data)


def json_has_containers(path: str) -> bool:
    """Whether a stored weekly JSON holds any container (by its first bytes: '[]' is an empty week)."""
    with open(path, "rb") as stream:
        head = stream.read(64).lstrip()
    return head.startswith(b"[") and not head[1:].lstrip().startswith(b"]")


def report_damage(path: str) -> str:
    """Why a stored final JSON cannot be trusted as a done week ('' when it looks whole), read
    cheaply: it must be readable, not empty, and a JSON array by its first and last bytes."""
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            head = stream.read(64)
            stream.seek(max(size - 64, 0))
            tail = stream.read(64)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    head, tail = head.lstrip(), tail.rstrip()
    if not head:
        return "is empty"
    if not head.startswith(b"[") or not tail.endswith(b"]"):
        return "is not a whole JSON array (cut short, or not JSON)"
    return ""


def set_aside_damaged(done) -> tuple:
    """Split the files of done weeks into those whose JSON looks whole and those whose JSON is
    damaged; a damaged one is kept aside under a name that says so, and its week is fetched again."""
    whole, damaged = [], []
    for files in done:
        damage = report_damage(files.json)
        if not damage:
            whole.append(files)
            continue
        aside = set_aside(files.json)
        log.warning("%s: its JSON %s %s; kept aside as %s, and the week is fetched again", files.week.label,
                    os.path.basename(files.json), damage, os.path.basename(aside))
        damaged.append(files)
    return whole, damaged


# --- Derived files -------------------------------------------------------------------


def format_time(value) -> str:
    """Render epoch milliseconds (a string or a number) as ISO-8601 UTC; leave others as text."""
    if value is None or value == "" or value == "null":
        return ""
    try:  # the hot path, in C: a year from 1000 to 9999
        seconds, millis = divmod(int(value), 1000)
        moment = time.gmtime(seconds)
        if 1000 <= moment.tm_year <= 9999:
            stamp = "%04d-%02d-%02dT%02d:%02d:%02d" % moment[:6]
            return f"{stamp}.{millis:03d}Z" if millis else f"{stamp}Z"
    except (TypeError, ValueError, OverflowError, OSError):
        pass
    moment = epoch_ms_time(value)
    if moment is None:
        return format_cell(value)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{moment.microsecond // 1000:03d}Z" if moment.microsecond else f"{stamp}Z"


def format_value(value) -> str:
    """Render one value as text: null blank, booleans true/false, lists joined with '; '."""
    if value is None:
        return ""
    if isinstance(value, str):
        return "" if value == "null" else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return LIST_SEPARATOR.join(format_value(item) for item in value)
    if isinstance(value, dict):
        if len(value) == 2 and "key" in value and "value" in value:
            return f"{format_value(value['key'])}={format_value(value['value'])}"
        return compact_json(value)
    return str(value)


def format_text(value) -> str:
    """format_value, but a value nested too deeply to render that way becomes compact JSON."""
    try:
        return format_value(value)
    except RecursionError:
        return compact_json(value)


def format_cell(value) -> str:
    """Render a value for the CSV, with a leading ' on text a spreadsheet would run as a formula."""
    text = value if type(value) is str and value != "null" else format_text(value)  # text: the common case
    if text and text[0] in FORMULA_TRIGGERS and not PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def typed_cell(value):
    """A workbook cell's value: numbers stay numbers, booleans booleans, everything else text."""
    if type(value) is bool:
        return value
    if type(value) is float or (type(value) is int and abs(value) <= XLSX_EXACT_INTEGER):
        return value
    text = format_text(value)
    return text if text else None


def typed_time(value):
    """A workbook time cell: epoch milliseconds become a UTC datetime, anything else text."""
    if value is None or value == "" or value == "null":
        return None
    moment = epoch_ms_time(value)
    if moment is None or not 1900 <= moment.year <= 9999:
        return typed_cell(value)
    return moment.replace(tzinfo=None)


def compile_path(column: str) -> tuple:
    """Split 'cluster.k8s.pod.controller[0].name' into ('cluster', ..., 'controller', 0, 'name')."""
    steps = []
    for part in column.split("."):
        name, _, rest = part.partition("[")
        steps.append(name)
        for index in re.findall(r"(-?\d+)\]", "[" + rest if rest else ""):
            steps.append(int(index))
    return tuple(steps)


def resolve(container, steps):
    """Follow compiled path steps into nested objects; None when anything is missing."""
    value = container
    for step in steps:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and -len(value) <= step < len(value) else None
        else:
            value = value.get(step) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


def software_field(field: str):
    """Return a getter that joins one field of a vulnerability's software[] entries, in order."""
    def getter(vuln):
        software = vuln.get("software")
        if isinstance(software, dict):
            software = [software]
        if not isinstance(software, list):
            return None
        try:  # the hot path, in C: dict.get over every entry
            values = list(map(dict.get, software, itertools.repeat(field, len(software))))
        except TypeError:  # an entry that is not an object
            values = [entry.get(field) if type(entry) is dict else None for entry in software]
        if None in values:  # fixVersion and packagePath are often null: blank them here, not one by one
            values = ["" if value is None else value for value in values]
        if "null" not in values:
            with contextlib.suppress(TypeError):  # the hot path: every value is a string
                return LIST_SEPARATOR.join(values)
        return LIST_SEPARATOR.join(format_value(value) for value in values)
    return getter


class RowFlattener:
    """Turns one container into rows, one per vulnerability, its column paths resolved once: text for the CSV,
    or (typed) workbook values; getters read the columns that do not come from the list (the knowledge)."""

    def __init__(self, columns, typed: bool = False, getters=None):
        self.header = list(columns)
        self.getters = getters or {}
        self.unknown = [column for column in columns if column not in SUPPORTED_COLUMNS]
        self._blank = [None if typed else ""] * len(self.header)
        self._fields, self._container_cells = [], []  # (position, key or steps, formatter): top-level, nested
        self._vuln_cells = []  # (position, getter, formatter)
        for position, column in enumerate(self.header):
            if column in self.unknown:
                continue
            if typed:
                formatter = typed_time if column in TIME_COLUMNS else typed_cell
            else:
                formatter = format_time if column in TIME_COLUMNS else format_cell
            if column in VULN_FIELDS:
                self._vuln_cells.append((position, operator.methodcaller("get", VULN_FIELDS[column]), formatter))
            elif column in VULN_SOFTWARE_FIELDS:
                self._vuln_cells.append((position, software_field(VULN_SOFTWARE_FIELDS[column]), formatter))
            elif column in self.getters:
                self._vuln_cells.append((position, self.getters[column], formatter))
            else:
                steps = compile_path(column)
                cells = self._fields if len(steps) == 1 else self._container_cells
                cells.append((position, steps[0] if len(steps) == 1 else steps, formatter))

    def rows(self, container) -> list:
        """Return the rows of one container; one blank-vulnerability row when it has none."""
        if not isinstance(container, dict):
            container = {}
        template, get = self._blank[:], container.get
        for position, key, formatter in self._fields:
            template[position] = formatter(get(key))
        for position, steps, formatter in self._container_cells:
            template[position] = formatter(resolve(container, steps))
        vulns = container.get("vulnerabilities")
        if isinstance(vulns, dict):
            vulns = [vulns]
        if not isinstance(vulns, list) or not vulns:
            return [template]
        rows = []
        for vuln in vulns:
            if not isinstance(vuln, dict):
                vuln = {}
            row = template[:]
            for position, getter, formatter in self._vuln_cells:
                row[position] = formatter(getter(vuln))
            rows.append(row)
        return rows


def make_flattener(columns, getters=None) -> RowFlattener:
    """Build the row flattener, warning once about each column it does not know."""
    flattener = RowFlattener(columns, getters=getters)
    for column in flattener.unknown:
        log.warning("Unknown CSV column %r: it will be blank (see --help for the list)", column)
    return flattener


def csv_bytes(text: str) -> bytes:
    """Encode CSV text as UTF-8; a lone surrogate (from a \\ud800 escape) becomes U+FFFD."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE.sub("\ufffd", text).encode("utf-8")


class CsvText:
    """Renders rows in our CSV format (every cell quoted, CRLF) as UTF-8 bytes, one batch at a time."""

    def __init__(self):
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, **CSV_FORMAT)

    def encode(self, rows) -> bytes:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerows(rows)
        return csv_bytes(self._buffer.getvalue())


def csv_head(header) -> bytes:
    """The start of every CSV: a UTF-8 byte-order mark and the header row."""
    return b"\xef\xbb\xbf" + CsvText().encode([header])


def import_xlsxwriter():
    """Import XlsxWriter, the optional dependency of --xlsx, or say how to install it."""
    try:
        import xlsxwriter
    except ImportError:
        raise UsageError("--xlsx needs the XlsxWriter package: .venv/bin/python -m pip install XlsxWriter "
                         "(or your distribution's python3-xlsxwriter)") from None
    return xlsxwriter


def column_width(column: str) -> int:
    """A width that fits a column's typical values."""
    if column in TIME_COLUMNS:
        return 24
    if column.endswith(("uuid", "Uuid", "Sha", "sha")) or column.startswith("vuln_software"):
        return 40
    return min(max(len(column) + 2, 12), 40)


def write_workbook(json_path, stream, columns, sheet_name, temp_folder, max_rows=XLSX_MAX_ROWS, getters=None) -> int:
    """Write the rows of a weekly JSON as a workbook with typed cells, a row at a time; return the rows."""
    xlsxwriter = import_xlsxwriter()
    library_folder = os.path.join(temp_folder, temp_name("xlsxwriter"))  # its temp files, named as ours
    os.mkdir(library_folder, FOLDER_MODE)
    try:
        return write_sheets(xlsxwriter.Workbook(stream, {
            "constant_memory": True, "tmpdir": library_folder, "strings_to_numbers": False,
            "strings_to_formulas": False, "strings_to_urls": False}), json_path, columns, sheet_name, max_rows,
            getters)
    finally:
        shutil.rmtree(library_folder, ignore_errors=True)


def write_sheets(workbook, json_path, columns, sheet_name, max_rows, getters) -> int:
    """Write the rows of a weekly JSON into the workbook's sheets and close it; return rows."""
    flattener = RowFlattener(columns, typed=True, getters=getters)
    time_format = workbook.add_format({"num_format": XLSX_TIME_FORMAT})
    sheets, sheet, row_number, total = 0, None, max_rows, 0
    for container in read_report(json_path):
        for row in flattener.rows(container):
            if row_number >= max_rows:
                finish_sheet(sheet, row_number, len(columns))
                sheets += 1
                sheet = start_sheet(workbook, sheet_name if sheets == 1 else f"{sheet_name}_{sheets}", columns)
                row_number = 1
            write_row(sheet, row_number, row, time_format)
            row_number, total = row_number + 1, total + 1
    finish_sheet(sheet, row_number, len(columns))
    workbook.close()
    return total


def start_sheet(workbook, name: str, columns):
    """Add a sheet with a frozen header row and widths that fit typical values."""
    sheet = workbook.add_worksheet(name)
    for position, column in enumerate(columns):
        sheet.set_column(position, position, column_width(column))
        sheet.write_string(0, position, column)
    sheet.freeze_panes(1, 0)
    return sheet


def finish_sheet(sheet, rows: int, width: int) -> None:
    if sheet is not None:
        sheet.autofilter(0, 0, max(rows - 1, 0), width - 1)


def write_row(sheet, row_number: int, row, time_format) -> None:
    """Write one row's typed values; a blank is an empty cell."""
    for position, value in enumerate(row):
        if value is None:
            continue
        if type(value) is str:
            sheet.write_string(row_number, position, SURROGATE.sub("\ufffd", value))
        elif type(value) is bool:
            sheet.write_boolean(row_number, position, value)
        elif isinstance(value, dt.datetime):
            sheet.write_datetime(row_number, position, value, time_format)
        else:
            sheet.write_number(row_number, position, value)


def write_csv(json_path: str, stream, flattener: RowFlattener):
    """Write the CSV of a weekly JSON to stream, a container at a time; return (containers, rows)."""
    stream.write(csv_head(flattener.header))
    containers = rows = 0
    rows_text = CsvText()
    for container in read_report(json_path):
        container_rows = flattener.rows(container)
        for first in range(0, len(container_rows), ROWS_PER_WRITE):  # a huge container's CSV in pieces
            stream.write(rows_text.encode(container_rows[first:first + ROWS_PER_WRITE]))
        containers += 1
        rows += len(container_rows)
    return containers, rows


def write_derived(files: WeekFiles, json_path: str, kinds, *, flattener: RowFlattener, workbook_columns,
                  temp_folder: str, staged_json=None):
    """The one place a week's CSV and workbook are written: from its JSON, for export, rebuild and heal alike
    (kinds: csv, xlsx), moved into place before the staged JSON (the done marker); none for an empty week."""
    published = []
    with contextlib.ExitStack() as owned:
        staged, containers, rows = [], None, 0
        if "csv" in kinds:
            staged.append(owned.enter_context(StagedFile(temp_folder, files.csv)))
            containers, rows = write_csv(json_path, staged[-1].stream, flattener)
        if containers is None:
            containers = int(json_has_containers(json_path))
        if "xlsx" in kinds and containers and workbook_columns is not None:
            staged.append(owned.enter_context(StagedFile(temp_folder, files.xlsx)))
            write_workbook(json_path, staged[-1].stream, workbook_columns, files.week.days.replace("..", "_"),
                           temp_folder, getters=flattener.getters)
        if not containers:
            staged = []
            remove_quietly(files.csv)  # an old CSV or workbook of this name no longer matches
            remove_quietly(files.xlsx)
        try:
            for item in staged + [staged_json]:
                if item is not None:
                    item.publish()
                    published.append(os.path.basename(item.final_path))
        except OSError as exc:
            if not published:
                raise
            raise WeekFailed(f"cannot write its files: {exc}; {', '.join(published)} had already been written, "
                             "but not the JSON that marks the week done, so the next run fetches it again") from None
    return containers, rows


def heal_files(files: WeekFiles, temp_folder: str, flattener: RowFlattener, workbook_columns, learn=None) -> list:
    """Rebuild a done week's missing CSV, and with --xlsx its missing workbook, from its JSON (no
    list call; learn(json path) first learns what its QIDs need); return the names rebuilt."""
    missing = {"csv": files.csv} if not os.path.exists(files.csv) else {}
    if workbook_columns is not None and not os.path.exists(files.xlsx):
        missing["xlsx"] = files.xlsx
    if not missing or not json_has_containers(files.json):
        return []
    if learn is not None:
        learn(files.json)
    write_derived(files, files.json, tuple(missing), flattener=flattener, workbook_columns=workbook_columns,
                  temp_folder=temp_folder)
    return [os.path.basename(path) for path in missing.values()]


# --- QID knowledge -------------------------------------------------------------------


def normalized_knowledge(field: str, value):
    """A field of QID knowledge as the catalog keeps it, or None when unreadable or impossible: severity
    an int from 1 to 5, cvss3Base a float from 0 to 10, the patch flag a bool, published epoch ms, CVE
    ids a list of text (empty: no CVE), the rest text."""
    if value is None or value == "" or value == "null":
        return None
    if field == "cveids":
        items = value if isinstance(value, list) else re.split(r"[,;\s]+", str(value).strip())
        return [str(item) for item in items if item not in (None, "")]
    if field == "patchAvailable":
        return value if type(value) is bool else {"true": True, "false": False, "1": True, "0": False}.get(
            str(value).strip().lower())
    if field in KNOWLEDGE_BOUNDS:
        try:
            number = float(value) if type(value) is not bool else math.nan
        except (TypeError, ValueError):
            return None
        low, high = KNOWLEDGE_BOUNDS[field]
        if not low <= number <= high or field == "severity" and not number.is_integer():
            return None
        return int(number) if field == "severity" else number
    if field != "published":
        return format_text(value)
    if type(value) is int or (type(value) is str and EPOCH_MS_TEXT.match(value.strip())):  # epoch ms, or ISO-8601
        return int(value)
    when = iso_time(value)
    return int(when.timestamp() * 1000) if when is not None else None


def carried_knowledge(vuln: dict, field: str):
    """A field of QID knowledge that a list item carries itself (some tenants send severity), or None."""
    value = vuln.get("cvss3Info") if field == "cvss3Base" else vuln.get(field)
    if field == "cvss3Base":
        value = value.get("baseScore") if isinstance(value, dict) else None
    return normalized_knowledge(field, value)


def qid_key(value):
    """A QID as the catalog keys it (its digits), or None when the value is no QID (null, 1001.0, a list...)."""
    if type(value) is int:
        return str(value)
    if type(value) is str and value.strip().isdigit():
        return value.strip()
    return None


def knowledge_getters(catalog) -> dict:
    """The flattener's getters of the knowledge columns: column -> a function of a vulnerability: what the
    list item carries, else what the QID catalog has learned."""
    def getter(field):
        def get(vuln):
            carried, qid = carried_knowledge(vuln, field), qid_key(vuln.get("qid"))
            return carried if carried is not None or qid is None else catalog.get(qid, field)
        return get
    return {column: getter(field) for column, field in KNOWLEDGE_COLUMNS.items()}


def qid_list(qids) -> str:
    """A few QIDs in number order, for a message."""
    ordered = sorted(qids, key=lambda qid: (len(str(qid)), str(qid)))
    return ", ".join(str(qid) for qid in ordered[:5]) + (", ..." if len(ordered) > 5 else "")


class QidCatalog:
    """What was learned per QID from vulnerability details (never a per-container field), with when, kept in
    qid_catalog.json (written whole); a damaged one is kept aside, one that is not a file stops the run."""

    def __init__(self, path: str):
        self.path, self._lock, self.changed = path, threading.Lock(), False
        self._entries = self._read()
        self._learned = {qid: iso_time(entry.get("learned")) for qid, entry in self._entries.items()}

    def _read(self) -> dict:
        try:
            entries = json.loads(read_regular(self.path, MAX_PAGE_BYTES).decode("utf-8")).get("qids")
            if not isinstance(entries, dict):
                raise ValueError("it holds no qids object")
            return {str(qid): entry for qid, entry in entries.items() if isinstance(entry, dict)}
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise UsageError(f"the QID catalog cannot be read: {exc.strerror or exc}") from None
        except (ValueError, AttributeError) as exc:
            aside = set_aside(self.path)
            log.warning("The QID catalog %s cannot be read (%s); kept aside as %s, its QIDs are learned again",
                        os.path.basename(self.path), shorten(str(exc), 100), os.path.basename(aside))
            return {}

    def get(self, qid, field: str):
        entry = self._entries.get(str(qid))
        return entry.get(field) if entry is not None else None

    def needs(self, qid, now) -> bool:
        """Whether a QID is unknown, or (with now) was learned over KNOWLEDGE_MAX_AGE ago (Qualys revises
        severities and adds CVEs) or, impossibly, after now."""
        learned = self._learned.get(str(qid))
        return learned is None or now is not None and not now - KNOWLEDGE_MAX_AGE <= learned <= now + CLOCK_SKEW

    def learn(self, qid: str, vuln: dict, now: dt.datetime) -> bool:
        """Keep what a details answer says of one QID; False (nothing kept) when it says nothing."""
        entry = {field: carried_knowledge(vuln, field) for field in KNOWLEDGE_COLUMNS.values()}
        if all(value is None for value in entry.values()):
            return False
        entry["learned"] = now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock:
            self._entries[qid] = entry
            self._learned[qid] = iso_time(entry["learned"])
            self.changed = True
        return True

    def save(self, temp_folder: str) -> None:
        """Write the catalog whole, or not at all."""
        with self._lock:
            text = json.dumps({"format": 1, "qids": self._entries}, ensure_ascii=False, sort_keys=True, indent=1)
            self.changed = False
        with StagedFile(temp_folder, self.path) as staged:
            staged.stream.write(text.encode("utf-8") + b"\n")
            staged.publish()


class KnowledgeNeeds:
    """The QIDs a week needs learned for the knowledge fields asked for and not carried by its list
    items (unknown to the catalog, or stale when now is given), each with the containers (shas) seen
    last that hold it, at most CANDIDATES_PER_QID, to ask for their details."""

    def __init__(self, catalog: QidCatalog, fields, now, asked=frozenset()):
        self.catalog, self.fields, self.now, self.asked = catalog, tuple(fields), now, asked  # asked: not again
        self.qids = {}  # qid -> deque of shas
        self._known = set()  # QIDs the catalog was seen to know well enough

    def note(self, container) -> None:
        vulns, sha = container.get("vulnerabilities"), container.get("sha")
        askable = type(sha) is str and CONTAINER_SHA.match(sha) and sha not in self.asked
        for vuln in vulns if isinstance(vulns, list) else [vulns] if isinstance(vulns, dict) else ():
            qid = qid_key(vuln.get("qid")) if isinstance(vuln, dict) else None
            if qid is None or qid in self._known or all(carried_knowledge(vuln, field) is not None
                                                        for field in self.fields):
                continue
            if not self.catalog.needs(qid, self.now):
                self._known.add(qid)
                continue
            shas = self.qids.setdefault(qid, collections.deque(maxlen=CANDIDATES_PER_QID))
            if askable and sha not in shas:
                shas.append(sha)  # the last seen, the most recently updated: the least likely purged

    def merge(self, other: "KnowledgeNeeds") -> None:
        for qid, shas in other.qids.items():
            known = self.qids.setdefault(qid, collections.deque(maxlen=CANDIDATES_PER_QID))
            known.extend(sha for sha in shas if sha not in known)


def details_vulns(text: str, wanted=None) -> list:
    """The vulnerabilities of a details answer (of the QIDs wanted), decoded one at a time, wherever its shape
    puts them (details.vulns, driftVulns, vulns, a list, under data); no such shape: TransientError."""
    found, walker = [], walk_details(text, skip_space(text, 0), 0)
    try:
        while True:
            vuln = next(walker)
            if wanted is None or qid_key(vuln.get("qid")) in wanted:
                found.append(vuln)
    except StopIteration as done:
        end, shaped = done.value
    if skip_space(text, end) != len(text):
        raise TransientError("the details answer has data after its JSON")
    if not shaped:
        raise TransientError("the answer holds no vulnerability details (no details or vulns)")
    return found


def walk_details(text: str, position: int, depth: int):
    """Yield the vulnerabilities of the details value at position; return (its end, whether it was shaped
    as details: a list, or an object naming details or vulns)."""
    if text[position:position + 1] == "[":
        position = skip_space(text, position + 1)
        while text[position:position + 1] != "]":
            vuln, position = decode_at(text, position)
            if isinstance(vuln, dict) and "qid" in vuln:
                yield vuln
            position = skip_space(text, position)
            position = skip_space(text, position + 1) if text[position:position + 1] == "," else position
        return expect(text, position, "]"), True
    if text[position:position + 1] != "{" or depth >= 3:
        return decode_at(text, position)[1], False
    position, shaped = skip_space(text, position + 1), False
    while text[position:position + 1] not in ("}", ""):
        key, position = decode_at(text, position)
        position = expect(text, skip_space(text, position), ":")
        if key in ("data", "details", "vulns", "driftVulns"):
            position, inner = yield from walk_details(text, position, depth + 1)
            shaped = shaped or inner or key != "data"  # details or vulns named, even if null
        else:
            position = decode_at(text, position)[1]
        position = skip_space(text, position)
        position = skip_space(text, position + 1) if text[position:position + 1] == "," else position
    return expect(text, position, "}"), shaped


def choose_containers(missing: dict, count: int) -> list:
    """Pick up to count containers to ask, each holding a QID the ones picked before it do not: the
    one holding the most QIDs still to learn first (missing: qid -> shas of containers holding it)."""
    holders = {}
    for qid, shas in missing.items():
        for sha in shas:
            holders.setdefault(sha, set()).add(qid)
    chosen, covered = [], set()
    while len(chosen) < count:
        sha, qids = max(holders.items(), key=lambda item: (len(item[1] - covered), item[0]), default=(None, ()))
        if sha is None or not qids - covered:
            break
        chosen.append(sha)
        covered |= holders.pop(sha)
    return chosen


class Learning:
    """One week's learning: the QIDs still missing (qid -> shas to ask), and what each container asked
    answered: its vulnerabilities, gone (404), refused (403), or the trouble that failed it."""

    def __init__(self, missing: dict):
        self.missing, self.wanted = missing, set(missing)
        self.without, self.absent = set(), set()  # asked and not mentioned; of those, none left to ask
        self.asked, self.gone, self.refused, self.failed = 0, 0, 0, []

    def take(self, sha: str, answer, catalog: QidCatalog, now) -> None:
        """Learn what one container's answer says of the QIDs still missing."""
        self.asked += 1
        if answer is None:
            self.gone += 1
        elif isinstance(answer, KnowledgeRefused):
            self.refused += 1
        elif isinstance(answer, ReportError):
            self.failed.append(str(answer))
        said = {}
        for vuln in answer if isinstance(answer, list) else ():
            qid = qid_key(vuln.get("qid"))
            known = {field: carried_knowledge(vuln, field) for field in KNOWLEDGE_COLUMNS.values()}
            if qid in said and said[qid] != known:
                log.warning("The details of container %s say two things of QID %s; the first is kept", sha[:12], qid)
            elif qid in self.missing and qid not in said and catalog.learn(qid, vuln, now):
                said[qid] = known
        for qid, shas in self.missing.items():
            if sha in shas:
                shas.remove(sha)
                if isinstance(answer, list) and qid not in said:
                    self.without.add(qid)

    def settle(self, catalog: QidCatalog, stale_after) -> None:
        """Drop the QIDs learned, and those no container left can tell more of (a stale one keeps what
        was known; one answered without is absent: blank, with a warning)."""
        for qid in list(self.missing):
            if not catalog.needs(qid, stale_after) or not self.missing[qid] and not catalog.needs(qid, None):
                del self.missing[qid]
            elif not self.missing[qid] and qid in self.without:
                self.absent.add(qid)
                del self.missing[qid]

    def failure(self) -> ReportError:
        """Why the QIDs still missing cannot be learned: details refused for every container tried
        (KnowledgeRefused: the run stops), or holders gone, failing or refused (WeekFailed)."""
        what = f"the knowledge of {plural(len(self.missing), 'QID')} ({qid_list(self.missing)}) cannot be had"
        if self.refused and self.refused == self.asked:
            return KnowledgeRefused(REFUSED_DETAILS.format(what=what))
        counts = [f"{count} {words}" for count, words in ((self.gone, "gone"), (self.refused, "refused (403)"),
                                                          (len(self.failed), "failed")) if count]
        last = f"; the last failure: {self.failed[-1]}" if self.failed else ""
        return WeekFailed(f"{what}: each container holding it was gone from the gateway (404), failed or refused, "
                          f"or was asked already ({', '.join(counts) or 'none left to ask'}){last}")


class Learner:
    """Learns what the catalog lacks from containers' details before a week is published: the container holding
    the most QIDs still to learn first, never one twice in a run, --workers at once; one gone, failing or refused
    gives way to another holder (looked for again in the week's containers)."""

    def __init__(self, *, client, catalog: QidCatalog, fields, clock, stop: Stop, at_once: int, asked: set):
        self.client, self.catalog, self.fields = client, catalog, tuple(fields)
        self.clock, self.stop, self.at_once = clock, stop, at_once
        self._lock = threading.Lock()
        self._asked = asked  # containers asked in this run

    def needs(self, now) -> KnowledgeNeeds:
        """An empty list of QIDs to learn; now None: only unknown ones (stale ones are used as they are)."""
        return KnowledgeNeeds(self.catalog, self.fields, now)

    def learn_json(self, path: str, label: str) -> None:
        """Learn what the QIDs of a stored weekly JSON lack, from the details of its containers; without a
        client (a rebuild with no gateway), a QID the catalog lacks fails the week: its cells would be blank."""
        needs = self.needs(None)
        for container in read_report(path):
            if isinstance(container, dict):
                needs.note(container)
        if self.client is None and needs.qids:
            raise WeekFailed(f"{plural(len(needs.qids), 'QID')} of this week ({qid_list(needs.qids)}) not in "
                             f"{CATALOG_NAME}: give the GATEWAY to learn them from its vulnerability details "
                             "(no list call)")
        self.learn(needs, label, functools.partial(read_report, path))

    def learn(self, needs: KnowledgeNeeds, label: str, containers) -> None:
        """Learn every QID in needs (containers(): the week's containers, to look for more holders in); raise
        WeekFailed when a QID the catalog does not know cannot be learned (a stale one keeps what was known),
        KnowledgeRefused when details were refused for every container asked."""
        with self._lock:
            learning = Learning({qid: [sha for sha in shas if sha not in self._asked] for qid, shas in
                                 needs.qids.items() if shas and self.catalog.needs(qid, needs.now)})
            learning.settle(self.catalog, needs.now)
            looks = 0  # at the week's containers for more holders, when those seen last are spent
            while learning.missing:
                batch = choose_containers(learning.missing, self.at_once)
                if not batch and looks < MORE_HOLDERS_LOOKS:
                    looks, batch = looks + 1, self._more(learning, containers)
                if not batch:
                    break
                self._asked.update(batch)
                for sha, answer in zip(batch, self._fetch_all(batch, learning.wanted)):
                    learning.take(sha, answer, self.catalog, self.clock.now())
                learning.settle(self.catalog, needs.now)
        if learning.asked:
            log.info("%s: learned %s from the vulnerability details of %s", label,
                     plural(sum(1 for qid in learning.wanted if not self.catalog.needs(qid, needs.now)), "QID"),
                     plural(learning.asked, "container"))
        log_unlearned(label, needs, learning.absent)
        if learning.missing:
            raise learning.failure()

    def _more(self, learning: Learning, containers) -> list:
        """Look in the week's containers for holders of the missing QIDs not asked yet; return those to ask."""
        more = KnowledgeNeeds(self.catalog, self.fields, None, self._asked)
        for container in containers():
            if isinstance(container, dict):
                more.note(container)
        for qid, shas in more.qids.items():
            if qid in learning.missing:
                learning.missing[qid] = list(shas)
        return choose_containers(learning.missing, self.at_once)

    def _fetch_all(self, shas, wanted: set) -> list:
        """The details of these containers, side by side: each its vulnerabilities (of the QIDs wanted), None
        when gone, or the error that failed or refused it; a stop raises, once they all ended."""
        with concurrent.futures.ThreadPoolExecutor(len(shas), thread_name_prefix="details") as pool:
            futures = [pool.submit(self._fetch, sha, wanted) for sha in shas]
            try:
                return [future.result() for future in futures]
            except BaseException as exc:  # a stop: the others end now too
                self.stop(exc)
                raise

    def _fetch(self, sha: str, wanted: set):
        try:
            return self.client.fetch_details(sha, functools.partial(details_vulns, wanted=wanted))
        except (WeekFailed, KnowledgeRefused) as exc:
            return type(exc)(f"container {sha[:12]}: {exc}")


def log_unlearned(label: str, needs: KnowledgeNeeds, absent: set) -> None:
    """Warn about the QIDs whose knowledge columns stay blank though no call failed."""
    unaskable = [qid for qid, shas in needs.qids.items() if not shas and needs.catalog.needs(qid, None)]
    if unaskable:
        log.warning("%s: no container holding %s (%s) has a sha to ask its vulnerability details by; "
                    "their knowledge columns stay blank", label, plural(len(unaskable), "QID"), qid_list(unaskable))
    if absent:
        log.warning("%s: the vulnerability details of the containers holding %s (%s) do not mention them; "
                    "their knowledge columns stay blank", label, plural(len(absent), "QID"), qid_list(absent))


@contextlib.contextmanager
def learners(settings: Settings, client, layout: Layout, clock, stop: Stop, snapshots: bool):
    """The run's Learners of QID knowledge, sharing the output folder's catalog and the containers asked: one
    for the knowledge columns (None when none is asked for), one for snapshots' changes (None without); and
    the CSV's flattener, reading that catalog. The catalog is saved once, when the block ends."""
    if not (settings.knowledge or snapshots):
        yield None, None, make_flattener(settings.csv_columns)
        return
    catalog = QidCatalog(os.path.join(layout.root, CATALOG_NAME))
    learner = functools.partial(Learner, client=client, catalog=catalog, clock=clock, stop=stop, asked=set(),
                                at_once=min(settings.workers, DETAILS_AT_ONCE))
    columns = learner(fields=settings.knowledge) if settings.knowledge else None
    try:
        yield columns, learner(fields=CHANGES_KNOWLEDGE) if snapshots else None, make_flattener(
            settings.csv_columns, knowledge_getters(catalog))
    finally:
        if catalog.changed:
            catalog.save(layout.temp)


# --- Workers -------------------------------------------------------------------------


@dataclasses.dataclass
class Chain:
    """One sequential run of pages over [start_ms, end_ms) of a week: the week's first chain, or one
    split off a chain that had more to fetch, going on from where it was (its cursor)."""

    week: "WeekRun"
    start_ms: int
    end_ms: int
    cursor: typing.Optional[str] = None  # where it starts: a cursor shared at a split, or the first page
    used: frozenset = frozenset()  # cursors its pages already used (the loop guard goes on after a split)
    first: bool = False  # the week's first chain: if it stays alone, its files are the week's
    number: int = 0

    def label(self) -> str:
        week = self.week.job.week
        if self.first and (self.start_ms, self.end_ms) == (week.start_ms, week.end_ms):
            return week.label
        return f"{week.label} (chain {self.number})"


class WeekRun:
    """A week in flight: the fragments its chains wrote, the chains still paging, and its outcome."""

    def __init__(self, job: WeekJob, order: int):
        self.job, self.order, self.lock, self.fragments, self.pages = job, order, threading.Lock(), [], 0
        self.chains = self.pending = 1  # chains started so far, chains not ended yet
        self.ending, self.reason = Ending.DONE, ""  # set by the first chain that does not end well

    def add_chains(self, count: int) -> int:
        """Count count more chains; return the number of the first."""
        with self.lock:
            first = self.chains
            self.chains += count
            self.pending += count
            return first

    def chain_ended(self, fragment, ending: Ending, reason: str) -> bool:
        """Record how one chain ended; return True when it was the week's last."""
        with self.lock:
            if ending is not Ending.DONE and self.ending is Ending.DONE:
                self.ending, self.reason = ending, reason
            if fragment is not None:
                self.fragments.append(fragment)
            self.pending -= 1
            return self.pending == 0


@dataclasses.dataclass
class WeekResult:
    """What became of one week."""

    week: Week
    ending: Ending = Ending.DONE
    reason: str = ""  # why it failed
    containers: int = 0
    rows: int = 0
    pages: int = 0


def chain_ending(week: Week, exc: BaseException) -> tuple:
    """How an exception ends a chain's week: (Ending, why in one line). An unexpected error's
    traceback goes to the log file only."""
    if isinstance(exc, RunStopping) or stops_the_run(exc):
        return Ending.UNFINISHED, "the run stopped"
    if isinstance(exc, WeekFailed):
        return Ending.FAILED, str(exc)
    if isinstance(exc, OSError):
        return Ending.FAILED, f"cannot write its files: {exc}"
    log.error("%s: unexpected error %s: %s", week.label, type(exc).__name__, shorten(str(exc)),
              exc_info=exc)
    return Ending.FAILED, f"unexpected error: {type(exc).__name__}"


def log_week_done(week: WeekRun, result: WeekResult) -> None:
    for field, level, noun, said in (
            ("duplicates", logging.INFO, "container", "skipped %s the gateway served twice"),
            ("dropped", logging.WARNING, "item", "dropped %s of data that are not containers (not JSON objects)"),
            ("outside", logging.WARNING, "container", "left out %s created outside the range asked for (the "
                                                      "gateway's answer was wider); each belongs to its own week")):
        count = sum(getattr(fragment.totals, field) for fragment in week.fragments)
        if count:
            log.log(level, "%s: " + said, week.job.week.label, plural(count, noun))
    log.info("%s: %s, %s, %s%s -> %s%s", week.job.week.label, plural(result.containers, "container"),
             plural(result.rows, "CSV row"), plural(result.pages, "page"),
             f" in {len(week.fragments)} chains" if len(week.fragments) > 1 else "",
             os.path.basename(week.job.files.json),
             " (open week, fetched again next run)" if week.job.partial else "")


def publish_week(job: WeekJob, fragments, temp_folder: str, flattener: RowFlattener, workbook_columns):
    """Merge a week's fragments into its JSON and publish it with the files derived from it; return
    (containers, CSV rows). Whatever happens, nothing the week staged is left behind."""
    with contextlib.ExitStack() as owned:
        for fragment in fragments:
            owned.enter_context(fragment)
        if len(fragments) == 1 and fragments[0].whole_week and fragments[0].in_order:
            final_json, containers = fragments[0].json, fragments[0].containers  # already the week, in order
            final_json.final_path = job.files.json  # its open name, if it turned out unsettled
        else:
            final_json, containers = merge_fragments(job, fragments, temp_folder)
            owned.enter_context(final_json)
        close_json_array(final_json.stream, containers)
        final_json.stream.flush()
        result = write_derived(job.files, final_json.temp_path, ("csv", "xlsx"), flattener=flattener,
                               workbook_columns=workbook_columns, temp_folder=temp_folder, staged_json=final_json)
    for stale in job.stale:
        remove_quietly(stale)
    return result


class Exporter:
    """Runs the planned jobs on a pool of worker threads: a queue of chains of pages, earliest week first, split
    where the throughput says; the worker that ends a week's last chain publishes it."""

    def __init__(self, *, settings: Settings, client: GatewayClient, layout: Layout, flattener, progress, stop: Stop,
                 run_started: dt.datetime, learner=None):
        self.settings, self.run_started, self.client, self.throughput = settings, run_started, client, client.throughput
        self.learner = learner  # a Learner when QID knowledge columns are asked for
        self.layout, self.flattener, self.progress, self.stop = layout, flattener, progress, stop
        self.workbook_columns = settings.csv_columns if settings.xlsx else None
        self.chains, self.results, self._lock = queue.PriorityQueue(), {}, threading.Lock()  # order -> WeekResult
        self._sequence, self._alive, self._threads = 0, 0, 0  # chains queued or paging, workers started
        self._working = self._publishing = 0  # workers not ended yet, weeks being published right now
        self._changed = stop.wakes(threading.Condition())

    def run(self, jobs) -> None:
        """Export the jobs; return when all are done, raise what stops the run (tokens, signals, a bug)."""
        for order, job in enumerate(jobs):
            self._submit(Chain(WeekRun(job, order), job.week.start_ms, job.week.end_ms, first=True))
        self._grow_pool()
        try:
            with self._changed:
                self.stop.wait_until(self._changed, lambda: len(self.results) == len(jobs))
            if self.stop.error is not None:
                raise self.stop.error
        finally:
            self.shut_down(stopping=len(self.results) < len(jobs))

    def _grow_pool(self) -> None:
        """Start a worker when there is waiting work and fewer workers than the pages the run may keep in
        flight (plus one spare): workers start as they are needed, up to --workers."""
        with self._lock:
            wanted = min(self.settings.workers, self.throughput.wanted() + 1)
            count = 0 if self.stop.is_set() else max(min(wanted - self._threads, self.chains.qsize()), 0)
            self._threads += count
        with self._changed:
            self._working += count
        for number in range(count):
            threading.Thread(target=self._work, daemon=True, name=f"worker-{self._threads - number}").start()

    def shut_down(self, stopping: bool) -> None:
        """End the workers; when stopping, stop the run too (requests cut off, sleepers woken). Wait for the
        weeks being published (at most STOP_GRACE_SECONDS), and for the other workers a moment (SETTLE_SECONDS)."""
        with self._lock:  # no worker starts after this
            if stopping:
                self.stop()
            workers, self._threads = self._threads, self.settings.workers
        for _ in range(workers):
            self._submit(None)
        started = time.monotonic()
        with self._changed:
            self._changed.wait_for(lambda: not self._publishing, STOP_GRACE_SECONDS)
            self._changed.wait_for(lambda: not self._working, max(started + SETTLE_SECONDS - time.monotonic(), 0))

    def _submit(self, chain) -> None:
        with self._lock:
            self._sequence += 1
            self._alive += chain is not None
            key = (-1, 0) if chain is None else (chain.week.order, chain.start_ms)
            self.chains.put((key, self._sequence, chain))

    def _work(self) -> None:
        try:
            self._work_on_chains()
        except BaseException as exc:  # a bug outside a chain's own handling: the run stops, and says why
            self.stop(exc)
        finally:
            with self._changed:
                self._working -= 1
                self._changed.notify_all()

    def _work_on_chains(self) -> None:
        while True:
            _, _, chain = self.chains.get()
            if chain is None:
                return
            try:
                if not self.stop.is_set() and not self._run_chain(chain):
                    return
            finally:
                with self._lock:
                    self._alive -= 1

    def _run_chain(self, chain: Chain) -> bool:
        """Run one chain; return False when what happened stops the whole run (this worker too)."""
        week = chain.week
        fragment = None
        if chain.first and not self._started(week.job.week):
            self._chain_ended(chain, None, Ending.NOT_STARTED, "")
            return True
        try:
            fragment = Fragment(week.job, self.layout.temp,
                                tag="" if chain.first else f".chain{chain.number}", whole_week=chain.first,
                                start_ms=chain.start_ms, end_ms=chain.end_ms,
                                needs=self.learner.needs(self.run_started) if self.learner else None)
            kept = self._page_through(chain, fragment)
        except BaseException as exc:
            fatal = stops_the_run(exc)
            if fatal:  # no token left, a gateway that never answers, an interrupt: the run stops
                self.stop(exc)
            self._chain_ended(chain, fragment, *chain_ending(week.job.week, exc))
            return not fatal
        if not kept:
            fragment.discard()
            fragment = None
        self._chain_ended(chain, fragment, Ending.DONE, "")
        return True

    def _page_through(self, chain: Chain, fragment: Fragment) -> bool:
        """Fetch a chain's pages into its fragment, splitting it when the throughput calls for more chains;
        return False when its pages were handed to new chains instead (an opaque cursor)."""
        week, cursor, used, stale, shown = chain.week, chain.cursor, set(chain.used), 0, 0
        for number in range(1, MAX_PAGES_PER_CHAIN + 1):
            if week.ending is not Ending.DONE:
                raise WeekFailed(week.reason)
            query = range_query(chain.start_ms, chain.end_ms, week.job.filter)
            stats, next_page = self.client.fetch_page(query, cursor, chain.label(), fragment.add_page)
            self._grow_pool()
            with week.lock:
                week.pages += 1
            self.progress.page(stats.written)
            if not stats.items or next_page is None:
                return True
            stale = 0 if stats.new_uuids else stale + 1
            if stale >= PAGES_WITHOUT_PROGRESS:
                raise WeekFailed(f"the gateway served {stale} pages in a row without a container not already "
                                 "seen, so the week is not known to be complete")
            if next_page in used:
                log.warning("%s: the gateway repeated a cursor; treating it as the last page", chain.label())
                return True
            used.add(next_page)
            shown += 1  # full pages since it began, or was last split
            split = self._split(chain, fragment, next_page, frozenset(used), stats.created, shown, number)
            if split is None:
                return False
            shown, cursor = 0 if split else shown, next_page
        raise WeekFailed(f"more than {MAX_PAGES_PER_CHAIN} pages; the week is not known to be complete")

    def _split(self, chain: Chain, fragment: Fragment, cursor: str, used: frozenset, created, shown: int,
               pages: int):
        """Split a chain that named a next page where the throughput says: this chain keeps the first range,
        new chains go on from the same cursor over the others (at most --slices chains a week). An opaque
        cursor cannot go on over a narrower range: then only a week's first page is split, by fetching
        the week again as new chains. Return True when it was split, False when not, None when its
        pages were handed on."""
        reusable = reusable_cursor(cursor)
        if not (reusable or chain.first and pages == 1):
            return False
        with self._lock, chain.week.lock:
            others, most = self._alive - 1, self.settings.slices - chain.week.chains + 1
        bounds = self.throughput.split(chain.start_ms, chain.end_ms, created, shown, others, most)
        if not bounds:
            return False
        number = chain.week.add_chains(len(bounds) - 1 if reusable else len(bounds))
        if reusable:
            chain.end_ms = fragment.end_ms = bounds[0][1]
        for offset, (low, high) in enumerate(bounds[1:] if reusable else bounds):
            self._submit(Chain(chain.week, low, high, cursor if reusable else None, used if reusable else frozenset(),
                               number=number + offset))
        log.info("%s: more to fetch; split into %d chains side by side (%s in flight wanted)", chain.label(),
                 len(bounds), self.throughput.wanted())
        self._grow_pool()
        return True if reusable else None

    def _chain_ended(self, chain: Chain, fragment, ending: Ending, reason: str) -> None:
        if chain.week.chain_ended(fragment, ending, reason):
            self._finish_week(chain.week)

    def _started(self, week: Week) -> bool:
        """Whether a week has begun by the gateway's clock (when an answer told it); say so if not."""
        gateway_now = self.client.gateway_clock.now()
        if gateway_now is None or week.start < gateway_now:
            return True
        log.warning("%s: has not begun by the gateway's clock (%s); not fetched", week.label,
                    shown_time(gateway_now))
        return False

    def _settled(self, job: WeekJob) -> WeekJob:
        """The job as it may be published: a week that has not ended 24 hours before the gateway's
        clock too is written as an open week (.partial), to be fetched again, never as final."""
        if job.partial or job.snapshot or not is_open(job.week, self.run_started, self.client.gateway_clock.now()):
            return job
        log.warning("%s: has not ended 24 hours before the gateway's clock; written as an open week, "
                    "fetched again next run", job.week.label)
        return dataclasses.replace(job, partial=True, files=job.open_files, stale=())

    def _finish_week(self, week: WeekRun) -> None:
        """Publish a week whose chains all ended well, or discard everything it staged."""
        fragments = list(week.fragments)
        result = WeekResult(week.job.week, ending=week.ending, reason=week.reason, pages=week.pages)
        if result.ending is Ending.DONE and not self._started(week.job.week):
            result.ending = Ending.NOT_STARTED
        if result.ending is Ending.DONE:
            with self._changed:
                self._publishing += 1
            try:
                self._publish(week, fragments, result)
            except BaseException as exc:
                if stops_the_run(exc):  # the details refused (403), an interrupt: the run stops
                    self.stop(exc)
                result.ending, result.reason = chain_ending(week.job.week, exc)
            finally:
                with self._changed:
                    self._publishing -= 1
                    self._changed.notify_all()
        if result.ending is not Ending.DONE:
            for fragment in fragments:
                fragment.discard()
        if result.ending is Ending.FAILED:
            log.error("%s FAILED: %s. Nothing written for it; the next run tries again.",
                      week.job.week.label, result.reason)
        with self._changed:
            self.results[week.order] = result
            self._changed.notify_all()
        self.progress.week_done()

    def _publish(self, week: WeekRun, fragments, result: WeekResult) -> None:
        """Learn what the week's QIDs need (QID knowledge columns), then publish its files."""
        week.job = self._settled(week.job)
        if self.learner is not None:
            needs = self.learner.needs(self.run_started)
            for fragment in fragments:
                needs.merge(fragment.needs)
            self.learner.learn(needs, week.job.week.label, lambda: itertools.chain.from_iterable(
                fragment.read_back() for fragment in fragments))
        result.containers, result.rows = publish_week(week.job, fragments, self.layout.temp, self.flattener,
                                                      self.workbook_columns)
        log_week_done(week, result)


# --- Snapshot ------------------------------------------------------------------------


def snapshot_files(layout: Layout, day: dt.date, fingerprint: str, end: dt.datetime = EPOCH) -> WeekFiles:
    """A day's snapshot as a week's files: snapshots/<day>[.<fingerprint>].json, .csv and .xlsx (end: its range's)."""
    week = Week(day, day, EPOCH, end, name=f"Snapshot {day.isoformat()}")
    return WeekFiles(week, *(os.path.join(layout.snapshots, ".".join([day.isoformat()] + [fingerprint] * bool(
        fingerprint) + [extension])) for extension in ("json", "csv", "xlsx")))


def plan_snapshot(settings: Settings, now: dt.datetime, layout: Layout) -> WeekJob:
    """What runs now, as a job: every container created up to a day past now that is RUNNING (and the
    filter), into snapshots/<UTC date>.json, fetched with a week's paging, chains and files."""
    files = snapshot_files(layout, now.astimezone(dt.timezone.utc).date(), filter_fingerprint(settings.optional_filter),
                           now + dt.timedelta(days=1))
    running = f"{RUNNING} and ({settings.optional_filter})" if settings.optional_filter else RUNNING
    return WeekJob(files.week, range_query(0, files.week.end_ms, running), False, files, (), files, running, True)


def running_images(path: str):
    """What a snapshot's JSON holds: ({image: Counter(qid -> containers running it with that QID)}, its
    containers, its findings (container x QID)); one that is not a list of objects raises ValueError. An image
    is (imageId, imageSha) as the container has them, blank when missing."""
    images, containers, findings = {}, 0, 0
    for container in read_report(path):
        if not isinstance(container, dict):
            raise ValueError("it is not a list of containers")
        vulns = container.get("vulnerabilities")
        qids = {qid_key(vuln.get("qid")) for vuln in (vulns if isinstance(vulns, list) else ())
                if isinstance(vuln, dict)} - {None}
        image = tuple(value if type(value) is str and value != "null" else "" for value in
                      (container.get("imageId"), container.get("imageSha")))
        images.setdefault(image, collections.Counter()).update(qids)
        containers, findings = containers + 1, findings + len(qids)
    return images, containers, findings


def previous_snapshot(files: WeekFiles):
    """The newest earlier snapshot of the same filter that can be read, as (its day, path, running images);
    a damaged one is kept aside (<name>.damaged) and the one before it tried; None: the first."""
    folder, day = os.path.split(files.json)
    this = parse_snapshot_name(day)
    earlier = sorted((parsed[0], name) for name in os.listdir(folder)
                     if (parsed := parse_snapshot_name(name)) and parsed[1] == this[1] and parsed[0] < this[0])
    for earlier_day, name in reversed(earlier):
        path = os.path.join(folder, name)
        try:
            return earlier_day, path, running_images(path)[0]
        except (ValueError, OSError, ReportError) as exc:
            log.warning("Snapshot %s: its JSON %s (%s); kept aside as %s, the one before is compared", earlier_day,
                        name, shorten(str(exc), 100), os.path.basename(set_aside(path)))
    return None


def snapshot_changes(now: dict, before: dict, catalog) -> list:
    """The (image, QID) pairs whose presence among running containers changed, as the changes file's rows:
    new ones then resolved ones, each by severity (highest first), QID and image."""
    rows = []
    for image in now.keys() | before.keys():
        held, had = now.get(image, {}), before.get(image, {})
        rows += [("new", image, qid, held[qid], 0) for qid in held.keys() - had.keys()]
        rows += [("resolved", image, qid, 0, had[qid]) for qid in had.keys() - held.keys()]
    known = (lambda qid, field: catalog.get(qid, field)) if catalog else (lambda qid, field: None)
    rows.sort(key=lambda row: (row[0], -(known(row[2], "severity") or 0), int(row[2]), row[1]))
    return [[change, *image, qid, known(qid, "severity"), known(qid, "title"), known(qid, "cveids"), now_count,
             before_count] for change, image, qid, now_count, before_count in rows]


@dataclasses.dataclass
class SnapshotResult:
    """What a snapshot found, for the summary's line and the metrics; failed says why it was not taken."""

    day: dt.date
    running: int = 0
    findings: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # severity -> count
    since: object = None  # the day it was compared with; None: the first snapshot of its filter
    changes: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # (change, severity)
    failed: str = ""

    def line(self) -> str:
        if self.failed:
            return f"Snapshot {self.day}: FAILED: {self.failed}"
        said = f"Snapshot {self.day}: {self.running:,} running containers, {sum(self.findings.values()):,} findings"
        if self.since is None:
            return said + "; the first, nothing to compare with"
        new = sum(count for (change, _), count in self.changes.items() if change == "new")
        return (f"{said}; since {self.since}: {new} new ({self.changes['new', '5']} of severity 5), "
                f"{sum(self.changes.values()) - new} resolved")


def write_changes(files: WeekFiles, learner, temp_folder: str, write: bool = True) -> SnapshotResult:
    """The one place a snapshot's changes file is written: from its JSON and the newest earlier one's alone,
    their QIDs' knowledge learned first; none for the first snapshot. Return what it found (write False: no file)."""
    now, running, _ = running_images(files.json)
    result, previous = SnapshotResult(files.week.first_day, running), previous_snapshot(files)
    for path in ([files.json] + ([previous[1]] if previous else [])) if write else ():
        learner.learn_json(path, files.week.label)
    def severity(qid: str) -> str:
        return str(learner.catalog.get(qid, "severity") or "unknown")
    for held in now.values():
        for qid, count in held.items():
            result.findings[severity(qid)] += count
    if previous is None:
        if write:
            log.info("%s: the first of its filter; no changes file (nothing to compare with)", files.week.label)
        return result
    result.since, rows = previous[0], snapshot_changes(now, previous[2], learner.catalog)
    result.changes.update((row[0], severity(row[3])) for row in rows)
    if write:
        with StagedFile(temp_folder, changes_path(files)) as staged:
            staged.stream.write(csv_head(CHANGES_COLUMNS) + CsvText().encode(
                [[format_cell(value) for value in row] for row in rows]))
            staged.publish()
    return result


def changes_path(files: WeekFiles) -> str:
    """Where a snapshot's changes file is: beside its JSON, named <day>[.<fingerprint>].changes.csv."""
    return files.json[:-len("json")] + "changes.csv"


def take_snapshot(job: WeekJob, result, flattener, workbook_columns, learner, temp_folder: str) -> SnapshotResult:
    """After the weeks: what the snapshot found, or why it failed (nothing written); a snapshot taken earlier
    today costs no list call: only its missing files are written, from its JSON."""
    if result is not None and result.ending is not Ending.DONE:
        return SnapshotResult(job.week.first_day, failed=result.reason or "the run stopped")
    try:
        heal_files(job.files, temp_folder, flattener, workbook_columns)
        return write_changes(job.files, learner, temp_folder,
                             write=result is not None or not os.path.exists(changes_path(job.files)))
    except STOPS_THE_RUN:
        raise
    except Exception as exc:  # the snapshot stays; its changes are written again next run
        log.error("%s: its changes cannot be written: %s", job.week.label, describe_error(exc))
        return SnapshotResult(job.week.first_day, failed=describe_error(exc))


# --- Modes ---------------------------------------------------------------------------


@dataclasses.dataclass
class Summary:
    """What became of a run's planned weeks, each counted once by its last word (a done week whose
    missing files cannot be rebuilt is failed, not skipped), for the closing line, the metrics and
    the exit code."""

    output_dir: str = "."
    verb: str = "fetched"
    ended: dict = dataclasses.field(default_factory=dict)  # what -> (result, containers, CSV rows)
    damaged: int = 0  # weeks whose final JSON was damaged: set aside, and fetched again
    healed: int = 0  # done weeks whose missing CSV or workbook was rebuilt from their JSON
    seconds: float = 0.0
    stopped_by: object = None  # the error of STOPS_THE_RUN, or the Interrupted, that ended the run early
    snapshot: object = None  # a SnapshotResult, when one was asked for

    def count(self, what, result: str, containers: int = 0, rows: int = 0) -> None:
        """Count how one planned week ended: fetched, skipped, failed or unfinished (a later word wins)."""
        self.ended[what] = (result, containers, rows)

    def of(self, result: str) -> int:
        return sum(1 for ended, _, _ in self.ended.values() if ended == result)

    planned = property(lambda self: len(self.ended))
    fetched = property(lambda self: self.of("fetched"))
    skipped = property(lambda self: self.of("skipped"))
    failed = property(lambda self: self.of("failed"))
    unfinished = property(lambda self: self.of("unfinished"))
    containers = property(lambda self: sum(containers for _, containers, _ in self.ended.values()))
    rows = property(lambda self: sum(rows for _, _, rows in self.ended.values()))

    def line(self) -> str:
        extra = "".join(f", {count} {words}" for count, words in (
            (self.unfinished, "not finished"), (self.damaged, "with a damaged JSON fetched again"),
            (self.healed, "with missing files rebuilt from their JSON")) if count)
        return (f"Summary: {plural(self.planned, 'week')} planned, {self.fetched} {self.verb}, "
                f"{self.skipped} skipped, {self.failed} failed{extra}; {plural(self.containers, 'container')}, "
                f"{plural(self.rows, 'CSV row')}; {self.seconds:.1f}s; files in {os.path.abspath(self.output_dir)}")


def export(settings: Settings, session, clock, progress, secrets, layout: Layout, summary: Summary) -> None:
    """Export mode: every planned week that is not done yet, then the day's snapshot (when asked for),
    counted in summary; the story of one run."""
    started, stop = clock.now(), Stop()
    stale = clean_temp(layout.staging)  # 1. nothing a killed run left is mistaken for a result
    if stale:
        log.info("Removed %s left by an earlier run", plural(stale, "temp file"))
    jobs, done, snapshot = plan_export(settings, started, layout, summary)  # 2. plan
    client = GatewayClient(settings=settings, session=session, clock=clock, progress=progress, secrets=secrets,
                           stop=stop)
    workbook_columns = settings.csv_columns if settings.xlsx else None
    with learners(settings, client, layout, clock, stop, settings.snapshot) as (learner, changes, flattener):  # 3.
        exporter = Exporter(settings=settings, client=client, layout=layout, flattener=flattener, progress=progress,
                            stop=stop, run_started=started, learner=learner)
        heal_done_weeks(done, layout, flattener, workbook_columns, summary, learner)  # 4. missing files of done weeks
        progress.weeks_total = len(jobs)
        try:  # 5. fetch and publish, week by week, then the snapshot
            exporter.run(jobs)
        finally:
            clean_temp(layout.staging)  # 6. whatever unfinished weeks had staged
            tally(summary, jobs, exporter.results)
        if snapshot is not None:  # 7. what runs now, and what changed since the last snapshot
            summary.snapshot = take_snapshot(snapshot, exporter.results.get(jobs.index(snapshot)) if snapshot in jobs
                                             else None, flattener, workbook_columns, changes, layout.temp)


def plan_export(settings: Settings, started: dt.datetime, layout: Layout, summary: Summary) -> tuple:
    """The weeks to fetch (damaged done ones again), the done weeks, and the snapshot's job (last, unless
    it was taken today already: then not among the jobs)."""
    weeks = plan_weeks(settings.start_date, settings.end_date, started, settings.local_time) if settings.weeks else []
    jobs, done = plan_jobs(weeks, settings, started, layout)
    done, damaged = set_aside_damaged(done)  # a damaged done marker is not trusted
    jobs = sorted(jobs + [plan_job(files.week, settings, started, layout) for files in damaged],
                  key=lambda job: job.week.start)
    log_plan(settings, weeks, jobs, done)
    summary.damaged = len(damaged)
    snapshot = plan_snapshot(settings, started, layout) if settings.snapshot else None
    if snapshot is not None and (not os.path.exists(snapshot.files.json) or set_aside_damaged([snapshot.files])[1]):
        jobs.append(snapshot)
    return jobs, done, snapshot


def heal_done_weeks(done, layout: Layout, flattener, workbook_columns, summary: Summary, learner) -> None:
    """Count the done weeks skipped, and rebuild their missing CSVs (and with --xlsx workbooks) from their
    JSON, without a list call (their QIDs' knowledge, when asked for and not in the catalog, learned first)."""
    for files in done:
        summary.count(files.week.label, "skipped")
        learn = functools.partial(learner.learn_json, label=files.week.label) if learner else None
        try:
            rebuilt = heal_files(files, layout.temp, flattener, workbook_columns, learn)
        except STOPS_THE_RUN:
            raise
        except Exception as exc:  # the week stays done; its files are tried again next run
            log.error("%s: its missing files cannot be rebuilt from its JSON: %s", files.week.label,
                      describe_error(exc))
            summary.count(files.week.label, "failed")
            continue
        if rebuilt:
            log.info("%s: %s missing; rebuilt from its JSON, no call", files.week.label, " and ".join(rebuilt))
            summary.healed += 1


def log_plan(settings: Settings, weeks, jobs, done) -> None:
    if not weeks:
        return
    log.info("Planned %s (%s to %s, %s): %d to fetch, %d already done", plural(len(weeks), "week"),
             weeks[0].first_day, weeks[-1].end_day, "local time" if settings.local_time else "UTC",
             len(jobs), len(done))
    if settings.optional_filter:
        log.info("Filter fingerprint %s in the file names means: %s",
                 filter_fingerprint(settings.optional_filter), settings.optional_filter)
    for files in done:
        log.info("%s: already exported, skipped", files.week.label)


def tally(summary: Summary, jobs, results) -> None:
    """Count what became of the weeks the run set out to fetch."""
    words = {Ending.FAILED: "failed", Ending.NOT_STARTED: "skipped", Ending.DONE: "fetched"}
    for order, job in enumerate(jobs):
        result = results.get(order, WeekResult(job.week, Ending.UNFINISHED))  # none: the run stopped before it
        if not job.snapshot:
            summary.count(job.week.label, words.get(result.ending, "unfinished"), result.containers, result.rows)


def rebuild(settings: Settings, session, clock, progress, secrets, layout: Layout, summary: Summary) -> None:
    """Rebuild mode: every CSV (and workbook) written afresh from the stored weekly JSON, with the current
    columns; the knowledge columns from the catalog, learning what it lacks only when GATEWAY is given."""
    summary.verb = "rebuilt"
    clean_temp(layout.staging)
    stop = Stop()
    client = GatewayClient(settings=settings, session=session, clock=clock, progress=progress, secrets=secrets,
                           stop=stop) if settings.calls_gateway() else None
    snapshots = os.path.isdir(layout.snapshots)
    try:
        with learners(settings, client, layout, clock, stop, snapshots) as (learner, changes, flattener):
            for name in sorted(os.listdir(layout.reports)):
                parsed = parse_report_name(name, settings.local_time)
                if parsed and parsed[3] == "json":
                    files = WeekFiles.of(layout, *parsed[:3])
                    rebuild_one(settings, layout, files, flattener, summary, learner)
            for name in sorted(os.listdir(layout.snapshots)) if changes else ():
                parsed = parse_snapshot_name(name)
                if parsed:
                    files = snapshot_files(layout, *parsed)
                    rebuild_one(settings, layout, files, flattener, summary, learner, changes)
    finally:
        clean_temp(layout.staging)


def rebuild_one(settings: Settings, layout: Layout, files: WeekFiles, flattener, summary: Summary, learner,
                changes=None) -> None:
    """Rebuild one stored week's CSV (and workbook), or a snapshot's and its changes (with changes, their
    Learner); one that cannot be read fails alone."""
    name = os.path.basename(files.json)
    try:
        if learner is not None:  # first: a QID the catalog does not know fails the week, unless learned
            learner.learn_json(files.json, files.week.label)
        containers, rows = write_derived(files, files.json, ("csv", "xlsx"), flattener=flattener,
                                         temp_folder=layout.temp,
                                         workbook_columns=settings.csv_columns if settings.xlsx else None)
        if changes is not None:
            write_changes(files, changes, layout.temp)
    except STOPS_THE_RUN:
        raise
    except Exception as exc:  # one unreadable week fails alone, in one line
        log.error("Rebuilding the CSV of %s FAILED: %s", name, describe_error(exc))
        summary.count(name, "failed")
        return
    log.info("Rebuilt %s: %s, %s", os.path.basename(files.csv) if containers else f"nothing for {name}",
             plural(containers, "container"), plural(rows, "CSV row"))
    summary.count(name, "fetched", containers, rows)


def dry_run(settings: Settings, session, clock):
    """Dry-run mode: print the weeks a run would fetch, their file names and QQL; no call, no file. A reader
    that stops early (| head), or a terminal that cannot show a character (shown escaped), is no error."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        describe_plan(settings, clock, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the final flush cannot fail again
    return None


def describe_plan(settings: Settings, clock, out) -> None:
    """Print the weeks a run would fetch, their file names and their QQL."""
    started = clock.now()
    layout = Layout(settings.output_dir, settings.xlsx)
    weeks = plan_weeks(settings.start_date, settings.end_date, started, settings.local_time) if settings.weeks else []
    jobs, done = plan_jobs(weeks, settings, started, layout)
    damage = {files.week: report_damage(files.json) for files in done}
    jobs += [plan_job(week, settings, started, layout) for week, reason in damage.items() if reason]
    done = [files for files in done if not damage[files.week]]
    zone = "local time" if settings.local_time else "UTC"
    print(f"Dry run: {plural(len(weeks), 'week')} ({zone}), {len(jobs)} to fetch, {len(done)} already done. "
          "No API call is made.", file=out)
    if settings.optional_filter:
        print(f"Filter fingerprint {filter_fingerprint(settings.optional_filter)} (in the file names) means: "
              f"{settings.optional_filter}", file=out)
    if settings.slices > 1:
        print(f"A week with more than one page may be fetched as up to {settings.slices} chains of pages side by side, "
              "as many as the gateway's rate limit and the time its answers take call for.", file=out)
    if settings.snapshot:
        job = plan_snapshot(settings, started, layout)
        taken = "  already taken today" if os.path.exists(job.files.json) else f"  {job.query}"
        print(f"snapshot  {job.week.first_day}  {os.path.relpath(job.files.json)}{taken}", file=out)
    jobs_by_week = {job.week: job for job in jobs}
    for week in weeks:
        job = jobs_by_week.get(week)
        if job is None:
            print(f"skip   {week.days}  already exported", file=out)
        else:
            why = f"  (its JSON {damage[week]}: kept aside, fetched again)" if damage.get(week) else ""
            print(f"fetch  {week.days}  {os.path.relpath(job.files.json)}  {os.path.relpath(job.files.csv)}"
                  f"  {job.query}{why}", file=out)


MODES = {"export": export, "rebuild": rebuild, "dry run": dry_run}  # what main dispatches


def run_and_report(settings: Settings, session, clock, progress, secrets, layout: Layout):
    """Run the export or the rebuild in its folder and end with the summary line; return the outcome for
    exit_code: the Summary, or the error that stopped the run before it could count anything."""
    started = clock.monotonic()
    summary = Summary(output_dir=settings.output_dir)
    try:
        MODES[settings.mode](settings, session, clock, progress, secrets, layout, summary)
    except STOPS_THE_RUN + (KeyboardInterrupt,) as exc:  # stopped early: summarized
        summary.stopped_by = Interrupted.of(exc) if isinstance(exc, KeyboardInterrupt) else exc
    except (UsageError, OSError) as exc:
        log.error("%s", describe_error(exc))
        return exc
    except Exception as exc:  # a bug: one line here, the traceback in the log file
        log.error("Stopped by an unexpected error %s", describe_error(exc), exc_info=exc)
        return exc
    summary.seconds = clock.monotonic() - started
    log_stop(summary)
    log.info("%s", summary.line())
    if summary.snapshot is not None:
        log.info("%s", summary.snapshot.line())
    return summary


def log_stop(summary: Summary) -> None:
    """Say in one line why a run stopped early."""
    stopped_by = summary.stopped_by
    if isinstance(stopped_by, AuthError):
        log.error("Authentication failed, stopping: %s", stopped_by)
    elif isinstance(stopped_by, GatewayUnreachable):
        kept = "finished weeks are kept" if summary.fetched else "No report was written"
        log.error("Cannot reach the gateway, stopping: %s. %s", stopped_by, kept)
    elif isinstance(stopped_by, WrongGateway):
        log.error("Wrong gateway, stopping: %s", stopped_by)
    elif isinstance(stopped_by, Interrupted):
        log.error("Stopped by %s; finished weeks are kept, unfinished ones are fetched next run", stopped_by.name)


def exit_code(outcome) -> int:
    """The one place that picks the exit code, from how the run ended: its Summary, the error that
    stopped it, or None when there was nothing to run (--help, --version, --dry_run)."""
    if isinstance(outcome, Summary):
        if outcome.stopped_by is None:
            failed = outcome.failed or outcome.unfinished or outcome.snapshot is not None and outcome.snapshot.failed
            return EXIT_WEEKS_FAILED if failed else EXIT_OK
        outcome = outcome.stopped_by
    if outcome is None:
        return EXIT_OK
    if isinstance(outcome, KeyboardInterrupt):
        return EXIT_SIGNAL_BASE + Interrupted.of(outcome).signum
    if isinstance(outcome, (UsageError, WrongGateway, OSError)):  # an OSError that stops a run: the folder
        return EXIT_USAGE
    if isinstance(outcome, AuthError):
        return EXIT_AUTH
    return EXIT_WEEKS_FAILED  # weeks failed, the gateway cannot be reached, the folder is busy, a bug


# --- Monitoring ----------------------------------------------------------------------


def metrics_text(results: dict, last_success: float) -> str:
    """An export's metrics in Prometheus's text format (gauges, base units, no sample timestamps)."""
    lines = []
    for name, help_text, samples in (
            ("last_run_end_time_seconds", "When the last export ended (Unix time).", [("", results["end"])]),
            ("last_run_duration_seconds", "How long the last export took.", [("", results["duration"])]),
            ("last_run_exit_code", "The last export's exit code (0: every week done or skipped).",
             [("", results["exit_code"])]),
            ("last_success_time_seconds", "When an export last exited 0 (Unix time; 0: never).", [("", last_success)]),
            ("last_run_week_results", "Weeks of the last export, by result.",
             [(f'{{result="{result}"}}', results[result]) for result in METRIC_WEEK_RESULTS]),
            ("last_run_containers", "Containers the last export fetched.", [("", results["containers"])]),
            ("last_run_csv_rows", "CSV rows the last export wrote.", [("", results["rows"])])) + results["snapshot"]:
        lines += [f"# HELP {METRICS_PREFIX}{name} {help_text}", f"# TYPE {METRICS_PREFIX}{name} gauge"]
        lines += [f"{METRICS_PREFIX}{name}{labels} {value if isinstance(value, int) else f'{value:.3f}'}"
                  for labels, value in samples]
    return "\n".join(lines) + "\n"


def run_results(outcome, code: int, ended: dt.datetime, duration: float) -> dict:
    """What the metrics say of a run: its end, duration, exit code and counts (zeros without a summary)."""
    results = {"end": ended.timestamp(), "duration": duration, "exit_code": code, "containers": 0, "rows": 0}
    results.update({result: 0 for result in METRIC_WEEK_RESULTS}, snapshot=())
    if isinstance(outcome, Summary):
        results.update({result: outcome.of(result) for result in METRIC_WEEK_RESULTS},
                       containers=outcome.containers, rows=outcome.rows, snapshot=snapshot_metrics(outcome.snapshot))
    return results


def snapshot_metrics(snapshot) -> tuple:
    """The gauges of a snapshot taken (none otherwise): its running containers, its findings by severity, and
    the (image, QID) pairs new and resolved since the snapshot before, by severity, zeros included."""
    if snapshot is None or snapshot.failed:
        return ()
    severities = ("1", "2", "3", "4", "5", "unknown")
    return (("snapshot_running_containers", "Containers running at the last snapshot.", [("", snapshot.running)]),
            ("snapshot_findings", "Running containers x QIDs at the last snapshot, by severity.",
             [(f'{{severity="{level}"}}', snapshot.findings[level]) for level in severities]),
            ("snapshot_changes", "Image x QID pairs new or resolved since the snapshot before, by severity.",
             [(f'{{change="{change}",severity="{level}"}}', snapshot.changes[change, level])
              for change in ("new", "resolved") for level in severities]))


def previous_success(path: str) -> float:
    """The last success's time in an earlier metrics file (0 when there is none or it cannot be read)."""
    try:
        text = read_regular(path, MAX_METRICS_BYTES).decode("utf-8", "replace")
    except OSError:
        return 0.0
    match = re.search(rf"^{METRICS_PREFIX}last_success_time_seconds ([0-9.e+]+)$", text, re.MULTILINE)
    try:
        return float(match.group(1)) if match else 0.0
    except ValueError:
        return 0.0


def write_metrics(path: str, results: dict, temp_folder: str) -> None:
    """Write the metrics file whole (a StagedFile), mode 0644 whatever the umask, so that node_exporter (another
    user) reads it. The last success is this run's when it exited 0, else carried over from the previous file."""
    last_success = results["end"] if results["exit_code"] == EXIT_OK else previous_success(path)
    with StagedFile(temp_folder, path, mode=METRICS_FILE_MODE) as staged:
        staged.stream.write(metrics_text(results, last_success).encode("utf-8"))
        staged.publish()


PING_POLICY = RetryPolicy(max_attempts=PING_ATTEMPTS, max_total_retry_wait_seconds=PING_BUDGET_SECONDS)


class Pinger:
    """Tells a healthchecks-style service URL/start and URL/<exit code> (the summary as body), each ping from its
    own thread through the run's session and retry loop, reading only the status; the URL is shown redacted."""

    def __init__(self, url: str, session, clock, secrets):
        self.url, self.session, self.clock, self.redact = url, session, clock, secrets.redact
        parts = urlsplit(url)
        self.shown = f"{parts.scheme}://{parts.netloc}/***"
        for secret in [url, parts.path.strip("/"), parts.query] + list(filter(SECRET_LOOKING.match,
                                                                              parts.path.split("/"))):
            secrets.remember(secret)
        self.watch, self._started = RequestWatch(), None

    def start(self) -> None:
        self._started = self._send("start", b"")

    def end(self, code: int, summary: str) -> None:
        """Send the end ping (after the start ping, unless that one is slow) and wait for it, a while."""
        if self._started is not None:
            self._started.join(PING_ORDER_SECONDS)
        body = self.redact(summary).encode("utf-8", "replace")[:MAX_PING_BODY_BYTES]
        pinging = self._send(str(code), body)
        pinging.join(PING_BUDGET_SECONDS)
        if pinging.is_alive():
            log.warning("The ping to %s did not end within %ds; the run's outcome stands", self.shown,
                        PING_BUDGET_SECONDS)

    def _send(self, suffix: str, body: bytes) -> threading.Thread:
        thread = threading.Thread(target=self._ping, args=(suffix, body), daemon=True, name=f"ping-{suffix}")
        thread.start()
        return thread

    def _ping(self, suffix: str, body: bytes) -> None:
        what = f"The ping {self.shown}/{suffix}"
        try:
            url = urlunsplit(urlsplit(self.url)._replace(path=f"{urlsplit(self.url).path}/{suffix}"))
            retried(functools.partial(self._once, url, body), what, PING_POLICY,
                    rng=random.Random(), wait=self.clock.sleep)
        except GaveUp as failure:
            log.warning("%s failed (%s, %s); the run's outcome stands", what, failure.trouble,
                        plural(failure.attempts, "attempt"))
        except Exception as exc:  # whatever it is, the run's outcome stands
            log.warning("%s failed (%s); the run's outcome stands", what, describe_error(exc))

    def _once(self, url: str, body: bytes) -> None:
        with self.watch.deadline(PING_SECONDS) as deadline:
            try:
                with self.session.post(url, data=body, stream=True, allow_redirects=False,
                                       timeout=(PING_SECONDS, PING_SECONDS),
                                       headers={"Content-Type": "text/plain; charset=utf-8"}) as answer:
                    status = answer.status_code  # the body is never read
            except network_errors() as exc:
                reason = network_trouble(exc, Route.to(url), self.clock.now()).reason
                raise TransientError(f"{type(exc).__name__}: {reason or shorten(self.redact(str(exc)), 200)}") from None
        if deadline.expired:
            raise TransientError(f"timed out: no answer within {PING_SECONDS:g}s")
        if not 200 <= status < 300:
            raise TransientError(f"HTTP {status}")


def monitored(settings: Settings, session, clock, secrets, run):
    """Run (a function of nothing, returning the outcome) with the export's monitors: the start ping, then
    the metrics file and the end ping, told the exit code exit_code gives. Neither changes the outcome."""
    pinger = Pinger(settings.ping_url, session, clock, secrets) if settings.ping_url else None
    if pinger is not None:
        pinger.start()
    started = clock.monotonic()
    outcome = run()
    code = exit_code(outcome)
    if settings.metrics_file:
        try:
            write_metrics(settings.metrics_file, run_results(outcome, code, clock.now(), clock.monotonic() - started),
                          Layout(settings.output_dir).temp)
        except OSError as exc:
            log.error("Cannot write the metrics file %s: %s", settings.metrics_file, exc.strerror or exc)
    if pinger is not None:
        summary = outcome.line() if isinstance(outcome, Summary) else f"error: {describe_error(outcome)}"
        try:
            pinger.end(code, summary)
        except KeyboardInterrupt:  # a signal while pinging: the run's outcome stands
            log.warning("Stopped while pinging %s; the run's outcome stands", pinger.shown)
    return outcome


def run_logged(settings: Settings, session, clock):
    """Run the export or the rebuild with the screen, the log, the session, the folder's lock and (for an
    export) its monitors set up; return the outcome for exit_code. Only a run that holds the folder
    prunes its logs and reports to the monitors; this run's log is always kept."""
    secrets = SecretFilter([settings.env_token, settings.embedded_token, settings.password])
    progress = Progress(sys.stderr, live=sys.stderr.isatty() and sys.stdout.isatty())
    layout = Layout(settings.output_dir, settings.xlsx, settings.snapshot)
    with run_log(settings, clock, progress, secrets) as this_log, warnings_logged():
        log.info("weeklycontainerreport %s: gateway %s, output in %s", __version__, settings.gateway or "(none)",
                 os.path.abspath(settings.output_dir))
        try:
            layout.create()
            with folder_lock(layout.temp, layout.root), sessions(settings, session) as session:
                if settings.keep_logs is not None:
                    prune_logs(layout.logs, settings.keep_logs, this_log)
                run = functools.partial(run_and_report, settings, session, clock, progress, secrets, layout)
                return monitored(settings, session, clock, secrets, run) if settings.mode == "export" else run()
        except (FolderBusyError, OSError) as exc:  # the folder cannot be had: no run, nothing to report
            log.error("%s", describe_error(exc))
            return exc


@contextlib.contextmanager
def sessions(settings: Settings, session):
    """The run's HTTP session: the one given, or one made for the run (and closed after it) when it calls
    the gateway or pings."""
    own = session is None and (settings.calls_gateway() or bool(settings.ping_url))
    session = make_session(settings.workers) if own else session
    try:
        yield session
    finally:
        if own:
            session.close()


# --- Command line --------------------------------------------------------------------

HELP_DESCRIPTION = """\
Export the containers of a Qualys Container Security subscription, with their
vulnerabilities, one week per file, from GET {gateway}/csapi/v1.3/containers/list.
Weeks already exported are skipped without an API call, so the same command can
run every day from cron and fetches only what is new.

examples:
  # the last 52 calendar weeks (Monday 00:00 UTC) plus the current, open week
  export QUALYS_TOKEN=...
  python3 %(prog)s https://gateway.qg2.apps.qualys.com

  # one week: --end_date is exclusive
  python3 %(prog)s https://gateway.qg2.apps.qualys.com --start_date 2025-09-27 --end_date 2025-10-04

  # a filter, fewer CSV columns, and a workbook for spreadsheet users
  python3 %(prog)s https://gateway.qg2.apps.qualys.com --start_date 2025-09-27 --end_date 2025-10-04 \\
      --optional_filter "state:RUNNING and imageId:d1a50f311f32" \\
      --csv_columns "containerId,uuid,name,state,vuln_qid,vuln_software_names" --xlsx

  # see what would be fetched, or rewrite every CSV with other columns (no API call)
  python3 %(prog)s https://gateway.qg2.apps.qualys.com --dry_run
  python3 %(prog)s --rebuild_csv --output_dir /var/lib/qualys-weekly --csv_columns "containerId,name,vuln_qid"
"""
HELP_EPILOG = """\
gateway:
  The API gateway of your platform, e.g. https://gateway.qg2.apps.qualys.com (the README
  has the table of platforms). Without GATEWAY it comes from QUALYS_GATEWAY (--base_url_env
  is accepted for compatibility). https only; plain http only to a loopback host.
  HTTPS_PROXY, NO_PROXY and REQUESTS_CA_BUNDLE (a PEM bundle) work as usual.

weeks:
  With --start_date/--end_date: 7-day windows from the start date, the end date exclusive,
  dates from 1970-01-01 to 9999-12-01. Without them: the 52 calendar weeks (Monday 00:00)
  before the current week, and the current week. UTC unless --local_time. A week [start,
  end) is asked for as created:[<start ms> ... <end ms - 1>], with a filter F as
  created:[...] and (F); F must balance its parentheses, "quotes" and `back-ticks`. A week's
  files are the same whatever --workers and --slices are.

authentication, in this order:
  QUALYS_TOKEN          a token from the Qualys UI (it lives 4 hours)
  EMBEDDED_TOKEN        a token pasted into the script near its top
  QUALYS_USERNAME and QUALYS_PASSWORD: a login (POST {gateway}/auth), again when its token expires
  Tokens, passwords and the ping URL's secret are replaced by *** in all that is printed.
files (under --output_dir, default the current folder):
  weekly_reports/<start>_<end>.json       the week's containers as the API sent them, in
                                          time order; [] for an empty week; it marks the
                                          week done, and a done week is never fetched again
  weekly_csv_reports/<start>_<end>.csv    one row per container x QID (weeks with containers)
  weekly_xlsx_reports/<start>_<end>.xlsx  with --xlsx: the same rows, cells typed
  <start>_<end>.partial.json, .csv, ...   a week that ended less than 24 hours ago: fetched
                                          again by every run until it has settled
  <start>_<end>.<fingerprint>.*           with --optional_filter: 16 hex digits of the filter
  snapshots/<day>.json, .csv, .xlsx       --snapshot: what ran at the run's UTC date; taken once a day
  snapshots/<day>.changes.csv             the (image, QID) pairs new or resolved since the one before
  qid_catalog.json                        with the knowledge columns: what was learned per QID
  temp_reports/, logs/                    staging (files move into place whole), run logs

csv columns (the default, in this order; any subset in any order with --csv_columns):
  {columns}
  Not in the default, the knowledge of each QID (see QID knowledge):
  {knowledge}
  An unknown column is blank, with a warning.
snapshot (--snapshot after the weeks, --snapshot_only alone):
  Every container running now (state:RUNNING and the filter), in the weeks' columns. Its changes
  compare it with the newest earlier snapshot of the same filter: one row per image x QID whose
  presence among running containers changed (new, resolved), by severity (highest first); an
  image is its imageId and imageSha as the container has them (neither: one blank image). Its
  severity, title and CVEs come from the QID catalog (learned from details when unknown).
QID knowledge (only when one of its columns is asked for):
  The list gives a vulnerability's QID, result and software; its severity, title, CVEs and
  the rest come from GET {gateway}/csapi/v1.3/containers/<sha>/vuln, one call per container
  holding a QID not yet known, kept per QID in qid_catalog.json and asked again after 30
  days. A value the list sends itself is used as sent. A week whose QIDs cannot be learned
  fails (and is fetched again next run); details refused for every container asked stop
  the run (exit 3) before anything is published with blanks. --rebuild_csv fills these
  columns from the catalog; a QID it lacks fails its week unless GATEWAY is given (then
  only details are asked for, never the list).

csv format:
  A container without vulnerabilities has one row with blank vuln_* cells. Dotted names read
  nested objects (host.hostname), [0] a list item. Missing, null and "null" are blank; times
  are ISO-8601 UTC; lists are joined with "; " (the n-th name, version and fix version line
  up); numbers as sent. A text cell starting with = + - @ TAB or CR gets a leading '. UTF-8
  with a byte-order mark, every cell quoted, CRLF rows.
workbooks (--xlsx, needs XlsxWriter): the CSV's rows, cells typed (text never evaluated, UTC
  dates, numbers, an integer past 2^53 as text); past 1,048,576 rows on <week>_2, <week>_3...
odd records (none fails its week): any uuid (told apart by type), deep nesting, numbers Python
  cannot hold, bytes that are not UTF-8 (U+FFFD); a container served twice is kept once; items
  that are not objects are dropped, and containers created outside the week asked for left out.

errors: (the README has a table of messages and what to do)
  A week that cannot be fetched whole is never written: the others go on, the run exits 1,
  and the next run fetches it again. A refused token moves to the next source (none left:
  exit 3); a 429 waits as the gateway says (15 minutes a time, an hour in all at most); 5xx,
  timeouts and bodies that are not pages are retried, 6 attempts; a redirect is never
  followed; an answer past 256 MiB is dropped. A gateway that is unreachable stops the run
  at once (exit 1). A damaged final JSON is kept aside as <name>.damaged and fetched again.
  Files move into place whole, the JSON last: a crash or a signal leaves no half file. A
  second run on the same folder stops at once. An unexpected error is one line (the log
  file has its traceback).

monitoring (the cron and systemd recipes and the alerts are in the README):
  --metrics_file PATH   after every export, gauges for node_exporter's textfile collector
                        (mode 0644): weeklycontainerreport_last_run_{end_time_seconds,
                        duration_seconds, exit_code, week_results{result}, containers, csv_rows},
                        _last_success_time_seconds (0: never); with --snapshot _snapshot_{
                        running_containers, findings{severity}, changes{change,severity}}
  --ping_url URL        (or QUALYS_PING_URL) URL/start when an export starts, URL/<exit code>
                        and the summary when it ends (healthchecks.io); never changes the exit
                        code, nor holds the end more than 25 s
  --keep_logs N         keep the N newest run logs (this run's among them)
  A --rebuild_csv run, and a run refused by another's lock, leave both alone.
exit codes:
{exit_codes}
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error becomes a one-line UsageError instead of an exit."""

    def error(self, message):
        raise UsageError(message)


def help_lines(text: str, first: str = "  ", rest: str = "  ") -> str:
    """Text wrapped for --help, its first line after first, the others after rest."""
    return textwrap.fill(text, 88, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False)


OPTIONS = (  # --name (and --hyphen-name), argparse's keywords; in --help's order
    ("--base_url_env", dict(action="store_true", help="accepted for compatibility: the gateway comes from "
                                                     "QUALYS_GATEWAY anyway when GATEWAY is not given")),
    ("--start_date", dict(metavar="YYYY-MM-DD", help="first day to export (give --end_date too)")),
    ("--end_date", dict(metavar="YYYY-MM-DD", help="day after the last day to export (exclusive)")),
    ("--optional_filter", dict(metavar="QQL", default="", help='QQL filter added to each query, e.g. "state:RUNNING"')),
    ("--csv_columns", dict(metavar="A,B,C", help="comma-separated CSV columns (default: the columns listed below)")),
    ("--xlsx", dict(action="store_true", help="also write a workbook beside each CSV, cells typed (needs XlsxWriter)")),
    ("--output_dir", dict(metavar="DIR", default=".", help="the folder of every folder below (default: here)")),
    ("--workers", dict(default="auto", metavar="N", help=f"the most requests in flight, 1 to {MAX_WORKERS} (default: "
                                                         "auto, as many as the gateway's rate limit calls for)")),
    ("--slices", dict(type=int, default=DEFAULT_SLICES, metavar="N", help="the most chains of pages a week may be "
                                                                          f"fetched as, 1 to {MAX_SLICES} (default: "
                                                                          "%(default)s)")),
    ("--local_time", dict(action="store_true", help="cut weeks at midnight in this machine's time zone, not UTC")),
    ("--read_timeout", dict(type=float, default=RetryPolicy.read_timeout_seconds, metavar="SECONDS",
                            help="longest a page may take, first byte to last (1 to 3600; default: %(default)g)")),
    ("--snapshot", dict(action="store_true", help="after the weeks, what runs now and what changed since the "
                                                 "snapshot before, in snapshots/ (see snapshot below)")),
    ("--snapshot_only", dict(action="store_true", help="the snapshot alone, no week")),
    ("--dry_run", dict(action="store_true", help="print the weeks, file names and QQL a run would use; no call")),
    ("--rebuild_csv", dict(action="store_true", help="rewrite every CSV (and with --xlsx workbook) from the stored "
                                                    "JSON with the current --csv_columns; no list call, no token")),
)
MONITORING_OPTIONS = (
    ("--metrics_file", dict(metavar="PATH", default="", help="after every export, its metrics for node_exporter's "
                                                            "textfile collector")),
    ("--ping_url", dict(metavar="URL", default="", help="tell a healthchecks-style service: URL/start, then "
                                                       "URL/<exit code> (default: $QUALYS_PING_URL)")),
    ("--keep_logs", dict(metavar="N", type=int, default=None, help="keep the N newest run logs (default: all)")),
)


def build_parser() -> Parser:
    """The command line, documented as the manual."""
    parser = Parser(
        prog="weeklycontainerreport.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=HELP_DESCRIPTION,
        epilog=HELP_EPILOG.replace("{columns}", help_lines(", ".join(CSV_COLUMNS), "")).replace(
            "{knowledge}", help_lines(", ".join(KNOWLEDGE_COLUMNS), "")).replace("{exit_codes}", "\n".join(
                help_lines(meaning, f"  {code:<4} ", " " * 7) for code, meaning in EXIT_MEANINGS)),
    )
    parser.add_argument("gateway", nargs="?", metavar="GATEWAY",
                        help="gateway URL, e.g. https://gateway.qg2.apps.qualys.com (default: $QUALYS_GATEWAY; "
                             "not needed with --rebuild_csv or --dry_run)")
    monitoring = parser.add_argument_group("monitoring (cron, systemd; see the README)")
    for group, options in ((parser, OPTIONS), (monitoring, MONITORING_OPTIONS)):
        for name, keywords in options:
            group.add_argument(*dict.fromkeys((name, name.replace("_", "-"))), **keywords)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def parse_date(text: str, flag: str) -> dt.date:
    """Read a YYYY-MM-DD date within FIRST_DATE..LAST_DATE, or raise UsageError naming the flag."""
    try:
        day = dt.datetime.strptime(text.strip(), "%Y-%m-%d").date()
    except ValueError:
        raise UsageError(f"{flag} must be a date like 2025-09-27, not {text!r}") from None
    if not FIRST_DATE <= day <= LAST_DATE:
        raise UsageError(f"{flag} must be from {FIRST_DATE} to {LAST_DATE}, not {day}")
    return day


def parse_columns(text) -> tuple:
    """Read --csv_columns; not given means the default columns."""
    if text is None:
        return CSV_COLUMNS
    columns = tuple(column.strip() for column in text.split(",") if column.strip())
    if not columns:
        raise UsageError(f"--csv_columns names no column: {text!r}")
    return columns


def within(value, low, high, flag: str, more: str = ""):
    """value, when from low to high (high None: unbounded); else a UsageError naming the flag."""
    if not (math.isfinite(value) and low <= value and (high is None or value <= high)):
        bounds = f"from {low:g} to {high:g}" if high is not None else f"{low:g} or more"
        raise UsageError(f"{flag} must be {more}{bounds}, not {value!r}")
    return value


def parse_workers(text: str) -> int:
    """Read --workers: auto (the ceiling) or a number from 1 to MAX_WORKERS."""
    if text.strip().lower() == "auto":
        return MAX_WORKERS
    try:
        return within(int(text), 1, MAX_WORKERS, "--workers", "auto or a number ")
    except ValueError:
        raise UsageError(f"--workers must be auto or a number from 1 to {MAX_WORKERS}, not {text!r}") from None


def gateway_base(gateway: str, source: str = "GATEWAY") -> str:
    """Validate a gateway URL (from source) and return it without the list path, e.g. https://host."""
    parts = checked_url(gateway, source, " e.g. https://gateway.qg2.apps.qualys.com,")
    path = parts.path.rstrip("/")
    if path.endswith(API_PATH):
        path = path[: -len(API_PATH)]
    return f"{parts.scheme.lower()}://{parts.netloc}{path}"


def ping_base(url: str) -> str:
    """Validate --ping_url (or QUALYS_PING_URL) and return it without a trailing slash on its path (/start
    and /<exit code> are added to the path; a query such as healthchecks' ?rid= stays)."""
    parts = checked_url(url, "--ping_url", "", secret=True)
    return urlunsplit((parts.scheme.lower(), parts.netloc, parts.path.rstrip("/"), parts.query, ""))


def check_not_utf8(args, environ) -> None:
    """Refuse, in one line, text that held bytes that are not UTF-8 (a Latin-1 crontab, say): the OS
    hands them over as surrogates, which no request, file name or log could carry."""
    shown = {"GATEWAY": args.gateway, "--optional_filter": args.optional_filter, "--csv_columns": args.csv_columns,
             "--start_date": args.start_date, "--end_date": args.end_date,
             "QUALYS_GATEWAY": environ.get("QUALYS_GATEWAY")}
    hidden = {name: environ.get(name) for name in ("QUALYS_USERNAME", "QUALYS_PASSWORD", "QUALYS_PING_URL")}
    for name, value in list(shown.items()) + list(hidden.items()):
        if value and SURROGATE.search(value):
            said = f": {escape_controls(value.encode('utf-8', 'surrogateescape').decode('latin-1'))!r}" \
                if name in shown else ""
            raise UsageError(f"{name} holds bytes that are not UTF-8 (was it written in Latin-1, in a crontab "
                             f"say?){said}")


def check_ca_bundle(environ) -> None:
    """Refuse, in one line, a CA bundle that requests would be told to use but cannot (missing, not PEM)."""
    name = next((name for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if environ.get(name)), "")  # the first
    path = environ.get(name, "")
    if not path or os.path.isdir(path):  # none, or a folder of hashed certificates
        return
    try:
        pem = b"-----BEGIN CERTIFICATE-----" in read_regular(path, MAX_PAGE_BYTES)
    except FileNotFoundError:
        raise UsageError(f"{name} names {path!r}, which does not exist") from None
    except OSError as exc:
        raise UsageError(f"{name} names {path!r}, which cannot be read ({exc.strerror or exc})") from None
    if not pem:
        raise UsageError(f"{name} names {path!r}, which is not a PEM bundle (a DER certificate? convert it: "
                         "openssl x509 -inform der -in FILE -out FILE.pem)")


def settings_from(args, environ, embedded_token: str) -> Settings:
    """Validate the parsed arguments and combine them with the environment."""
    check_not_utf8(args, environ)
    if (args.start_date is None) != (args.end_date is None):
        raise UsageError("give both --start_date and --end_date, or neither")
    start_date = end_date = None
    if args.start_date is not None:
        start_date = parse_date(args.start_date, "--start_date")
        end_date = parse_date(args.end_date, "--end_date")
        if end_date <= start_date:
            raise UsageError("--end_date must be after --start_date (it is exclusive)")
    workers, slices = parse_workers(args.workers), within(args.slices, 1, MAX_SLICES, "--slices")
    if args.rebuild_csv and args.dry_run:
        raise UsageError("--rebuild_csv and --dry_run do not go together")
    if args.snapshot_only and args.start_date is not None:
        raise UsageError("--snapshot_only fetches no week: give no --start_date and --end_date")
    optional_filter = args.optional_filter.strip()
    check_filter(optional_filter)
    source, gateway_text = ("GATEWAY", args.gateway) if args.gateway else ("QUALYS_GATEWAY", environ.get(
        "QUALYS_GATEWAY", "").strip())
    gateway = gateway_base(gateway_text, source) if gateway_text else ""
    if not gateway and not (args.rebuild_csv or args.dry_run):
        raise UsageError("GATEWAY is required, e.g. https://gateway.qg2.apps.qualys.com, or set QUALYS_GATEWAY "
                         "(see --help)")
    ping_url = args.ping_url.strip() or environ.get("QUALYS_PING_URL", "").strip()
    settings = Settings(
        gateway=gateway, start_date=start_date, end_date=end_date, optional_filter=optional_filter,
        csv_columns=parse_columns(args.csv_columns), output_dir=args.output_dir, workers=workers,
        local_time=args.local_time, dry_run=args.dry_run, rebuild_csv=args.rebuild_csv, xlsx=args.xlsx,
        slices=slices, policy=dataclasses.replace(RetryPolicy(), read_timeout_seconds=within(
            args.read_timeout, *READ_TIMEOUT_RANGE, "--read_timeout")),
        env_token=environ.get("QUALYS_TOKEN", "").strip(), embedded_token=embedded_token.strip(),
        username=environ.get("QUALYS_USERNAME", "").strip(), password=environ.get("QUALYS_PASSWORD", ""),
        metrics_file=args.metrics_file.strip(), ping_url=ping_base(ping_url) if ping_url else "",
        keep_logs=args.keep_logs if args.keep_logs is None else within(args.keep_logs, 1, None, "--keep_logs"),
        snapshot=args.snapshot or args.snapshot_only, weeks=not args.snapshot_only,
    )
    if settings.calls_gateway():
        check_ca_bundle(environ)
    return settings


def check_what_it_needs(settings: Settings) -> None:
    """Refuse to start, in one line, without requests (the export needs it), XlsxWriter (for --xlsx), stored
    weeks to rebuild, or a place the metrics file can be written to."""
    if requests is None and settings.calls_gateway():
        raise UsageError("the 'requests' package is missing: run the script with .venv/bin/python (python3 -m venv "
                         ".venv && .venv/bin/python -m pip install -r requirements.txt), or install your "
                         "distribution's python3-requests (apt install python3-requests, or dnf install "
                         "python3-requests)")
    if settings.xlsx:
        import_xlsxwriter()
    layout = Layout(settings.output_dir)
    if settings.rebuild_csv and not os.path.isdir(layout.reports):
        raise UsageError(f"nothing to rebuild: no {REPORTS_DIR}/ in {os.path.abspath(layout.root)}; "
                         "give the --output_dir of an export")
    if settings.metrics_file and settings.mode == "export":
        check_metrics_file(settings.metrics_file, layout)


def check_metrics_file(path: str, layout: Layout) -> None:
    """Refuse a --metrics_file that cannot be written whole (no such folder, a folder, a FIFO) or that
    would replace a file of the export's own (in its folders, its catalog)."""
    real = os.path.realpath(path)
    folder, ours = os.path.dirname(real), [os.path.realpath(managed) for managed in layout.staging + (layout.logs,)]
    if not os.path.isdir(folder):
        raise UsageError(f"--metrics_file: its folder {folder} does not exist")
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode) and not os.path.islink(path):
        raise UsageError(f"--metrics_file: {path} is not a regular file")
    if any(os.path.commonpath([real, managed]) == managed for managed in ours) or \
            real == os.path.realpath(os.path.join(layout.root, CATALOG_NAME)):
        raise UsageError(f"--metrics_file: {path} is one of the export's own files")


def refused(exc: BaseException):
    """Say in one line why the run could not begin; return the outcome for exit_code."""
    exc = Interrupted.of(exc) if isinstance(exc, KeyboardInterrupt) else exc
    said = f"stopped by {exc.name} before the run began" if isinstance(exc, Interrupted) else "error: " + \
        describe_error(exc)
    print(f"weeklycontainerreport.py: {said}", file=sys.stderr)
    return exc


def main(argv=None, clock=None, session=None, environ=None) -> int:
    """Run the command line: the table of contents of a run, and its only exit."""
    clock = clock or SystemClock()
    environ = os.environ if environ is None else environ
    with signals_stop_the_run():
        try:
            settings = settings_from(build_parser().parse_args(argv), environ, EMBEDDED_TOKEN)  # 1. what to do
            check_what_it_needs(settings)  # 2. what it needs
            if settings.mode == "dry run":
                outcome = dry_run(settings, session, clock)  # 3. a mode: say what a run would do,
            else:
                outcome = run_logged(settings, session, clock)  # or export or rebuild, logged and summed up
        except SystemExit:  # --help and --version printed what was asked for
            outcome = None
        except (UsageError, OSError, KeyboardInterrupt) as exc:
            outcome = refused(exc)
    return exit_code(outcome)  # 4. how it ended


if __name__ == "__main__":
    sys.exit(main())
