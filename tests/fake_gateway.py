#!/usr/bin/env python3
"""A fake Qualys gateway on 127.0.0.1, faithful to what Qualys documents, with fault switches.

It serves GET /csapi/v1.3/containers/list (keyset paging on `updated`, Link headers in
every known shape, inclusive QQL ranges, X-RateLimit headers and 429s, quirky
Qualys-shaped data generated deterministically, gzip when asked) and POST /auth.

Two kinds of switch. Styles pick among the plausible forms of what Qualys leaves
undocumented (next_link_style, last_page_style, empty_style, wait_header, cursor_style,
single_object_data, rate_limit, latency_seconds, gzip, lag). Faults are its one way to
misbehave: a list of Fault(kind, ...) in `faults`, each taken by the calls it matches
(FAULT_KINDS lists them). Tests set both, then read `calls` to see what was asked.

    python3 tests/fake_gateway.py --port 8080 --containers 500    # serve until Ctrl-C
    python3 tests/try_it.py DIR                                    # the README's try-it demo
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import email.utils
import base64
import bisect
import functools
import gzip
import hashlib
import json
import os
import random
import re
import socket
import ssl
import struct
import sys
import threading
import time
import uuid as uuid_module
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from loopback import Served

LIST_PATH = "/csapi/v1.3/containers/list"
AUTH_PATH = "/auth"
DETAILS_PATH = "/csapi/v1.3/containers/{sha}/vuln"  # "Show vulnerability details for a container"
DETAILS = re.compile(r"/csapi/v1\.3/containers/(?P<sha>[^/]+)/vuln\Z")
# Shapes of a details answer: as documented, and the plausible variants the client must read too.
DETAILS_STYLES = ("documented", "top-level", "details-list", "data", "strings")
MAX_LIMIT = 250
DEMO_TOKEN = "demo-token-not-a-secret"
HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(os.path.dirname(HERE), "weeklycontainerreport.py")

# Shapes of a Link header that announces a next page, all of which the client must follow.
NEXT_LINK_STYLES = ("sample", "gateway", "relative", "malformed", "quoted", "multi", "uppercase",
                    "rel-capitals")
# Shapes of a Link header that names a next page the client cannot read: the week must fail.
UNREADABLE_LINK_STYLES = ("unparseable", "bad-ipv6")
# Ways a last page can say so, all of which end the week.
LAST_PAGE_STYLES = ("absent", "empty", "null", "no-next", "no-cursor", "null-cursor", "unparseable")
EMPTY_STYLES = ("empty-list", "null", "204")  # the documented empty pages; {} is no page at all
WAIT_HEADERS = ("towait", "retry-after", "retry-after-date", "both", "none")
# Faults taken by one call each (times says how many): what that answer does instead.
CALL_FAULTS = ("status", "reset", "truncate", "html", "badjson", "slow", "429", "expire", "401", "403",
               "trickle", "trickle-headers", "bomb", "limit-headers", "garbled", "after-pages", "not-a-page",
               "items", "redirect")
NOT_A_PAGE = {"errorCode": "SERVICE_UNAVAILABLE", "message": "Container Security is under maintenance"}
# Faults that change the gateway's behaviour while they last (times=-1 by default: for good).
BEHAVIOUR_FAULTS = ("repeat-cursor", "fresh-cursors", "ignore-ranges", "touch", "close", "revoke",
                    "dead-login", "echo-secrets")
FAULT_KINDS = CALL_FAULTS + BEHAVIOUR_FAULTS


def epoch_ms(day: dt.date) -> int:
    """Midnight UTC of a day, in epoch milliseconds."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()) * 1000


# --- Data -------------------------------------------------------------------------------


