#!/usr/bin/env python3
"""Export Qualys Container Security containers, with their vulnerabilities, one week per file.

    export QUALYS_TOKEN=...            # or QUALYS_USERNAME + QUALYS_PASSWORD
    python3 weeklycontainerreport.py https://gateway.qg2.apps.qualys.com \\
        --start_date 2025-09-27 --end_date 2025-10-04

Every week becomes weekly_reports/<start>_<end>.json (empty weeks too) and, when it
has containers, weekly_csv_reports/<start>_<end>.csv. Weeks already exported are
skipped without an API call. Run with --help for the whole manual.
Exit codes: 0 done, 1 some weeks failed, 2 usage error, 3 authentication failed,
130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime as dt
import email.utils
import errno
import functools
import hashlib
import ipaddress
import json
import logging
import os
import queue
import random
import re
import sys
import threading
import time
import traceback
import uuid
from urllib.parse import parse_qs, urlsplit

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
except ImportError:  # reported by main(), so that --help still works
    requests = None

__version__ = "2.0.0"
log = logging.getLogger("weeklycontainerreport")

# --- Settings you may edit -----------------------------------------------------------

# You may paste an API token between the quotes. It is used only when QUALYS_TOKEN is
# unset or rejected; the environment variable (or QUALYS_USERNAME/QUALYS_PASSWORD) is
# preferred, because a token in a file is easy to leak and dies after 4 hours.
EMBEDDED_TOKEN = ""

# --- Constants ------------------------------------------------------------------------

EXIT_OK = 0
EXIT_WEEKS_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_INTERRUPTED = 130

API_PATH = "/csapi/v1.3/containers/list"
AUTH_PATH = "/auth"
PAGE_LIMIT = 250  # the API's maximum; its default is undocumented, so always send it
OPEN_WEEK_GRACE = dt.timedelta(hours=24)  # a week ending later than this before the run is partial
HISTORY_WEEKS = 52  # complete weeks before the current one, when no dates are given
LOGIN_MAX_AGE_SECONDS = 3.5 * 3600  # a JWT lives 4 hours; log in again before that
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
TOKEN_STATUSES = frozenset({401, 403})

REPORTS_DIR = "weekly_reports"
CSV_DIR = "weekly_csv_reports"
TEMP_DIR = "temp_reports"
LOGS_DIR = "logs"
LOCK_NAME = ".lock"
TEMP_SUFFIX = ".tmp"
# Files and folders follow the user's umask, but are never writable by everyone.
FILE_MODE = 0o664
FOLDER_MODE = 0o775

CSV_COLUMNS = (
    # Container identity & status
    "containerId", "uuid", "name", "state", "ipv4", "ipv6",
    "created", "updated", "stateChanged", "riskScore", "qdsSeverity", "maxQdsScore",
    "imageId", "imageSha", "imageUuid", "customerUuid", "privileged", "isRoot",
    "isVulnPropagated", "source", "sensorUuid",
    # Host / cluster info
    "host.sensorUuid", "host.hostname", "host.ipAddress",
    "cluster.name", "cluster.uid", "cluster.version",
    "cluster.k8s.pod.name", "cluster.k8s.pod.namespace", "cluster.k8s.pod.uuid",
    "cluster.k8s.pod.controller[0].name", "cluster.k8s.pod.controller[0].type",
    "hostArchitecture",
    # Runtime context
    "environment", "command", "arguments",
    # Vulnerability fields (one row per QID)
    "vuln_qid", "vuln_firstFound", "vuln_lastFound", "vuln_typeDetected", "vuln_scanTypes",
    # From vulnerability.software[] (joined if multiple)
    "vuln_software_names", "vuln_software_versions", "vuln_software_fixVersions",
    "vuln_software_packagePaths",
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
# Epoch-millisecond columns, rendered as ISO-8601 UTC in the CSV.
TIME_COLUMNS = frozenset({"created", "updated", "stateChanged", "vuln_firstFound", "vuln_lastFound"})
LIST_SEPARATOR = "; "
FORMULA_TRIGGERS = frozenset("=+-@\t\r")  # OWASP CSV injection: cells a spreadsheet evaluates
PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
REPORT_NAME = re.compile(
    r"(?P<first>\d{4}-\d{2}-\d{2})_(?P<end>\d{4}-\d{2}-\d{2})"
    r"(?:\.(?P<fingerprint>[0-9a-f]{8}))?(?P<partial>\.partial)?\.(?P<extension>json|csv)\Z"
)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

# --- Errors ---------------------------------------------------------------------------


class ReportError(Exception):
    """Base class of the errors this script reports in one line."""


class UsageError(ReportError):
    """The command line or its input is wrong (exit 2)."""


class AuthError(ReportError):
    """No token source is left that the gateway accepts (exit 3)."""


class FolderBusyError(ReportError):
    """Another run holds the output folder's lock (exit 1)."""


class WeekFailed(ReportError):
    """A week could not be fetched completely; nothing is written for it."""


class TransientError(ReportError):
    """A failure worth retrying: 5xx, network trouble, a body that is not JSON."""


class RateLimited(ReportError):
    """The gateway answered 429; wait_seconds says how long to wait."""

    def __init__(self, wait_seconds: float, source: str):
        super().__init__(f"HTTP 429, waiting {wait_seconds:g}s ({source})")
        self.wait_seconds = wait_seconds


class TokenRejected(ReportError):
    """The gateway rejected the token in use; the broker has already moved on."""


# --- Weeks and names ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Week:
    """One export window [start, end), named by its first day and its exclusive end day."""

    first_day: dt.date
    end_day: dt.date
    start: dt.datetime
    end: dt.datetime

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp()) * 1000

    @property
    def end_ms(self) -> int:
        return int(self.end.timestamp()) * 1000

    @property
    def label(self) -> str:
        return f"{self.first_day.isoformat()}..{self.end_day.isoformat()}"


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
    while first_day < end_date:
        end_day = min(first_day + dt.timedelta(days=7), end_date)
        weeks.append(make_week(first_day, end_day, local_time))
        first_day = end_day
    return weeks


def is_open(week: Week, run_started: dt.datetime) -> bool:
    """Tell whether a week may still gain containers: it ended less than 24 hours ago."""
    return run_started - week.end < OPEN_WEEK_GRACE


def week_query(week: Week, optional_filter: str) -> str:
    """Return the QQL for a week; QQL ranges include both ends, so stop 1 ms short."""
    window = f"created:[{week.start_ms} ... {week.end_ms - 1}]"
    return f"{window} and ({optional_filter})" if optional_filter else window