def lag_ms(rng: random.Random, style: str, at_most_ms: int) -> int:
    """How long after its creation a container was last updated, in whole seconds (ties happen).

    "realistic", as real Qualys containers show (updated moves with every state change and rescan):
    a quarter within the hour, half 1-5 days later, a quarter 1-4 weeks later; a lag that would end
    after the gateway's now (at_most_ms from the creation) is drawn again below it. "tight": 0-5 s,
    the friendlier fake that earlier tuning was measured on."""
    if style == "tight":
        return rng.randint(0, 5) * 1000
    draw = rng.random()
    low, high = (0, 3600) if draw < 0.25 else (86400, 5 * 86400) if draw < 0.75 else (7 * 86400, 28 * 86400)
    lag = rng.randint(low, high) * 1000
    return lag if lag <= at_most_ms else max(int(at_most_ms * rng.random()) // 1000 * 1000, 0)


def hex_digits(rng: random.Random, count: int) -> str:
    return f"{rng.getrandbits(4 * count):0{count}x}"


def make_core(seed: int, index: int, created_ms: int) -> dict:
    """The cheap fields of a generated container, with the quirks the samples show."""
    rng = random.Random(f"{seed}-{index}")
    uuid = str(uuid_module.UUID(int=rng.getrandbits(128), version=4))
    has_host, has_cluster = rng.random() > 0.15, rng.random() > 0.3
    return {
        "containerId": hex_digits(rng, 12), "sha": hex_digits(rng, 64), "uuid": uuid,
        "name": rng.choice(["web", "api", "worker", "db", "cache", "café-frontend"]) + f"-{index}",
        "state": rng.choice(["RUNNING", "RUNNING", "STOPPED", "DELETED"]),
        "imageId": hex_digits(rng, 12) if rng.random() > 0.1 else None,
        "imageSha": hex_digits(rng, 64), "imageUuid": str(uuid_module.UUID(int=rng.getrandbits(128), version=4)),
        "customerUuid": "00000000-0000-4000-8000-000000000001",
        "privileged": rng.random() > 0.8, "isRoot": rng.random() > 0.5, "isVulnPropagated": rng.random() > 0.5,
        "source": "GENERAL", "sensorUuid": str(uuid_module.UUID(int=rng.getrandbits(128), version=4)),
        "riskScore": rng.randint(0, 1000) if rng.random() > 0.2 else None,
        "qdsSeverity": rng.choice(["LOW", "MEDIUM", "HIGH", "CRITICAL", None]),
        "maxQdsScore": rng.randint(0, 100), "ipv4": f"10.0.{index % 250}.{rng.randint(1, 254)}",
        "ipv6": None,
        "environment": ["PATH=/usr/bin:/bin", f"INDEX={index}"] if rng.random() > 0.3 else None,
        "command": rng.choice(["null", "/bin/sh -c 'run'", "nginx", "-c"]),
        "arguments": ["-g", "daemon off;"] if rng.random() > 0.5 else None,
        "label": [{"key": "app", "value": "demo"}, {"key": "tier", "value": str(index % 3)}]
        if rng.random() > 0.4 else None,
        "users": ["root"] if rng.random() > 0.5 else None,
        "hostArchitecture": ["x86_64"] if rng.random() > 0.2 else None,
        "created": str(created_ms),
        "stateChanged": str(created_ms + rng.randint(0, 3600_000)),
        "lastScanned": str(created_ms + rng.randint(0, 7200_000)),
        "host": {
            "sensorUuid": hex_digits(rng, 8), "hostname": f"node-{index % 7}.example.test",
            "ipAddress": f"192.0.2.{index % 250}", "ipV6Address": None, "uuid": hex_digits(rng, 8),
            "lastUpdated": "2025-09-01T08:15:00.000+0000",
        } if has_host else None,
        "cluster": {
            "type": "K8S", "name": f"cluster-{index % 3}", "uid": hex_digits(rng, 8), "version": "1.29",
            "k8s": {"project": None, "pod": {
                "name": f"pod-{index}", "namespace": rng.choice(["default", "prod", None]),
                "uuid": hex_digits(rng, 8),
                "controller": [{"name": f"deploy-{index % 5}", "type": "Deployment"}] if rng.random() > 0.3 else [],
            }},
        } if has_cluster else None,
    }


def make_vulnerabilities(seed: int, index: int, created_ms: int, vulns: int, software: int) -> list:
    """A container's vulnerability list; some fields missing, some null, as real exports are."""
    rng = random.Random(f"{seed}-{index}-vulns")
    result = []
    for number in range(rng.randint(0, vulns) if vulns else 0):
        vuln = {"qid": 100000 + rng.randint(0, 99999), "result": f"package {number} is outdated"}
        if rng.random() > 0.2:
            vuln["firstFound"] = str(created_ms + rng.randint(0, 86400_000))
            vuln["lastFound"] = str(created_ms + rng.randint(86400_000, 2 * 86400_000))
        if rng.random() > 0.2:
            vuln["typeDetected"] = rng.choice(["CONFIRMED", "POTENTIAL"])
        if rng.random() > 0.2:
            vuln["scanType"] = rng.sample(["DYNAMIC", "STATIC", "SCA"], rng.randint(1, 2))
        vuln["software"] = [{
            "name": f"lib{number}-{entry}", "version": f"1.{entry}.{rng.randint(0, 9)}",
            "fixVersion": f"1.{entry + 1}.0" if rng.random() > 0.3 else None,
            "packagePath": f"/usr/lib/lib{number}-{entry}.so" if rng.random() > 0.5 else None,
            "scanType": ["SCA"],
        } for entry in range(software)]
        result.append(vuln)
    return result


def qid_knowledge(qid: int, revision: int = 0) -> dict:
    """What Qualys knows of a QID, the same for every container (deterministic; revision changes it)."""
    rng = random.Random(f"qid-{qid}-{revision}")
    base = rng.randint(10, 100) / 10
    return {
        "qid": qid, "title": f"{rng.choice(['OpenSSL', 'zlib', 'glibc', 'Log4j', 'curl'])} vulnerability {qid}",
        "severity": rng.randint(1, 5),
        "cveids": [f"CVE-20{rng.randint(10, 25)}-{rng.randint(1000, 99999)}" for _ in range(rng.randint(0, 3))],
        "cvss3Info": {"baseScore": f"{base:.1f}", "temporalScore": f"{base * 0.9:.1f}"},
        "cvssInfo": {"baseScore": f"{min(base, 10):.1f}", "temporalScore": None},
        "patchAvailable": rng.random() > 0.3,
        "published": 1_500_000_000_000 + rng.randint(0, 10 ** 11),
        "category": rng.choice(["Ubuntu", "Debian", "Red Hat", "Java", "Local"]),
        "risk": rng.randint(0, 100), "threatIntel": {"activeAttacks": rng.random() > 0.8},
        "vendor": ["vendor"], "product": ["product"], "supportedBy": ["CS"],
    }


def stringly(vuln: dict) -> dict:
    """The "strings" shape: numbers and booleans as text, CVEs as one comma-separated string."""
    vuln = dict(vuln)
    vuln["severity"] = str(vuln["severity"])
    vuln["cveids"] = ", ".join(vuln["cveids"])
    vuln["patchAvailable"] = "true" if vuln["patchAvailable"] else "false"
    vuln["published"] = dt.datetime.fromtimestamp(vuln["published"] / 1000, dt.timezone.utc).isoformat()
    vuln["cvss3Info"] = {"baseScore": float(vuln["cvss3Info"]["baseScore"])}
    return vuln


@dataclasses.dataclass
class Record:
    """One container in the fake's store; generated ones build their vulnerabilities on demand."""

    uuid: object
    created_ms: int
    updated_ms: int
    core: dict
    index: int = -1  # >= 0 for generated containers
    vulnerabilities: object = None  # a list for hand-made containers
    raw: str = ""  # for odd containers: the exact JSON text to serve (uuid is then only the fake's key)
    text: str = ""  # the JSON text last served, and what it was made from
    text_key: object = None


# --- QQL --------------------------------------------------------------------------------

BARE_CREATED_RANGE = re.compile(r"created:\[\s*(?P<low>\d+)\s*\.\.\.\s*(?P<high>\d+)\s*\]")
QQL_TOKEN = re.compile(
    r"\s*(?:(?P<range>[\w.]+):\[\s*(?P<low>\d+)\s*\.\.\.\s*(?P<high>\d+)\s*\])"
    r"|\s*(?:(?P<field>[\w.]+):(?:`(?P<quoted>[^`]*)`|(?P<bare>[^\s()`]+)))"
    r"|\s*(?P<word>\(|\)|(?i:and|or|not)\b)"
)


class BadQuery(Exception):
    pass


def lookup(container: dict, path: str):
    value = container
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def parse_qql(text: str):
    """Parse QQL into a predicate on a (record, container) pair; and binds tighter than or."""
    tokens, position = [], 0
    while position < len(text.rstrip()):
        match = QQL_TOKEN.match(text, position)
        if not match:
            raise BadQuery(f"cannot read the filter at {text[position:position + 20]!r}")
        tokens.append(match)
        position = match.end()
    predicate, rest = parse_or(tokens)
    if rest:
        raise BadQuery("unbalanced filter")
    return predicate


def parse_or(tokens):
    return parse_chain(tokens, "or", parse_and, lambda a, b: lambda item: a(item) or b(item))


def parse_and(tokens):
    return parse_chain(tokens, "and", parse_atom, lambda a, b: lambda item: a(item) and b(item))


def parse_chain(tokens, word: str, parse_operand, combine):
    """Parse operands joined by one operator word, left to right."""
    left, tokens = parse_operand(tokens)
    while tokens and (tokens[0]["word"] or "").lower() == word:
        right, tokens = parse_operand(tokens[1:])
        left = combine(left, right)
    return left, tokens


def parse_atom(tokens):
    if not tokens:
        raise BadQuery("the filter ends too soon")
    token, rest = tokens[0], tokens[1:]
    word = (token["word"] or "").lower()
    if word == "(":
        inner, rest = parse_or(rest)
        if not rest or rest[0]["word"] != ")":
            raise BadQuery("missing )")
        return inner, rest[1:]
    if word == "not":
        inner, rest = parse_atom(rest)
        return (lambda item: not inner(item)), rest
    if token["range"]:
        field, low, high = token["range"], int(token["low"]), int(token["high"])
        return (lambda item: _in_range(item, field, low, high)), rest
    if token["field"]:
        field, wanted = token["field"], (token["quoted"] if token["quoted"] is not None else token["bare"])
        return (lambda item: str(lookup(item[1], field)).lower() == wanted.lower()), rest
    raise BadQuery(f"unexpected {token.group(0).strip()!r}")


def _in_range(item, field, low, high):
    record, container = item
    value = {"created": record.created_ms, "updated": record.updated_ms}.get(field)
    if value is None:
        try:
            value = int(lookup(container, field))
        except (TypeError, ValueError):
            return False
    return low <= value <= high  # QQL ranges include both ends


CURSOR = re.compile(r"updated>=(?P<updated>\d+)(?: AND not uuid: \[(?P<uuids>[^\]]*)\])?\Z")


# --- The gateway ------------------------------------------------------------------------


@dataclasses.dataclass
class Fault:
    """One misbehaviour of the fake: the only way it has to misbehave. Its kind says what.

    Call faults (CALL_FAULTS) are served instead of (or around) the normal answer to the calls
    they match, `times` of them. Behaviour faults (BEHAVIOUR_FAULTS) last while times is not 0:
      repeat-cursor  a next page names the cursor it was asked with again
      fresh-cursors  every page names a new cursor and serves the first page again
      ignore-ranges  the created range of the filter is ignored (every slice gets every container)
      touch          the containers whose uuids are given move on in `updated` once served
      close          after `pages` pages the fake stops listening: connections are refused
      revoke         after `pages` pages every token then valid is refused (`seconds` late)
      dead-login     the next `times` login tokens are refused at once ("JWT expired"); -1: all
      echo-secrets   error answers echo the token and password, in several encodings, after
                     `size` characters of padding
    """

    kind: str
    times: int = 1  # -1: forever
    status: int = 503
    seconds: float = 0.0  # for "slow", the 429 wait, the gap between trickled bytes, the revoke delay
    week_start_ms: object = None  # only calls whose created range starts here
    with_cursor: object = None  # True: only next-page calls; False: only first pages
    size: int = 0  # for "bomb": the inflated size of the gzip body; for "echo-secrets": the padding
    headers: dict = dataclasses.field(default_factory=dict)  # "limit-headers" and "429": added to the answer
    pages: int = 0  # "after-pages": waits (at most 10 s) until this many pages went out; "close", "revoke"
    path: str = LIST_PATH  # the endpoint whose calls it matches: the list, or AUTH_PATH for the login
    uuids: frozenset = frozenset()  # for "touch"
    shas: frozenset = frozenset()  # for details calls: only those of these containers (all when empty)
    body: object = None  # "not-a-page": the JSON object answered with 200 (NOT_A_PAGE when None); "status":
    # a JSON error body instead of an HTML page;
    # "items": JSON texts served in the page's data after its containers (items that are not containers)

    def __post_init__(self):
        assert self.kind in FAULT_KINDS, self.kind


@functools.lru_cache(maxsize=4)
def gzip_bomb(size: int) -> bytes:
    """A gzip body of `size` zero bytes (whole MiBs): small on the wire, huge when inflated.

    After a full flush each MiB of zeros compresses to the same bytes, so one is repeated and
    the trailer (CRC and size of the whole) is written for it: 1,000:1, built in a blink."""
    import zlib
    block, blocks = bytes(1 << 20), max(size >> 20, 2)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)  # with the gzip header
    repeated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.flush()[:-8]  # the final block, without the trailer of only two MiB
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    trailer = struct.pack("<II", crc, (blocks << 20) & 0xFFFFFFFF)
    return first + repeated * (blocks - 1) + end + trailer


def secret_echoes(secret: str) -> list:
    """A secret as a careless gateway might echo it: raw, URL-, JSON- and repr-encoded."""
    from urllib.parse import quote, quote_plus
    return [secret, quote_plus(secret), quote(secret, safe=""), json.dumps(secret)[1:-1], repr(secret)[1:-1]]


class FakeGateway(Served):
    """The fake gateway: a store of containers, switches, and a log of the calls it got."""

    POLL_SECONDS = 0.005

    def __init__(self, seed: int = 7, vulns_per_container: int = 4, software_per_vuln: int = 2, tls: str = ""):
        self.seed = seed
        self.tls = tls  # a PEM file with the certificate and key to serve https with (tests/tls/)
        self.vulns_per_container = vulns_per_container
        self.software_per_vuln = software_per_vuln
        self.lock = threading.RLock()
        self.records = []
        self.valid_tokens = {DEMO_TOKEN}
        self.expired_tokens = set()
        self.forbidden_tokens = set()
        self.credentials = {}
        self.issued = 0
        # styles: the plausible forms of what Qualys leaves undocumented
        self.next_link_style = "sample"
        self.last_page_style = "absent"
        self.empty_style = "empty-list"
        self.single_object_data = False
        self.rate_limit = (1200, 10.0)  # (calls, window seconds); None sends no headers
        self.enforce_rate_limit = True
        self.wait_header = "towait"
        self.latency_seconds = 0.0
        self.gzip = False  # compress pages when the client accepts gzip
        self.cursor_style = "keyset"  # "keyset": the QQL clause Qualys's sample shows; "opaque": sealed to its filter
        self.details_style = "documented"  # one of DETAILS_STYLES
        self.details_rate_limit = (5000, 60.0)  # the /containers/** endpoints' own limit
        self.details_latency_seconds = 0.0  # before each details answer
        self.knowledge_revision = 0  # bump it and Qualys has revised what it knows of every QID
        self.list_carries = ()  # knowledge fields the list's vulnerabilities carry themselves ("severity", ...)
        self.lag = "realistic"  # how generated containers' updated lags their created: "realistic" or "tight"
        self.now = lambda: dt.datetime.now(dt.timezone.utc)  # the clock a Retry-After date is counted from
        # misbehaviour: a list of Fault
        self.faults = []
        self.revoked_tokens = set()
        self.pages_sent = 0  # pages whose answer went out whole
        self.closing = False
        # what happened
        self.calls = []
        self.served = []  # uuids, in the order pages carried them
        self.echoed = []  # the texts echo_secrets put into answers
        self.logins = 0
        self.rate_limited = 0
        self._pages_served = 0
        self._version = 0  # bumped when a record's keyset position changes
        self._latest, self._latest_of = None, 0  # the latest updated of the first _latest_of records
        self._matches = {}
        self._by_created = (None, [], [])  # (version and size of the store, records by created, their times)
        self._call_times = []
        self._details_times = []
        self._by_sha = (None, {})  # (the store it indexes, sha -> record): details find their container at once

    # -- the store ------------------------------------------------------------------

    def generate(self, count: int, first_day: dt.date, end_day: dt.date) -> None:
        """Add `count` containers created evenly over [first_day, end_day), deterministically."""
        self.generate_between(count, epoch_ms(first_day), epoch_ms(end_day))

    def generate_burst(self, count: int, first_day: dt.date, end_day: dt.date, share: float, hours_in: float,
                       hours: float) -> None:
        """Add `count` containers over [first_day, end_day): `share` of them created in a burst of `hours`
        starting `hours_in` after first_day (a redeploy, a CI surge), the rest evenly."""
        burst = int(count * share)
        start = epoch_ms(first_day) + int(hours_in * 3600_000)
        self.generate_between(burst, start, start + int(hours * 3600_000))
        self.generate_between(count - burst, epoch_ms(first_day), epoch_ms(end_day))

    def generate_between(self, count: int, start_ms: int, end_ms: int) -> None:
        """Add `count` containers created evenly over [start_ms, end_ms), deterministically, each updated
        after it was created by a lag in the style of `self.lag` (never after the gateway's now)."""
        span = end_ms - start_ms
        now_ms = int(self.now().timestamp() * 1000)
        with self.lock:
            base = len(self.records)
            for offset in range(count):
                index = base + offset
                created = start_ms + span * offset // count + random.Random(index).randint(0, 999)
                created = min(created, end_ms - 1)
                core = make_core(self.seed, index, created)
                updated = created + lag_ms(random.Random(f"u{index}"), self.lag, now_ms - created)
                self.records.append(Record(core["uuid"], created, updated, core, index=index))

    def add_container(self, created_ms: int, updated_ms: int = None, vulnerabilities=None, **fields) -> dict:
        """Add a hand-made container; any field may be given, the rest are plain defaults."""
        index = len(self.records)
        core = {"uuid": fields.pop("uuid", f"hand-{index:04d}-0000-4000-8000-000000000000"),
                "containerId": f"{index:012x}", "sha": f"{index:064x}", "name": f"hand-{index}", "state": "RUNNING",
                "created": str(created_ms)}
        core.update(fields)
        record = Record(core["uuid"], created_ms, updated_ms if updated_ms is not None else created_ms, core,
                        vulnerabilities=vulnerabilities if vulnerabilities is not None else [])
        with self.lock:
            self.records.append(record)
        return core

    def add_raw(self, created_ms: int, text: str, updated_ms: int = None) -> None:
        """Add a container served as exactly this JSON text (numbers Python cannot hold, deep nesting...)."""
        with self.lock:
            index = len(self.records)
            self.records.append(Record(f"raw-{index}", created_ms, created_ms if updated_ms is None else updated_ms,
                                       {}, raw=text))

    def container_json(self, record: Record) -> dict:
        container = dict(record.core)
        container["updated"] = str(record.updated_ms)
        if record.index >= 0:
            container["vulnerabilities"] = make_vulnerabilities(
                self.seed, record.index, record.created_ms, self.vulns_per_container, self.software_per_vuln)
        else:
            container["vulnerabilities"] = record.vulnerabilities
        if self.list_carries:
            container["vulnerabilities"] = [self.carried(vuln) for vuln in container["vulnerabilities"] or []]
        return container

    def carried(self, vuln):
        """A list vulnerability with the knowledge fields list_carries names (a tenant that sends them)."""
        if not isinstance(vuln, dict) or "qid" not in vuln:
            return vuln
        known = qid_knowledge(vuln["qid"], self.knowledge_revision)
        return dict(vuln, **{field: known[field] for field in self.list_carries})

    def render(self) -> None:
        """Make every container's JSON text now, so that serving it later costs only the copy (the
        benchmark: its timed runs measure the exporter, not the fake's JSON encoding)."""
        for record in self.records:
            self.container_text(record)

    def container_text(self, record: Record) -> str:
        """The JSON text served for a container (cached: generating vulnerabilities is slow)."""
        if record.raw:
            return record.raw
        key = (record.updated_ms, id(record.vulnerabilities), self.list_carries, self.knowledge_revision)
        if record.text_key != key:
            record.text, record.text_key = json.dumps(self.container_json(record)), key
        return record.text

    # -- tokens ---------------------------------------------------------------------

    def issue_token(self) -> str:
        with self.lock:
            self.issued += 1
            token = f"fake-jwt-{self.issued:04d}-{self.seed}"
            dead = self.behaving("dead-login")
            if dead:
                dead.times -= 1 if dead.times > 0 else 0
                self.expired_tokens.add(token)
            else:
                self.valid_tokens.add(token)
            return token

    def expire(self, token: str) -> None:
        with self.lock:
            self.valid_tokens.discard(token)
            self.expired_tokens.add(token)

    def expire_all(self) -> None:
        """Every token valid now expires (as if hours went by)."""
        with self.lock:
            self.expired_tokens |= self.valid_tokens
            self.valid_tokens = set()

    def list_calls(self) -> list:
        return [call for call in self.calls if call["path"] == LIST_PATH]

    def details_calls(self) -> list:
        return [call for call in self.calls if call["path"] == DETAILS_PATH]

    def sha_of(self, uuid) -> str:
        """The sha of the container with this uuid."""
        return next(record.core["sha"] for record in self.records if record.uuid == uuid)

    def spend_quota(self) -> None:
        """Another client of the subscription uses up the current rate-limit window, now."""
        with self.lock:
            self._call_times = [time.monotonic()] * self.rate_limit[0]

    def behaving(self, kind: str):
        """The behaviour fault of this kind that is in force, or None."""
        with self.lock:
            return next((fault for fault in self.faults if fault.kind == kind and fault.times != 0), None)

    def call_faults(self, path: str, sha: str = "") -> list:
        return [fault for fault in self.faults if fault.kind in CALL_FAULTS and fault.path == path
                and (not fault.shas or sha in fault.shas)]

    # -- serving --------------------------------------------------------------------

    def start(self) -> "FakeGateway":
        server = QuietServer(("127.0.0.1", 0), Handler)
        server.gateway = self
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls)
            server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        return self.serve(server)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def echo(self, *secrets) -> str:
        """A message that repeats the given secrets in every encoding (with an "echo-secrets" fault)."""
        fault = self.behaving("echo-secrets")
        if not fault:
            return ""
        text = " ".join(form for secret in secrets if secret for form in secret_echoes(secret))
        with self.lock:
            self.echoed.append(text)
        return " " + "x" * fault.size + " (you sent: " + text + ")"

    def handle_auth(self, handler, body: bytes) -> None:
        form = {key: values[0] for key, values in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
        self.calls.append({"method": "POST", "path": AUTH_PATH, "params": {}, "token": None, "form": form,
                           "authorization": handler.headers.get("Authorization")})
        with self.lock:
            self.logins += 1
            ok = (form.get("token") == "true" and form.get("username") in self.credentials
                  and self.credentials[form["username"]] == form.get("password"))
        fault = self.take(self.call_faults(AUTH_PATH))
        if fault and self.serve_fault(handler, fault, None):
            return
        if not ok:
            echo = self.echo(form.get("password", ""), form.get("username", ""))
            body = {"authentication_exceptions": [["Authentication Failure: InvalidCredentialsException" + echo]]}
            if echo:
                body["message"] = "Bad credentials" + echo
            send_json(handler, 401, body)
            return
        send(handler, 201, self.issue_token().encode(), {"Content-Type": "text/plain"})

    def handle_list(self, handler, params: dict, token) -> None:
        self.calls.append({"method": "GET", "path": LIST_PATH, "params": params, "token": token,
                           "at": time.monotonic()})
        query = params.get("filter", [""])[0]
        cursor = params.get("paginationQuery", [None])[0]
        ignore = self.behaving("ignore-ranges")
        served_query = re.sub(r"^created:\[[^\]]*\]( and )?", "", query) if ignore else query
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        self.hold_back(query, cursor)
        refusal = self.refusal(token)
        if refusal:
            send_json(handler, *refusal)
            return
        fault = self.take([fault for fault in self.call_faults(LIST_PATH) if fault.kind != "after-pages"], query,
                          cursor)
        if fault and self.serve_fault(handler, fault, token):
            return
        limit_headers = self.count_call()
        if limit_headers is None:
            return self.send_429(handler)
        if fault and fault.kind == "limit-headers":
            limit_headers = dict(limit_headers, **fault.headers)
        try:
            limit = int(params.get("limit", ["50"])[0])
            predicate = parse_qql(served_query) if served_query.strip() else (lambda item: True)
            if not 1 <= limit <= MAX_LIMIT:
                raise BadQuery(f"limit must be between 1 and {MAX_LIMIT}")
            page, next_query = self.page(predicate, cursor, limit, served_query)
        except BadQuery as exc:
            send_json(handler, 400, {"errorCode": "400 BAD_REQUEST", "message": str(exc) + self.echo(token)},
                      limit_headers)
            return
        self.send_page(handler, page, next_query, params, limit, limit_headers, fault)

    def handle_details(self, handler, sha: str, params: dict, token) -> None:
        """GET /csapi/v1.3/containers/{sha}/vuln: the vulnerability details of one container. Its call
        records when it came, and (once answered) when it ended and its status."""
        call = {"method": "GET", "path": DETAILS_PATH, "sha": sha, "params": params, "token": token,
                "at": time.monotonic()}
        self.calls.append(call)
        if self.details_latency_seconds:
            time.sleep(self.details_latency_seconds)
        handler.status_sent = None
        try:
            self.answer_details(handler, sha, token)
        finally:
            call.update(ended=time.monotonic(), status=handler.status_sent)

    def answer_details(self, handler, sha: str, token) -> None:
        refusal = self.refusal(token)
        if refusal:
            send_json(handler, *refusal)
            return
        fault = self.take(self.call_faults(DETAILS_PATH, sha))
        if fault and self.serve_fault(handler, fault, token):
            return
        headers = self.count_details_call()
        if headers is None:
            self.rate_limited += 1
            calls, window = self.details_rate_limit
            send_json(handler, 429, {"message": "Too many requests"}, {
                "X-RateLimit-Limit": str(calls), "X-RateLimit-Window-Sec": f"{window:g}",
                "X-RateLimit-Remaining": "0", "X-RateLimit-ToWait-Sec": "1"})
            return
        with self.lock:  # an index by sha, made again when the store changed size or its last record
            store = (len(self.records), id(self.records[-1]) if self.records else None)
            if self._by_sha[0] != store:
                self._by_sha = (store, {record.core.get("sha"): record for record in reversed(self.records)})
            record = self._by_sha[1].get(sha)
        if record is None:
            send_json(handler, 404, {"errorCode": "404 NOT_FOUND", "message": f"Container {sha} not found"}, headers)
            return
        send_json(handler, 200, self.details_body(self.container_json(record)), headers)

    def details_body(self, container: dict) -> dict:
        """A container's vulnerability details, in the configured shape."""
        vulns = []
        for vuln in container.get("vulnerabilities") or []:
            if isinstance(vuln, dict) and "qid" in vuln:
                known = dict(qid_knowledge(vuln["qid"], self.knowledge_revision), **{
                    key: vuln.get(key) for key in ("firstFound", "lastFound", "typeDetected", "result", "software")})
                known["customerSeverity"] = "site-specific"
                vulns.append(stringly(known) if self.details_style == "strings" else known)
        summary = {"confirmed": {"sev5": len(vulns)}}
        if self.details_style == "top-level":
            return {"vulns": vulns, "driftVulns": []}
        if self.details_style == "details-list":
            return {"details": vulns, "vunlSummary": summary}
        if self.details_style == "data":
            return {"data": {"details": {"vulns": vulns, "driftVulns": []}}}
        return {"details": {"vulns": vulns[:-1], "driftVulns": vulns[-1:]}, "vunlSummary": summary}

    def count_details_call(self):
        """Count a details call against its own limit; its headers, or None when over it."""
        calls, window = self.details_rate_limit
        now = time.monotonic()
        with self.lock:
            self._details_times = [stamp for stamp in self._details_times if now - stamp < window]
            if len(self._details_times) >= calls:
                return None
            self._details_times.append(now)
            remaining = calls - len(self._details_times)
        return {"X-RateLimit-Limit": str(calls), "X-RateLimit-Window-Sec": f"{window:g}",
                "X-RateLimit-Remaining": str(remaining)}

    def hold_back(self, query: str, cursor) -> None:
        """An "after-pages" fault: this call waits (at most 10 s) until that many pages went out whole."""
        fault = self.take([fault for fault in self.call_faults(LIST_PATH) if fault.kind == "after-pages"], query,
                          cursor)
        if fault:
            deadline = time.monotonic() + 10
            while self.pages_sent < fault.pages and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(fault.seconds)

    def refusal(self, token):
        """The 401/403 answer for a token, or None when it is good."""
        revoke = self.behaving("revoke")
        with self.lock:
            if revoke and self._pages_served >= revoke.pages:
                self.revoked_tokens |= self.valid_tokens
                self.expired_tokens |= self.valid_tokens
                self.valid_tokens = set()
                revoke.times = 0
            revoked = token in self.revoked_tokens
            valid, expired, forbidden = (token in self.valid_tokens, token in self.expired_tokens,
                                         token in self.forbidden_tokens)
        if valid:
            return None
        echo = self.echo(token)
        if revoked:  # late, so that every page served before has reached the client by then
            time.sleep(next((fault.seconds for fault in self.faults if fault.kind == "revoke"), 0.0))
        if expired:
            return 401, {"status": 401, "error": "Unauthorized", "message": "JWT expired" + echo}
        if forbidden:
            return 403, {"errorCode": "403 FORBIDDEN", "message": "Access denied for this module" + echo,
                         "timestamp": int(time.time() * 1000)}
        return 401, {"status": 401, "error": "Unauthorized", "message": "Not authenticated" + echo}

    def take(self, faults, query: str = "", cursor=None):
        match = re.match(r"created:\[(\d+) \.\.\.", query)
        week_start = int(match.group(1)) if match else None
        with self.lock:
            for fault in faults:
                if fault.times == 0:
                    continue
                if fault.week_start_ms is not None and fault.week_start_ms != week_start:
                    continue
                if fault.with_cursor is not None and fault.with_cursor != bool(cursor):
                    continue
                if fault.times > 0:
                    fault.times -= 1
                return fault
        return None

    def serve_fault(self, handler, fault: Fault, token) -> bool:
        """Misbehave as the fault says; True when the answer has been given."""
        if fault.kind == "status" and fault.body is not None:  # a JSON error body, as the gateway's own
            send_json(handler, fault.status, fault.body)
        elif fault.kind == "status":
            send(handler, fault.status, b"<html><body>Bad gateway</body></html>", {"Content-Type": "text/html"})
        elif fault.kind == "reset":
            handler.close_connection = True
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.connection.close()
        elif fault.kind == "html":
            send(handler, 200, b"<html><body>Proxy login required</body></html>", {"Content-Type": "text/html"})
        elif fault.kind == "badjson":
            send(handler, 200, b'{"data": [{"uuid": "x",', {"Content-Type": "application/json"})
        elif fault.kind == "429":
            self.rate_limited += 1
            send_json(handler, 429, {"message": "Too many requests"}, dict(self.wait_headers(fault.seconds),
                                                                           **fault.headers))
        elif fault.kind in ("expire", "401"):
            if fault.kind == "expire":
                self.expire(token)
            send_json(handler, 401, {"status": 401, "error": "Unauthorized", "message": "JWT expired" + self.echo(token)})
        elif fault.kind == "403":
            send_json(handler, 403, {"errorCode": "403 FORBIDDEN", "message": "Access denied", "timestamp": 0})
        elif fault.kind in ("trickle", "trickle-headers"):
            trickle(handler, fault.seconds, headers_too=fault.kind == "trickle-headers")
        elif fault.kind == "redirect":  # a redirect whose body is a gzip bomb (size > 0) or never ends
            location = {"Location": "https://qualysguard.qg2.apps.qualys.com/portal-front/login"}
            if fault.size:
                send(handler, 302, gzip_bomb(fault.size), dict(location, **{"Content-Encoding": "gzip"}))
            else:
                endless_body(handler, 302, location)
        elif fault.kind == "not-a-page":  # a 200 whose JSON object has no data array
            send_json(handler, 200, NOT_A_PAGE if fault.body is None else fault.body)
        elif fault.kind == "bomb":
            send(handler, 200, gzip_bomb(fault.size), {"Content-Type": "application/json", "Content-Encoding": "gzip"})
        elif fault.kind == "slow":
            time.sleep(fault.seconds)
            return False
        else:
            return False  # "truncate", "garbled", "items" and "limit-headers" change the normal answer
        return True

    def count_call(self):
        """Count a call against the rate limit; return its headers, or None when over it."""
        if self.rate_limit is None:
            return {}
        calls, window = self.rate_limit
        now = time.monotonic()
        with self.lock:
            self._call_times = [stamp for stamp in self._call_times if now - stamp < window]
            if self.enforce_rate_limit and len(self._call_times) >= calls:
                self.rate_limited += 1
                return None
            self._call_times.append(now)
            remaining = calls - len(self._call_times)
        return {"X-RateLimit-Limit": str(calls), "X-RateLimit-Window-Sec": str(int(window) if window >= 1 else window),
                "X-RateLimit-Remaining": str(max(remaining, 0))}

    def wait_headers(self, seconds: float) -> dict:
        headers = {}
        if self.rate_limit:
            headers = {"X-RateLimit-Limit": str(self.rate_limit[0]),
                       "X-RateLimit-Window-Sec": str(self.rate_limit[1]), "X-RateLimit-Remaining": "0"}
        if self.wait_header in ("towait", "both"):
            headers["X-RateLimit-ToWait-Sec"] = f"{seconds:g}"
        if self.wait_header == "retry-after":
            headers["Retry-After"] = f"{seconds:g}"
        elif self.wait_header == "both":  # the two disagree: the client must pick one, by its rule
            headers["Retry-After"] = f"{seconds * 2:g}"
        elif self.wait_header == "retry-after-date":
            when = self.now() + dt.timedelta(seconds=seconds)
            headers["Retry-After"] = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
        return headers

    def send_429(self, handler) -> None:
        calls, window = self.rate_limit
        with self.lock:
            oldest = min(self._call_times) if self._call_times else time.monotonic()
        wait = max(0.0, window - (time.monotonic() - oldest))
        send_json(handler, 429, {"message": "Too many requests"}, self.wait_headers(round(wait, 3)))

    def matching(self, predicate, query: str) -> tuple:
        """The records a query matches, in keyset order, and their updated times; cached, since a week
        asks the same query per page. A bare created range looks only at the records created in it."""
        key = (query, self._version, len(self.records))
        if key not in self._matches:
            if len(self._matches) > 64:
                self._matches.clear()
            found = [record for record in self.candidates(query) if predicate((record, record.core))]
            found.sort(key=lambda record: (record.updated_ms, record.uuid))
            self._matches[key] = found, [record.updated_ms for record in found]
        return self._matches[key]

    def move_to_the_end(self, moved) -> None:
        """Give these records an updated later than any other's (a state change), keeping the cached
        keyset orders of the queries they match (their created is the same: so is what they match)."""
        latest = max([self._latest or 0] + [other.updated_ms for other in self.records[self._latest_of:]])
        self._latest_of = len(self.records)  # the records looked at: later ones are added, never changed
        for record in moved:
            before, record.updated_ms = record.updated_ms, latest + 1000
            latest = record.updated_ms
            for found, updated in self._matches.values():
                position = bisect.bisect_left(updated, before)
                while position < len(found) and found[position] is not record and updated[position] == before:
                    position += 1
                if position < len(found) and found[position] is record:
                    del found[position], updated[position]
                    found.append(record)
                    updated.append(record.updated_ms)
        self._latest = latest

    def candidates(self, query: str) -> list:
        """The records that may match query: for a bare created range, those created in it (found by
        bisection, as a real gateway's index would), else all of them."""
        bare = BARE_CREATED_RANGE.fullmatch(query.strip())
        if not bare:
            return self.records
        key = (self._version, len(self.records))
        if self._by_created[0] != key:
            ordered = sorted(self.records, key=lambda record: record.created_ms)
            self._by_created = key, ordered, [record.created_ms for record in ordered]
        _, ordered, created = self._by_created
        return ordered[bisect.bisect_left(created, int(bare["low"])):bisect.bisect_right(created, int(bare["high"]))]

    def page(self, predicate, cursor, limit: int, query: str = ""):
        """Serve one keyset page: updated ascending, ties excluded by uuid; return (page, next cursor)."""
        after, excluded = -1, set()
        if cursor and self.cursor_style == "opaque":
            cursor = self.open_cursor(cursor, query)
        if cursor:
            match = CURSOR.match(cursor)
            if not match:
                raise BadQuery("bad paginationQuery")
            after = int(match["updated"])
            excluded = {uuid.strip() for uuid in (match["uuids"] or "").split(",") if uuid.strip()}
        with self.lock:
            matching, updated = self.matching(predicate, query)
            page = []
            for record in matching[bisect.bisect_left(updated, after):]:  # keyset: from updated >= after on
                if len(page) == limit:
                    break
                if record.updated_ms > after or record.uuid not in excluded:
                    page.append(record)
            texts = [self.container_text(record) for record in page]
            last = page[-1].updated_ms if page else None  # the cursor names where the page ended, as served
            ties = {record.uuid for record in page if record.updated_ms == last}
            self.served.extend(record.uuid for record in page)
            self._pages_served += 1
            close = self.behaving("close")
            if close and self._pages_served >= close.pages:
                close.times = 0
                self.closing = True
                self._server.socket.close()  # this answer still goes out; later connections are refused
            touch = self.behaving("touch")
            moved = [record for record in page if touch and record.uuid in touch.uuids]
            if moved:
                touch.uuids = touch.uuids - {record.uuid for record in moved}
                self.move_to_the_end(moved)
        if len(page) < limit:
            return texts, None
        if last == after:
            ties |= excluded
        next_query = f"updated>={last} AND not uuid: [{', '.join(sorted(ties))}]"
        if self.behaving("fresh-cursors"):  # a new cursor every time, which starts from the beginning again
            next_query = f"updated>=0 AND not uuid: [fresh-{self._pages_served}]"
        if self.cursor_style == "opaque":
            next_query = self.seal_cursor(next_query, query)
        return texts, next_query

    @staticmethod
    def seal_cursor(clause: str, query: str) -> str:
        """An opaque cursor: the keyset clause sealed to the filter it was made for."""
        sealed = json.dumps({"filter": hashlib.sha256(query.encode()).hexdigest()[:12], "after": clause})
        return base64.urlsafe_b64encode(sealed.encode()).decode()

    @staticmethod
    def open_cursor(cursor: str, query: str) -> str:
        """The keyset clause of an opaque cursor, refused for any other filter than its own."""
        try:
            sealed = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        except ValueError:
            raise BadQuery("bad paginationQuery") from None
        if sealed.get("filter") != hashlib.sha256(query.encode()).hexdigest()[:12]:
            raise BadQuery("paginationQuery does not belong to this filter")
        return sealed.get("after", "")

    def send_page(self, handler, texts, next_query, params, limit, limit_headers, fault) -> None:
        headers = dict(limit_headers)
        if next_query is not None and self.behaving("repeat-cursor") and params.get("paginationQuery"):
            next_query = params["paginationQuery"][0]
        link = self.next_link(next_query, params, limit) if next_query else self.last_link(limit)
        if link is not None:
            headers["link" if self.next_link_style != "uppercase" else "LINK"] = link
        if fault and fault.kind == "items":
            texts = list(texts) + list(fault.body)
        if not texts:
            if self.empty_style == "204":
                send(handler, 204, b"", headers)
                return
            body = {"empty-list": '{"data": []}', "null": '{"data": null}'}[self.empty_style]
        elif len(texts) == 1 and self.single_object_data:
            body = '{"data": ' + texts[0] + ', "count": 1}'
        else:
            body = '{"count": ' + str(len(texts)) + ', "data": [' + ", ".join(texts) + "]}"
        payload = body.encode("utf-8", "surrogatepass")
        headers["Content-Type"] = "application/json"
        if self.closing:  # the connection this answer goes out on ends with it
            headers["Connection"] = "close"
            handler.close_connection = True
        if self.gzip and "gzip" in handler.headers.get("Accept-Encoding", ""):
            payload = gzip.compress(payload, 1)
            headers["Content-Encoding"] = "gzip"
        if fault and fault.kind == "garbled":  # every container arrives, then the JSON breaks
            payload = payload[:-2] + b"!}"
        send(handler, 200, payload, headers, truncate=bool(fault and fault.kind == "truncate"))
        with self.lock:
            self.pages_sent += 1

    def next_link(self, next_query: str, params: dict, limit: int) -> str:
        cursor = urlencode({"paginationQuery": next_query})
        style, base = self.next_link_style, f"http://qualysapi.qualys.com{LIST_PATH}"
        if style == "gateway":
            query = urlencode({"filter": params.get("filter", [""])[0], "limit": limit}) + "&" + cursor
            return f"<{self.url}{LIST_PATH}?{query}>; rel=\"next\""
        if style == "relative":
            return f"<{LIST_PATH}?limit={limit}&{cursor}>;rel=next"
        if style == "malformed":  # Qualys's own doc sample has a stray '<' before ';'
            return f"<{base}?limit={limit}&{cursor}<;rel=next"
        if style == "multi":
            return f"<{base}?limit={limit}>; rel=\"prev\", <{base}?limit={limit}&{cursor}>; rel=\"next\""
        if style == "quoted":
            return f"<{base}?limit={limit}&{cursor}>; rel=\"next\""
        if style == "rel-capitals":
            return f"<{base}?limit={limit}&{cursor}>; rel=\"NEXT\""
        if style == "unparseable":  # a parameter without '=': requests' parser gives up on the header
            return f"<{base}?limit={limit}&{cursor}>; rel=next; charset"
        if style == "bad-ipv6":
            return f"<http://[::1{LIST_PATH}?limit={limit}&{cursor}>; rel=next"
        return f"<{base}?limit={limit}&{cursor}>;rel=next"  # sample, uppercase

    def last_link(self, limit: int):
        style, base = self.last_page_style, f"http://qualysapi.qualys.com{LIST_PATH}"
        if style == "empty":
            return ""
        if style == "null":
            return "null"
        if style == "no-next":
            return f"<{base}?limit={limit}>;rel=prev"
        if style == "no-cursor":
            return f"<{base}?limit={limit}>;rel=next"
        if style == "null-cursor":  # the API doc: on the last page the link "shows null"
            return f"<{base}?limit={limit}&paginationQuery=null>;rel=next"
        if style == "unparseable":
            return f"<{base}?limit={limit}>; rel=prev; charset"
        return None


def send(handler, status: int, body: bytes, headers: dict, truncate: bool = False) -> None:
    handler.status_sent = status
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if truncate:
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)
        return
    handler.wfile.write(body)