def filter_fingerprint(optional_filter: str) -> str:
    """Return the 8-hex-digit fingerprint that names a filtered export ('' for none)."""
    if not optional_filter:
        return ""
    return hashlib.sha256(optional_filter.encode("utf-8")).hexdigest()[:8]


def report_name(week: Week, fingerprint: str, partial: bool, extension: str) -> str:
    """Name a week's file, e.g. 2025-09-27_2025-10-04.f3a9c1e2.partial.json."""
    parts = [f"{week.first_day.isoformat()}_{week.end_day.isoformat()}"]
    if fingerprint:
        parts.append(fingerprint)
    if partial:
        parts.append("partial")
    parts.append(extension)
    return ".".join(parts)


def parse_report_name(name: str, local_time: bool = False):
    """Read (week, fingerprint, partial, extension) back from a report name, or None."""
    match = REPORT_NAME.match(name)
    if not match:
        return None
    try:
        first_day = dt.date.fromisoformat(match["first"])
        end_day = dt.date.fromisoformat(match["end"])
    except ValueError:
        return None
    week = make_week(first_day, end_day, local_time)
    return week, match["fingerprint"] or "", bool(match["partial"]), match["extension"]


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a run's folders are, under one output folder."""

    root: str

    @property
    def reports(self) -> str:
        return os.path.join(self.root, REPORTS_DIR)

    @property
    def csvs(self) -> str:
        return os.path.join(self.root, CSV_DIR)

    @property
    def temp(self) -> str:
        return os.path.join(self.root, TEMP_DIR)

    @property
    def logs(self) -> str:
        return os.path.join(self.root, LOGS_DIR)

    def create(self) -> None:
        for folder in (self.reports, self.csvs, self.temp, self.logs):
            os.makedirs(folder, mode=FOLDER_MODE, exist_ok=True)


@dataclasses.dataclass(frozen=True)
class WeekJob:
    """One week to export, with its query and the file names it will be published under."""

    week: Week
    query: str
    partial: bool
    json_path: str
    csv_path: str
    stale_paths: tuple  # files of the same week this export replaces (its old partial files)


def plan_jobs(weeks, settings, run_started: dt.datetime, layout: Layout):
    """Split weeks into jobs to fetch and weeks already done (their final JSON exists)."""
    fingerprint = filter_fingerprint(settings.optional_filter)
    jobs, done = [], []
    for week in weeks:
        final_json = os.path.join(layout.reports, report_name(week, fingerprint, False, "json"))
        if os.path.exists(final_json):
            done.append(week)
            continue
        partial = is_open(week, run_started)
        partial_paths = (
            os.path.join(layout.reports, report_name(week, fingerprint, True, "json")),
            os.path.join(layout.csvs, report_name(week, fingerprint, True, "csv")),
        )
        jobs.append(WeekJob(
            week=week,
            query=week_query(week, settings.optional_filter),
            partial=partial,
            json_path=os.path.join(layout.reports, report_name(week, fingerprint, partial, "json")),
            csv_path=os.path.join(layout.csvs, report_name(week, fingerprint, partial, "csv")),
            stale_paths=() if partial else partial_paths,
        ))
    return jobs, done


# --- Gateway client -------------------------------------------------------------------