def send_json(handler, status: int, body, headers=None) -> None:
    send(handler, status, json.dumps(body).encode(), dict(headers or {}, **{"Content-Type": "application/json"}))


def endless_body(handler, status: int, headers: dict, give_up_after: float = 20.0) -> None:
    """Answer with headers, then a body that goes on as fast as it is read, for a long time."""
    handler.close_connection = True
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Type", "text/html")
    handler.end_headers()
    stop, block = time.monotonic() + give_up_after, b"<p>redirecting</p>" * 4096
    try:
        while time.monotonic() < stop:
            handler.wfile.write(block)
    except OSError:
        pass  # the client hung up, as it should


def trickle(handler, seconds: float, headers_too: bool, give_up_after: float = 20.0) -> None:
    """Answer one byte every `seconds`, for a long time: the body (and the headers, if asked) never end."""
    handler.close_connection = True
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
    if headers_too:
        head = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10000
    stop = time.monotonic() + give_up_after
    try:
        handler.wfile.write(head if not headers_too else head[:20])
        handler.wfile.flush()
        position = 0 if not headers_too else 20
        while time.monotonic() < stop:
            time.sleep(seconds)
            handler.wfile.write(head[position:position + 1] if position < len(head) else b"a")
            handler.wfile.flush()
            position += 1
    except OSError:
        pass  # the client hung up, as it should


class QuietServer(ThreadingHTTPServer):
    """The fake's server: threads that never block its exit, and no tracebacks for clients that hang up."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        if hasattr(self.request, "do_handshake"):  # https: the handshake in this thread, bounded
            self.request.settimeout(5)
            try:
                self.request.do_handshake()
            except (OSError, ssl.SSLError):
                self.request.close()
                raise
            self.request.settimeout(None)
        super().setup()
        # Headers and body go out in two writes; without this, Nagle holds a small body back
        # until the client's delayed ACK (40 ms), on every error answer and small page.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def date_time_string(self, timestamp=None):
        """The Date header, by the gateway's own clock (gateway.now), which tests may set."""
        return email.utils.format_datetime(self.server.gateway.now().astimezone(dt.timezone.utc), usegmt=True)

    def do_GET(self):
        parts = urlsplit(self.path)
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        details = DETAILS.match(parts.path)
        if details:
            self.server.gateway.handle_details(self, details["sha"], parse_qs(parts.query), token)
            return
        if parts.path != LIST_PATH:
            send_json(self, 404, {"message": "not found"})
            return
        self.server.gateway.handle_list(self, parse_qs(parts.query, keep_blank_values=True), token)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if urlsplit(self.path).path != AUTH_PATH:
            send_json(self, 404, {"message": "not found"})
            return
        self.server.gateway.handle_auth(self, body)

    def do_HEAD(self):
        send_json(self, 405, {"message": "method not allowed"})