def gateway_base(gateway: str) -> str:
    """Validate a gateway URL and return it without the list path, e.g. https://host."""
    parts = urlsplit(gateway.strip())
    scheme = parts.scheme.lower()
    try:
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise UsageError(f"gateway URL has a bad port: {gateway!r}") from None
    if scheme not in ("http", "https") or not host:
        raise UsageError(f"gateway must be an https:// URL, e.g. https://gateway.qg2.apps.qualys.com, not {gateway!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UsageError("gateway URL must not carry credentials, a query or a fragment")
    if scheme == "http" and not is_loopback(host):
        raise UsageError("plain http is allowed only to a loopback host (127.0.0.1, ::1, localhost); use https")
    path = parts.path.rstrip("/")
    if path.endswith(API_PATH):
        path = path[: -len(API_PATH)]
    return f"{scheme}://{parts.netloc}{path}"


def is_loopback(host: str) -> bool:
    """Tell whether host is localhost or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry; the one place these bounds live."""

    max_attempts: int = 6
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 60.0
    max_total_retry_wait_seconds: float = 300.0
    max_rate_limit_wait_seconds: float = 900.0  # one 429 wait, whatever the gateway asks
    max_total_rate_limit_wait_seconds: float = 3600.0  # per request, then the week fails
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 120.0

    def backoff_seconds(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with jitter for the given 1-based attempt."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (attempt - 1))
        return ceiling * rng.uniform(0.5, 1.0)


class SystemClock:
    """Wall time, monotonic time and sleep, passed in so that tests can replace them."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def header_number(headers, name: str):
    """Read a numeric header as a float, or None when absent or unreadable."""
    value = headers.get(name)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class Pacer:
    """Spaces all workers' calls evenly by the gateway's X-RateLimit headers."""

    MARGIN = 1.05  # run a little under the limit, so that jitter does not draw 429s

    def __init__(self, clock):
        self._clock = clock
        self._lock = threading.Lock()
        self._interval_seconds = 0.0  # unknown until the first answer: at most --workers calls go unpaced
        self._next_slot = 0.0
        self._last_slot = 0.0

    def wait_turn(self) -> float:
        """Block until this caller may send; return the seconds waited."""
        with self._lock:
            now = self._clock.monotonic()
            slot = max(now, self._next_slot)
            self._last_slot = slot
            self._next_slot = slot + self._interval_seconds
        delay = slot - now
        if delay > 0:
            self._clock.sleep(delay)
        return delay

    def learn(self, headers) -> None:
        """Take the limit, window and remaining calls from a response's headers."""
        limit = header_number(headers, "X-RateLimit-Limit")
        window = header_number(headers, "X-RateLimit-Window-Sec")
        remaining = header_number(headers, "X-RateLimit-Remaining")
        with self._lock:
            if limit and window and limit > 0 and window > 0:
                self._interval_seconds = window / limit * self.MARGIN
                self._next_slot = max(self._next_slot, self._last_slot + self._interval_seconds)
            if remaining is not None and remaining <= 0:
                self._next_slot = max(self._next_slot, self._clock.monotonic() + self._interval_seconds)

    def hold(self, seconds: float) -> None:
        """Keep every worker from sending for the given seconds (after a 429)."""
        with self._lock:
            self._next_slot = max(self._next_slot, self._clock.monotonic() + seconds)


def rate_limit_wait(headers, fallback_seconds: float):
    """Return (seconds, header used) for a 429: ToWait-Sec, Retry-After, the window, fallback."""
    to_wait = header_number(headers, "X-RateLimit-ToWait-Sec")
    if to_wait is not None and to_wait >= 0:
        return to_wait, "X-RateLimit-ToWait-Sec"
    retry_after = headers.get("Retry-After")
    if retry_after:
        seconds = header_number(headers, "Retry-After")
        if seconds is None:
            try:
                when = email.utils.parsedate_to_datetime(retry_after)
                seconds = (when - dt.datetime.now(dt.timezone.utc)).total_seconds()
            except (TypeError, ValueError):
                seconds = None
        if seconds is not None:
            return max(seconds, 0.0), "Retry-After"
    window = header_number(headers, "X-RateLimit-Window-Sec")
    if window is not None and window > 0:
        return window, "X-RateLimit-Window-Sec"
    return fallback_seconds, "no wait header"


def gateway_message(response) -> str:
    """Return the gateway's own error text from a response, short and on one line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        text = body.get("message") or body.get("error") or body.get("authentication_exceptions") or body
    else:
        text = response.text or response.reason or ""
    return " ".join(str(text).split())[:300]


class TokenBroker:
    """Hands all workers one token, and moves to the next source when the gateway rejects it.

    Sources in order: QUALYS_TOKEN, the in-script EMBEDDED_TOKEN, then a login with
    QUALYS_USERNAME/QUALYS_PASSWORD, repeated whenever a login token expires.
    """

    def __init__(self, tokens, login, clock, remember_secret):
        self._sources = [(label, token) for label, token in tokens if token]
        self._login = login  # None without credentials
        self._clock = clock
        self._remember_secret = remember_secret
        self._lock = threading.Lock()
        self._token = None
        self._current_label = ""
        self._from_login = False
        self._login_time = 0.0
        self._proven = False
        self._failures = []
        self._error = None

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

    def rejected(self, token: str, reason: str) -> None:
        """Move past a rejected token; only the first worker to report it does the work."""
        with self._lock:
            if self._error:
                raise self._error
            if token != self._token:
                return
            log.warning("The gateway rejected the token from %s: %s", self._source_label(), reason)
            self._failures.append(f"{self._source_label()}: {reason}")
            if self._from_login and self._proven:
                self._log_in()  # a login token that worked has expired: log in again
            else:
                self._advance()

    def _source_label(self) -> str:
        return "the login" if self._from_login else self._current_label

    def _advance(self) -> None:
        if self._sources:
            label, token = self._sources.pop(0)
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
        if not self._failures:
            return ("no token: set QUALYS_TOKEN, or QUALYS_USERNAME and QUALYS_PASSWORD, "
                    "or paste a token into EMBEDDED_TOKEN in the script")
        return ("the gateway refused every token (" + "; ".join(self._failures) + "). Set a fresh "
                "QUALYS_TOKEN, or QUALYS_USERNAME and QUALYS_PASSWORD for a login")


@dataclasses.dataclass
class Page:
    """One page of containers and the cursor for the next page (None on the last page)."""

    containers: list
    next_cursor: object


def page_containers(body) -> list:
    """Return the containers of a decoded page; tolerate null, missing or single-object data."""
    if not isinstance(body, dict):
        raise TransientError("the response is JSON but not an object")
    data = body.get("data")
    if data is None:
        return []
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return data
    raise TransientError("the response's data is neither a list nor an object")


def next_cursor(response):
    """Return paginationQuery from the Link header's rel=next URL, or None on the last page."""
    try:
        links = response.links
    except Exception:  # a malformed header is a last page, not a crash
        return None
    for rel, link in links.items():
        if "next" in str(rel).lower().split():
            values = parse_qs(urlsplit(link.get("url", "")).query).get("paginationQuery")
            cursor = values[0].strip() if values else ""
            return cursor if cursor and cursor.lower() != "null" else None
    return None


class GatewayClient:
    """The only code that does HTTP: pages of the list API, with pacing, retries and tokens."""

    def __init__(self, base_url, session, tokens, pacer, clock, policy, rng, progress):
        self.list_url = base_url + API_PATH
        self.auth_url = base_url + AUTH_PATH
        self.session = session
        self.tokens = tokens
        self.pacer = pacer
        self.clock = clock
        self.policy = policy
        self.rng = rng
        self.progress = progress

    def fetch_page(self, query: str, cursor, label: str) -> Page:
        """Fetch one page of a week, retrying what is transient; raise WeekFailed otherwise."""
        params = {"filter": query, "limit": PAGE_LIMIT}
        if cursor:
            params["paginationQuery"] = cursor
        attempt, retry_waited, limit_waited = 0, 0.0, 0.0
        while True:
            try:
                return self._try_once(params)
            except TokenRejected:
                continue
            except RateLimited as exc:
                wait = min(exc.wait_seconds, self.policy.max_rate_limit_wait_seconds)
                limit_waited += wait
                if limit_waited > self.policy.max_total_rate_limit_wait_seconds:
                    raise WeekFailed(f"{exc}; rate-limited for over {limit_waited:g}s in all") from None
                log.warning("Week %s: %s", label, exc)
                self.pacer.hold(wait)
                self._wait(wait, "rate limit")
            except TransientError as exc:
                attempt += 1
                delay = self.policy.backoff_seconds(attempt, self.rng)
                if attempt >= self.policy.max_attempts or retry_waited + delay > self.policy.max_total_retry_wait_seconds:
                    raise WeekFailed(f"{exc} (gave up after {attempt} attempts)") from None
                retry_waited += delay
                log.warning("Week %s: %s (attempt %d of %d); retrying in %.1fs",
                            label, exc, attempt, self.policy.max_attempts, delay)
                self._wait(delay, "retry")

    def _wait(self, seconds: float, why: str) -> None:
        self.progress.waiting(seconds, why)
        self.clock.sleep(seconds)
        self.progress.waiting(0, "")

    def _try_once(self, params) -> Page:
        token = self.tokens.current()
        self.pacer.wait_turn()
        try:
            response = self.session.get(
                self.list_url, params=params, allow_redirects=False,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=(self.policy.connect_timeout_seconds, self.policy.read_timeout_seconds),
            )
        except requests.exceptions.Timeout as exc:
            raise TransientError(f"timed out ({type(exc).__name__})") from None
        except requests.exceptions.RequestException as exc:
            raise TransientError(f"network error ({type(exc).__name__})") from None
        self.pacer.learn(response.headers)
        return self._page_from(response, token)

    def _page_from(self, response, token: str) -> Page:
        status = response.status_code
        if status in TOKEN_STATUSES:
            self.tokens.rejected(token, f"HTTP {status} {gateway_message(response)}")
            raise TokenRejected()
        if status == 429:
            wait, source = rate_limit_wait(response.headers, fallback_seconds=60.0)
            raise RateLimited(wait, source)
        if status in RETRYABLE_STATUSES:
            raise TransientError(f"HTTP {status}")
        if status == 204:
            return Page([], None)
        if not 200 <= status < 300:
            raise WeekFailed(f"HTTP {status} {gateway_message(response)}")
        self.tokens.accepted(token)
        try:
            body = json.loads(response.content)
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type")
            raise TransientError(f"HTTP {status} with a body that is not valid JSON ({kind})") from None
        return Page(page_containers(body), next_cursor(response))

    def log_in(self, username: str, password: str) -> str:
        """POST /auth and return the JWT; raise AuthError for bad credentials."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.session.post(
                    self.auth_url, data={"username": username, "password": password, "token": "true"},
                    allow_redirects=False,
                    timeout=(self.policy.connect_timeout_seconds, self.policy.read_timeout_seconds),
                )
                if 200 <= response.status_code < 300 and response.text.strip():
                    log.info("Logged in as QUALYS_USERNAME")
                    return response.text.strip()
                if response.status_code not in RETRYABLE_STATUSES:
                    raise AuthError(f"login failed: HTTP {response.status_code} {gateway_message(response)}"
                                    " (check QUALYS_USERNAME and QUALYS_PASSWORD)")
                problem = f"HTTP {response.status_code}"
            except requests.exceptions.RequestException as exc:
                problem = f"network error ({type(exc).__name__})"
            if attempt >= self.policy.max_attempts:
                raise AuthError(f"login failed: {problem} after {attempt} attempts")
            delay = self.policy.backoff_seconds(attempt, self.rng)
            log.warning("Login: %s (attempt %d of %d); retrying in %.1fs", problem, attempt,
                        self.policy.max_attempts, delay)
            self.clock.sleep(delay)


# --- Writing reports ------------------------------------------------------------------


def format_time(value) -> str:
    """Render epoch milliseconds (a string or a number) as ISO-8601 UTC; leave others as text."""
    if value is None or value == "" or value == "null":
        return ""
    try:
        seconds, millis = divmod(int(value), 1000)
        stamp = (EPOCH + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    except (TypeError, ValueError, OverflowError):
        return format_cell(value)
    return f"{stamp}.{millis:03d}Z" if millis else f"{stamp}Z"


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
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def format_cell(value) -> str:
    """Render a value for the CSV, with a leading ' on text a spreadsheet would run as a formula."""
    text = format_value(value)
    if text and text[0] in FORMULA_TRIGGERS and not PLAIN_NUMBER.match(text):
        return "'" + text
    return text


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
        values = [entry.get(field) if type(entry) is dict else None for entry in software]
        try:  # the hot path: every value is already a string
            if "null" not in values:
                return LIST_SEPARATOR.join(values)
        except TypeError:
            pass
        return LIST_SEPARATOR.join(format_value(value) for value in values)
    return getter


def vuln_field(field: str):
    """Return a getter for one field of a vulnerability."""
    return lambda vuln: vuln.get(field)


class RowFlattener:
    """Turns one container into CSV rows, one per vulnerability, with column paths resolved once."""

    def __init__(self, columns):
        self.header = list(columns)
        self.unknown = [column for column in columns if column not in CSV_COLUMNS]
        self._blank = [""] * len(self.header)
        self._container_cells = []  # (position, steps, formatter)
        self._vuln_cells = []  # (position, getter, formatter)
        for position, column in enumerate(self.header):
            formatter = format_time if column in TIME_COLUMNS else format_cell
            if column in self.unknown:
                continue
            if column in VULN_FIELDS:
                self._vuln_cells.append((position, vuln_field(VULN_FIELDS[column]), formatter))
            elif column in VULN_SOFTWARE_FIELDS:
                self._vuln_cells.append((position, software_field(VULN_SOFTWARE_FIELDS[column]), formatter))
            else:
                self._container_cells.append((position, compile_path(column), formatter))

    def rows(self, container) -> list:
        """Return the rows of one container; one blank-vulnerability row when it has none."""
        if not isinstance(container, dict):
            container = {}
        template = self._blank[:]
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


def fsync_folder(folder: str) -> None:
    """Make a rename in folder durable, where the OS allows it."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def open_new(path: str, mode: str, **options):
    """Open a file for writing with FILE_MODE under the umask (mkstemp would force 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_EXCL)
    return open(os.open(path, flags, FILE_MODE), mode, **options)


def remove_quietly(path: str) -> None:
    """Delete a file if it is there."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class StagedFile:
    """A file written in temp_reports/ and moved into place whole, or never."""

    def __init__(self, temp_folder: str, final_path: str, encoding: str):
        name = f"{os.path.basename(final_path)}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}"
        self.temp_path = os.path.join(temp_folder, name)
        self.final_path = final_path
        self.stream = open_new(self.temp_path, "w", encoding=encoding, newline="")

    def publish(self) -> None:
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()
        os.replace(self.temp_path, self.final_path)
        fsync_folder(os.path.dirname(self.final_path) or ".")

    def discard(self) -> None:
        if not self.stream.closed:
            self.stream.close()
        remove_quietly(self.temp_path)


def csv_writer(stream, header):
    """Start a CSV in our format (every cell quoted, CRLF rows) and write its header row."""
    writer = csv.writer(stream, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(header)
    return writer


class WeekWriter:
    """Streams a week's containers into staged JSON and CSV files, de-duplicated by uuid.

    The JSON is an array with one container per line, so it can be read back line by line.
    """

    def __init__(self, job: WeekJob, temp_folder: str, flattener: RowFlattener):
        self.job = job
        self.seen_uuids = set()
        self.containers = 0
        self.rows = 0
        self.duplicates = 0
        self._json = StagedFile(temp_folder, job.json_path, "utf-8")
        self._csv = StagedFile(temp_folder, job.csv_path, "utf-8-sig")
        self._csv_writer = csv_writer(self._csv.stream, flattener.header)
        self._flattener = flattener

    def add(self, containers) -> None:
        """Write a page's containers, skipping uuids this week already has."""
        for container in containers:
            container_uuid = container.get("uuid") if isinstance(container, dict) else None
            if container_uuid is not None:
                if container_uuid in self.seen_uuids:
                    self.duplicates += 1
                    continue
                self.seen_uuids.add(container_uuid)
            self._json.stream.write(",\n" if self.containers else "[\n")
            self._json.stream.write(json.dumps(container, separators=(",", ":")))
            self.containers += 1
            rows = self._flattener.rows(container)
            self._csv_writer.writerows(rows)
            self.rows += len(rows)

    def publish(self) -> None:
        """Move the CSV (if any rows) and then the JSON, the week's done marker, into place."""
        self._json.stream.write("\n]\n" if self.containers else "[]\n")
        if self.containers:
            self._csv.publish()
        else:
            self._csv.discard()
            remove_quietly(self.job.csv_path)  # an old CSV of this name no longer matches
        self._json.publish()
        for stale in self.job.stale_paths:
            remove_quietly(stale)

    def discard(self) -> None:
        self._json.discard()
        self._csv.discard()


def read_report(path: str):
    """Yield the containers of a stored weekly JSON, one line at a time when it has our layout."""
    with open(path, encoding="utf-8") as stream:
        first = stream.readline()
        if first.strip() not in ("[", "[]"):
            stream.seek(0)
            yield from json.load(stream)
            return
        for line in stream:
            line = line.rstrip().rstrip(",")
            if line and line != "]":
                yield json.loads(line)


def rebuild_csv(json_path: str, csv_path: str, temp_folder: str, flattener: RowFlattener):
    """Write csv_path afresh from a stored weekly JSON; return (containers, rows)."""
    staged = StagedFile(temp_folder, csv_path, "utf-8-sig")
    try:
        writer = csv_writer(staged.stream, flattener.header)
        containers = rows = 0
        for container in read_report(json_path):
            container_rows = flattener.rows(container)
            writer.writerows(container_rows)
            containers += 1
            rows += len(container_rows)
        if containers:
            staged.publish()
        else:
            staged.discard()
            remove_quietly(csv_path)
        return containers, rows
    except BaseException:
        staged.discard()
        raise


# --- Run ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a run needs, validated; built from the command line and the environment."""

    gateway: str = ""  # the gateway's base URL; '' where none is needed
    start_date: object = None  # dt.date, or None for the last 52 weeks
    end_date: object = None  # dt.date, exclusive
    optional_filter: str = ""
    csv_columns: tuple = CSV_COLUMNS
    output_dir: str = "."
    workers: int = 4
    local_time: bool = False
    dry_run: bool = False
    rebuild_csv: bool = False
    policy: RetryPolicy = RetryPolicy()
    env_token: str = dataclasses.field(default="", repr=False)
    embedded_token: str = dataclasses.field(default="", repr=False)
    username: str = dataclasses.field(default="", repr=False)
    password: str = dataclasses.field(default="", repr=False)


@dataclasses.dataclass
class WeekResult:
    """What became of one week."""

    week: Week
    error: str = ""
    containers: int = 0
    rows: int = 0
    pages: int = 0


@dataclasses.dataclass
class Summary:
    """The totals of a run, for the closing line and the exit code."""

    planned: int = 0
    fetched: int = 0
    skipped: int = 0
    failed: int = 0
    containers: int = 0
    rows: int = 0
    seconds: float = 0.0
    output_dir: str = "."

    def line(self) -> str:
        return (f"Summary: {self.planned} weeks planned, {self.fetched} fetched, {self.skipped} skipped, "
                f"{self.failed} failed; {self.containers} containers, {self.rows} CSV rows; "
                f"{self.seconds:.1f}s; files in {os.path.abspath(self.output_dir)}")


class Progress:
    """Counts pages, containers and weeks, and keeps a live status line on a terminal."""

    def __init__(self, stream, live: bool):
        self.stream = stream
        self.live = live
        self.weeks_total = 0
        self.weeks_done = 0
        self.containers = 0
        self.pages = 0
        self._waits = {}
        self._lock = threading.RLock()
        self._shown = False

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
            self._redraw()

    def finish(self) -> None:
        with self._lock:
            self._clear()

    def _status(self) -> str:
        wait = next(iter(self._waits.values()), "")
        return (f"weeks {self.weeks_done}/{self.weeks_total}  containers {self.containers}  "
                f"pages {self.pages}  {wait}").rstrip()

    def _redraw(self) -> None:
        if self.live:
            self.stream.write("\r\033[K" + self._status())
            self.stream.flush()
            self._shown = True

    def _clear(self) -> None:
        if self.live and self._shown:
            self.stream.write("\r\033[K")
            self._shown = False


@contextlib.contextmanager
def folder_lock(layout: Layout):
    """Hold the output folder's lock for a run; the OS drops it if the process dies."""
    handle = open_new(os.path.join(layout.temp, LOCK_NAME), "a")
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
                f"another run is using this folder ({os.path.abspath(layout.root)}); stopping") from None
        yield
    finally:
        handle.close()


def clean_temp(layout: Layout) -> int:
    """Delete what a killed run left in temp_reports/; return how many files went."""
    removed = 0
    for name in os.listdir(layout.temp):
        if name.endswith(TEMP_SUFFIX):
            remove_quietly(os.path.join(layout.temp, name))
            removed += 1
    return removed


def make_flattener(columns) -> RowFlattener:
    """Build the row flattener, warning once about each column it does not know."""
    flattener = RowFlattener(columns)
    for column in flattener.unknown:
        log.warning("Unknown CSV column %r: it will be blank (see --help for the list)", column)
    return flattener


def make_client(settings: Settings, session, clock, progress, remember_secret) -> GatewayClient:
    """Wire the gateway client with its shared pacer and token broker."""
    client = GatewayClient(settings.gateway, session, None, Pacer(clock), clock, settings.policy,
                           random.Random(), progress)
    login = None
    if settings.username and settings.password:
        login = functools.partial(client.log_in, settings.username, settings.password)
    sources = [("QUALYS_TOKEN", settings.env_token), ("EMBEDDED_TOKEN in the script", settings.embedded_token)]
    client.tokens = TokenBroker(sources, login, clock, remember_secret)
    return client


def fetch_week(job: WeekJob, client: GatewayClient, writer: WeekWriter, progress, stop) -> int:
    """Page through one week into the writer; return the number of pages."""
    cursor, used, pages = None, set(), 0
    while True:
        if stop.is_set():
            raise WeekFailed("the run is stopping")
        page = client.fetch_page(job.query, cursor, job.week.label)
        before = writer.containers
        writer.add(page.containers)
        pages += 1
        progress.page(writer.containers - before)
        if not page.containers or page.next_cursor is None:
            return pages
        if page.next_cursor in used:
            log.warning("Week %s: the gateway repeated a cursor; treating it as the last page", job.week.label)
            return pages
        used.add(page.next_cursor)
        cursor = page.next_cursor


def export_week(job: WeekJob, client, layout: Layout, flattener, progress, stop) -> WeekResult:
    """Fetch one week and publish its files, or publish nothing if any page fails."""
    writer = WeekWriter(job, layout.temp, flattener)
    try:
        pages = fetch_week(job, client, writer, progress, stop)
        writer.publish()
    except BaseException:
        writer.discard()
        raise
    if writer.duplicates:
        log.info("Week %s: skipped %d containers the gateway served twice", job.week.label, writer.duplicates)
    log.info("Week %s: %d containers, %d CSV rows, %d pages -> %s%s", job.week.label, writer.containers,
             writer.rows, pages, os.path.basename(job.json_path), " (open week, fetched again next run)"
             if job.partial else "")
    return WeekResult(job.week, containers=writer.containers, rows=writer.rows, pages=pages)


def attempt_week(job: WeekJob, export_one, stop) -> WeekResult:
    """Run one week's export, turning its failure into a failed WeekResult."""
    try:
        return export_one(job)
    except AuthError:
        stop.set()
        raise
    except WeekFailed as exc:
        message = str(exc)
    except OSError as exc:
        message = f"cannot write its files: {exc}"
    except Exception as exc:  # a bug must not take the other weeks down with it
        log.exception("Week %s: unexpected error", job.week.label)
        message = f"unexpected error: {type(exc).__name__}"
    log.error("Week %s FAILED: %s. Nothing written for it; the next run tries again.", job.week.label, message)
    return WeekResult(job.week, error=message)


def run_jobs(jobs, export_one, workers: int, stop, progress) -> list:
    """Export jobs on up to `workers` threads; return their results in job order."""
    pending = queue.Queue()
    for index, job in enumerate(jobs):
        pending.put((index, job))
    finished = queue.Queue()

    def work():
        while not stop.is_set():
            try:
                index, job = pending.get_nowait()
            except queue.Empty:
                return
            try:
                finished.put((index, attempt_week(job, export_one, stop), None))
            except BaseException as exc:
                finished.put((index, None, exc))

    threads = [threading.Thread(target=work, daemon=True) for _ in range(min(workers, len(jobs)))]
    for thread in threads:
        thread.start()
    results = [None] * len(jobs)
    while any(thread.is_alive() for thread in threads) or not finished.empty():
        try:
            index, result, error = finished.get(timeout=0.2)
        except queue.Empty:
            continue
        if error is not None:  # no token left: stop now, without waiting out other workers' sleeps
            stop.set()
            raise error
        results[index] = result
        progress.week_done()
    return [result or WeekResult(job.week, error="not started") for job, result in zip(jobs, results)]


def run_report(settings: Settings, session, clock, progress, remember_secret) -> Summary:
    """Export every planned week that is not done yet; the story of one run."""
    started, started_monotonic = clock.now(), clock.monotonic()
    layout = Layout(settings.output_dir)
    layout.create()
    with folder_lock(layout):
        stale = clean_temp(layout)  # 1. nothing a killed run left is mistaken for a result
        if stale:
            log.info("Removed %d temp files left by an earlier run", stale)
        weeks = plan_weeks(settings.start_date, settings.end_date, started, settings.local_time)  # 2. plan
        jobs, done = plan_jobs(weeks, settings, started, layout)
        log.info("Planned %d weeks (%s to %s, %s): %d to fetch, %d already done", len(weeks),
                 weeks[0].first_day, weeks[-1].end_day, "local time" if settings.local_time else "UTC",
                 len(jobs), len(done))
        for week in done:
            log.info("Week %s: already exported, skipped", week.label)
        flattener = make_flattener(settings.csv_columns)  # 3. columns, resolved once
        client = make_client(settings, session, clock, progress, remember_secret)
        progress.weeks_total = len(jobs)
        stop = threading.Event()
        try:  # 4. fetch and publish, week by week
            results = run_jobs(jobs, lambda job: export_week(job, client, layout, flattener, progress, stop),
                               settings.workers, stop, progress)
        finally:
            stop.set()
    failed = [result for result in results if result.error]
    return Summary(planned=len(weeks), fetched=len(results) - len(failed), skipped=len(done), failed=len(failed),
                   containers=sum(result.containers for result in results),
                   rows=sum(result.rows for result in results),
                   seconds=clock.monotonic() - started_monotonic, output_dir=settings.output_dir)


def rebuild_reports(settings: Settings, clock) -> Summary:
    """Write every CSV afresh from the stored weekly JSON, with the current columns."""
    started_monotonic = clock.monotonic()
    layout = Layout(settings.output_dir)
    if not os.path.isdir(layout.reports):
        raise UsageError(f"nothing to rebuild: no {REPORTS_DIR}/ in {os.path.abspath(layout.root)}")
    layout.create()
    summary = Summary(output_dir=settings.output_dir)
    flattener = make_flattener(settings.csv_columns)
    with folder_lock(layout):
        clean_temp(layout)
        for name in sorted(os.listdir(layout.reports)):
            parsed = parse_report_name(name)
            if not parsed or parsed[3] != "json":
                continue
            week, fingerprint, partial, _ = parsed
            csv_path = os.path.join(layout.csvs, report_name(week, fingerprint, partial, "csv"))
            summary.planned += 1
            try:
                containers, rows = rebuild_csv(os.path.join(layout.reports, name), csv_path, layout.temp, flattener)
            except (OSError, ValueError) as exc:
                log.error("Rebuilding the CSV of %s FAILED: %s", name, exc)
                summary.failed += 1
                continue
            log.info("Rebuilt %s: %d containers, %d CSV rows", os.path.basename(csv_path) if containers
                     else f"nothing for {name} (no containers)", containers, rows)
            summary.fetched += 1
            summary.containers += containers
            summary.rows += rows
    summary.seconds = clock.monotonic() - started_monotonic
    return summary


def describe_plan(settings: Settings, clock, out) -> None:
    """Print the weeks a run would fetch, their file names and their QQL (for --dry_run)."""
    started = clock.now()
    layout = Layout(settings.output_dir)
    weeks = plan_weeks(settings.start_date, settings.end_date, started, settings.local_time)
    jobs, done = plan_jobs(weeks, settings, started, layout)
    zone = "local time" if settings.local_time else "UTC"
    print(f"Dry run: {len(weeks)} weeks ({zone}), {len(jobs)} to fetch, {len(done)} already done. "
          "No API call is made.", file=out)
    jobs_by_week = {job.week: job for job in jobs}
    for week in weeks:
        job = jobs_by_week.get(week)
        if job is None:
            print(f"skip   {week.label}  already exported", file=out)
        else:
            print(f"fetch  {week.label}  {os.path.relpath(job.json_path)}  {os.path.relpath(job.csv_path)}"
                  f"  {job.query}", file=out)


# --- Command line ---------------------------------------------------------------------

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

  # a filter and fewer CSV columns
  python3 %(prog)s https://gateway.qg2.apps.qualys.com --start_date 2025-09-27 --end_date 2025-10-04 \\
      --optional_filter "state:RUNNING and imageId:d1a50f311f32" \\
      --csv_columns "containerId,uuid,name,state,vuln_qid,vuln_software_names"

  # cron: a fixed output folder; QUALYS_USERNAME/QUALYS_PASSWORD from a private file (see README)
  python3 %(prog)s https://gateway.qg2.apps.qualys.com --output_dir /var/lib/qualys-weekly

  # see what would be fetched, or rewrite every CSV with other columns (no API call)
  python3 %(prog)s https://gateway.qg2.apps.qualys.com --dry_run
  python3 %(prog)s --rebuild_csv --csv_columns "containerId,name,vuln_qid"
"""

HELP_EPILOG = """\
gateway:
  The API gateway of your platform, e.g. https://gateway.qg1.apps.qualys.com (US1),
  https://gateway.qg2.apps.qualys.eu (EU2); see the README for the full table. The path
  /csapi/v1.3/containers/list is added unless the URL already ends with it. https is
  required; plain http is accepted only for a loopback host (a local test gateway).

weeks:
  With --start_date/--end_date: 7-day windows from the start date; the end date is
  exclusive and the last window is cut short at it. Without dates: calendar weeks from
  Monday 00:00, the 52 complete weeks before the current week plus the current week.
  Weeks are in UTC unless --local_time is given. Each week [start, end) is queried as
  created:[<start ms> ... <end ms - 1>], and with a filter F as created:[...] and (F).

authentication, in this order:
  QUALYS_TOKEN          a token from the Qualys UI (it lives 4 hours)
  EMBEDDED_TOKEN        a token pasted into the script near its top; used when
                        QUALYS_TOKEN is unset or rejected
  QUALYS_USERNAME and   a login with POST {gateway}/auth; repeated when a token
  QUALYS_PASSWORD       expires, so a long backfill or a cron job never dies of it
  Tokens and passwords never appear in the output, the logs or the reports.

files (under --output_dir, default the current folder):
  weekly_reports/<start>_<end>.json       the week's containers as the API sent them
                                          (a JSON array, one container per line);
                                          written for empty weeks too ([]); its
                                          presence marks the week done
  weekly_csv_reports/<start>_<end>.csv    one row per container x QID; only weeks
                                          with containers
  <start>_<end>.partial.json / .csv       a week that ended less than 24 hours ago;
                                          fetched again by every run until settled
  <start>_<end>.<fingerprint>.json / .csv an export with --optional_filter; the
                                          fingerprint is 8 hex digits of the filter
  temp_reports/                           staging; files move into place whole
  logs/weekly_report_<timestamp>.log      one log per run
  <end> is exclusive: it is the --end_date that fetches the same week again.

csv columns (the default, in this order; any subset in any order with --csv_columns):
  {columns}
  An unknown column is blank, with a warning in the log. The CSV is UTF-8 with a
  byte-order mark, every cell quoted; times are ISO-8601 UTC (2025-09-01T08:15:00Z);
  lists are joined with "; "; booleans are true/false; a text cell starting with
  = + - @ TAB or CR gets a leading ' so a spreadsheet cannot run it as a formula.

errors:
  5xx, network errors, timeouts and bodies that are not JSON are retried with
  backoff (6 attempts); a 429 waits as the gateway says; other 4xx fail the week at
  once. A failed week is never written and is fetched again by the next run. Files
  move into place whole, so a crash or kill -9 leaves no half-written report. A
  second run on the same folder stops at once. Tighten file modes with umask 077.

exit codes:
  0    every week done or skipped
  1    one or more weeks failed (the others are kept; the next run retries them),
       or another run is using the output folder
  2    usage or input error
  3    authentication failed (no token accepted, or the login was refused)
  130  interrupted (Ctrl-C)
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error becomes a one-line UsageError instead of an exit."""

    def error(self, message):
        raise UsageError(message)


def wrap_columns(columns, width: int = 78) -> str:
    """Lay out column names over indented lines for the help text."""
    lines, line = [], ""
    for column in columns:
        piece = column + ", "
        if len(line) + len(piece) > width:
            lines.append(line.rstrip())
            line = "  "
        line += piece
    lines.append(line.rstrip(", "))
    return "\n".join(lines)


def build_parser() -> Parser:
    """The command line, documented as the manual."""
    parser = Parser(
        prog="weeklycontainerreport.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=HELP_DESCRIPTION, epilog=HELP_EPILOG.replace("{columns}", wrap_columns(CSV_COLUMNS)),
    )
    parser.add_argument("gateway", nargs="?", metavar="GATEWAY",
                        help="gateway URL, e.g. https://gateway.qg2.apps.qualys.com "
                             "(not needed with --rebuild_csv or --dry_run)")
    parser.add_argument("--start_date", "--start-date", metavar="YYYY-MM-DD",
                        help="first day to export (give --end_date too)")
    parser.add_argument("--end_date", "--end-date", metavar="YYYY-MM-DD",
                        help="day after the last day to export (exclusive)")
    parser.add_argument("--optional_filter", "--optional-filter", metavar="QQL", default="",
                        help="QQL filter added to each week's query, e.g. \"state:RUNNING\"")
    parser.add_argument("--csv_columns", "--csv-columns", metavar="A,B,C", default="",
                        help="comma-separated CSV columns (default: all, listed below)")
    parser.add_argument("--output_dir", "--output-dir", metavar="DIR", default=".",
                        help="folder for weekly_reports/, weekly_csv_reports/, temp_reports/ and "
                             "logs/ (default: the current folder)")
    parser.add_argument("--workers", type=int, default=4, metavar="N",
                        help="weeks exported at once, sharing one rate limit (default: 4)")
    parser.add_argument("--local_time", "--local-time", action="store_true",
                        help="cut weeks at midnight in this machine's time zone instead of UTC")
    parser.add_argument("--read_timeout", "--read-timeout", type=float, default=RetryPolicy.read_timeout_seconds,
                        metavar="SECONDS", help="longest wait for a page's data before retrying "
                                                "(default: %(default)g)")
    parser.add_argument("--dry_run", "--dry-run", action="store_true",
                        help="print the weeks, file names and QQL a run would use; no API call, no token")
    parser.add_argument("--rebuild_csv", "--rebuild-csv", action="store_true",
                        help="rewrite every CSV from the stored JSON with the current --csv_columns; "
                             "no API call, no gateway, no token")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def parse_date(text: str, flag: str) -> dt.date:
    """Read a YYYY-MM-DD date, or raise UsageError naming the flag."""
    try:
        return dt.datetime.strptime(text.strip(), "%Y-%m-%d").date()
    except ValueError:
        raise UsageError(f"{flag} must be a date like 2025-09-27, not {text!r}") from None


def parse_columns(text: str) -> tuple:
    """Read --csv_columns; empty means the default columns."""
    columns = tuple(column.strip() for column in text.split(",") if column.strip())
    return columns or CSV_COLUMNS


def settings_from(args, environ, embedded_token: str) -> Settings:
    """Validate the parsed arguments and combine them with the environment."""
    if (args.start_date is None) != (args.end_date is None):
        raise UsageError("give both --start_date and --end_date, or neither")
    start_date = end_date = None
    if args.start_date is not None:
        start_date = parse_date(args.start_date, "--start_date")
        end_date = parse_date(args.end_date, "--end_date")
        if end_date <= start_date:
            raise UsageError("--end_date must be after --start_date (it is exclusive)")
    if args.workers < 1 or args.workers > 32:
        raise UsageError("--workers must be between 1 and 32")
    if not args.read_timeout > 0:
        raise UsageError("--read_timeout must be a positive number of seconds")
    gateway = ""
    if args.gateway:
        gateway = gateway_base(args.gateway)
    elif not (args.rebuild_csv or args.dry_run):
        raise UsageError("GATEWAY is required, e.g. https://gateway.qg2.apps.qualys.com (see --help)")
    if args.rebuild_csv and args.dry_run:
        raise UsageError("--rebuild_csv and --dry_run do not go together")
    return Settings(
        gateway=gateway, start_date=start_date, end_date=end_date,
        optional_filter=args.optional_filter.strip(), csv_columns=parse_columns(args.csv_columns),
        output_dir=args.output_dir, workers=args.workers, local_time=args.local_time,
        dry_run=args.dry_run, rebuild_csv=args.rebuild_csv,
        policy=dataclasses.replace(RetryPolicy(), read_timeout_seconds=args.read_timeout),
        env_token=environ.get("QUALYS_TOKEN", "").strip(), embedded_token=embedded_token.strip(),
        username=environ.get("QUALYS_USERNAME", "").strip(), password=environ.get("QUALYS_PASSWORD", ""),
    )


class SecretFilter(logging.Filter):
    """Replaces every known token and password in log records with '***'."""

    def __init__(self, secrets):
        super().__init__()
        self.secrets = {secret for secret in secrets if secret}

    def remember(self, secret: str) -> None:
        if secret:
            self.secrets.add(secret)

    def filter(self, record) -> bool:
        message = record.getMessage()
        if record.exc_info:  # a bug's traceback goes through the same redaction
            message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            record.exc_info = None
        for secret in self.secrets:
            message = message.replace(secret, "***")
        record.msg, record.args = message, None
        return True


class LogFileHandler(logging.StreamHandler):
    """Writes the run's log file, and closes it with the handler."""

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
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
            self.handleError(record)


def configure_logging(settings: Settings, progress: Progress, secrets: SecretFilter, clock) -> list:
    """Log to logs/weekly_report_<timestamp>.log and to the screen; return the handlers."""
    logs_folder = Layout(settings.output_dir).logs
    os.makedirs(logs_folder, mode=FOLDER_MODE, exist_ok=True)
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    file_handler = LogFileHandler(
        open_new(os.path.join(logs_folder, f"weekly_report_{stamp}.log"), "a", encoding="utf-8"))
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    screen_handler = ProgressHandler(progress)
    screen_handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handlers = [file_handler, screen_handler]
    for handler in handlers:
        handler.addFilter(secrets)
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return handlers


def make_session(workers: int):
    """A requests session whose connection pool fits all workers."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=workers + 2)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def execute(settings: Settings, clock, session, progress, secrets) -> Summary:
    """Run the job the settings ask for: a rebuild of the CSVs or an export."""
    if settings.rebuild_csv:
        return rebuild_reports(settings, clock)
    own_session = session is None
    session = session or make_session(settings.workers)
    try:
        return run_report(settings, session, clock, progress, secrets.remember)
    finally:
        if own_session:
            session.close()


def main(argv=None, clock=None, session=None) -> int:
    """Run the command line; the only place that reads the environment and picks exit codes."""
    clock = clock or SystemClock()
    try:
        settings = settings_from(build_parser().parse_args(argv), os.environ, EMBEDDED_TOKEN)
        if requests is None and not (settings.dry_run or settings.rebuild_csv):
            raise UsageError("the 'requests' package is missing: python3 -m pip install requests")
        if settings.dry_run:
            describe_plan(settings, clock, sys.stdout)
            return EXIT_OK
        secrets = SecretFilter([settings.env_token, settings.embedded_token, settings.password])
        progress = Progress(sys.stderr, live=sys.stderr.isatty() and sys.stdout.isatty())
        handlers = configure_logging(settings, progress, secrets, clock)
    except UsageError as exc:
        print(f"weeklycontainerreport.py: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except OSError as exc:
        print(f"weeklycontainerreport.py: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        log.info("weeklycontainerreport %s: gateway %s, output in %s", __version__,
                 settings.gateway or "(none)", os.path.abspath(settings.output_dir))
        summary = execute(settings, clock, session, progress, secrets)
        log.info("%s", summary.line())
        return EXIT_WEEKS_FAILED if summary.failed else EXIT_OK
    except AuthError as exc:
        log.error("Authentication failed, stopping: %s", exc)
        return EXIT_AUTH
    except FolderBusyError as exc:
        log.error("%s", exc)
        return EXIT_WEEKS_FAILED
    except UsageError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        log.error("Interrupted; finished weeks are kept, unfinished ones are fetched next run")
        return EXIT_INTERRUPTED
    except OSError as exc:
        log.error("Cannot write the reports: %s", exc)
        return EXIT_WEEKS_FAILED
    finally:
        progress.finish()
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()


if __name__ == "__main__":
    sys.exit(main())