# --- Command line: serve --------------------------------------------------------------------


def demo_gateway(args) -> FakeGateway:
    """A fake gateway with generated weeks, as the command line (or try_it.py) asks for."""
    gateway = FakeGateway(seed=args.seed, vulns_per_container=args.vulns, software_per_vuln=args.software)
    gateway.lag = args.lag
    first_day = dt.date.fromisoformat(args.first_day)
    gateway.generate(args.containers, first_day, first_day + dt.timedelta(days=7 * args.weeks))
    gateway.latency_seconds = args.latency
    if args.rate_limit:
        calls, window = args.rate_limit.split("/")
        gateway.rate_limit = (int(calls), float(window))
    return gateway


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--containers", type=int, default=400)
    parser.add_argument("--first_day", default="2025-09-01")
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--vulns", type=int, default=4, help="most vulnerabilities per container")
    parser.add_argument("--software", type=int, default=2, help="software entries per vulnerability")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each list answer")
    parser.add_argument("--rate_limit", default="", help="CALLS/SECONDS, e.g. 120/60")
    parser.add_argument("--lag", choices=("realistic", "tight"), default="realistic",
                        help="how far updated lags created: as real containers (minutes to weeks), or 0-5 s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", choices=("serve",), default="serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0)
    add_data_options(parser)
    args = parser.parse_args(argv)
    gateway = demo_gateway(args)
    server = QuietServer(("127.0.0.1", args.port), Handler)
    server.gateway = gateway
    gateway._server = server
    print(f"URL {gateway.url} TOKEN {DEMO_TOKEN}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
