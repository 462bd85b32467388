#!/usr/bin/env python3
"""Benchmark weeklycontainerreport.py against the fake gateway on loopback; prints ratios.

    python3 tests/benchmark.py            # the full run (a minute or two)
    python3 tests/benchmark.py --quick    # smaller weeks, for a first look

1. Backfill time against the ideal: an 8-week backfill with per-page latency and a
   scaled-down rate limit; wall time / (pages / allowed rate) and the share of 429s,
   for --workers 4 and --workers 1.
2. Peak RSS of the exporting process for two week sizes 4x apart, and their ratio.
3. CPU seconds per 10,000 containers, against a bare json.loads of the same pages.

Not collected by pytest (its name does not start with test_); never a timed assertion.
"""
import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from urllib.parse import parse_qs, urlsplit

import requests

from fake_gateway import DEMO_TOKEN, LIST_PATH, SCRIPT, FakeGateway

FIRST_DAY = dt.date(2025, 9, 1)
MiB = 1024 * 1024


# The child reports its own peak RSS (VmHWM of its process image). ru_maxrss from wait4 would
# not do: Linux folds the parent's RSS at fork/exec time into it, and the parent holds the fake.
PEAK_PROBE = (
    "import runpy, sys\n"
    "sys.argv = sys.argv[1:]\n"
    "code = 0\n"
    "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "except SystemExit as exc:\n    code = exc.code\n"
    "peak = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')]\n"
    "sys.stderr.write('PEAK_RSS_KB %s\\n' % peak[0])\n"
    "sys.exit(code)\n"
)


def run_exporter(url, folder, first_day, end_day, *extra):
    """Run the exporter as a child; return (exit code, wall seconds, CPU seconds, peak RSS bytes)."""
    command = [sys.executable, "-c", PEAK_PROBE, SCRIPT, url, "--start_date", first_day.isoformat(),
               "--end_date", end_day.isoformat(), "--output_dir", folder, *extra]
    started = time.monotonic()
    child = subprocess.Popen(command, env=dict(os.environ, QUALYS_TOKEN=DEMO_TOKEN),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = child.stderr.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - started
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    peak_kb = int(err.rsplit("PEAK_RSS_KB ", 1)[1].split()[0]) if "PEAK_RSS_KB " in err else 0
    return code, wall, usage.ru_utime + usage.ru_stime, peak_kb * 1024


def backfill(workers: int, per_week: int) -> dict:
    """Measure an 8-week backfill against the rate limit's ideal."""
    gateway = FakeGateway(vulns_per_container=2, software_per_vuln=1)
    gateway.generate(per_week * 8, FIRST_DAY, FIRST_DAY + dt.timedelta(days=56))
    gateway.latency_seconds = 0.4
    gateway.rate_limit = (20, 2.0)
    with gateway, tempfile.TemporaryDirectory() as folder:
        code, wall, _, _ = run_exporter(gateway.url, folder, FIRST_DAY, FIRST_DAY + dt.timedelta(days=56),
                                        "--workers", str(workers))
        calls = len(gateway.list_calls())
        pages = calls - gateway.rate_limited
        ideal = pages / (gateway.rate_limit[0] / gateway.rate_limit[1])
        return {"code": code, "wall": wall, "pages": pages, "ratio": wall / ideal,
                "share_429": gateway.rate_limited / max(calls, 1)}


def raw_pages(url: str, first_day: dt.date, end_day: dt.date) -> list:
    """Fetch a week's pages as raw bytes, as the exporter would see them."""
    start_ms = int(dt.datetime(first_day.year, first_day.month, first_day.day, tzinfo=dt.timezone.utc).timestamp())
    end_ms = int(dt.datetime(end_day.year, end_day.month, end_day.day, tzinfo=dt.timezone.utc).timestamp())
    params = {"filter": f"created:[{start_ms * 1000} ... {end_ms * 1000 - 1}]", "limit": 250}
    pages = []
    with requests.Session() as session:
        while True:
            response = session.get(url + LIST_PATH, params=params, headers={"Authorization": f"Bearer {DEMO_TOKEN}"})
            pages.append(response.content)
            link = response.links.get("next", {}).get("url")
            if not link or not json.loads(response.content).get("data"):
                return pages
            params["paginationQuery"] = parse_qs(urlsplit(link).query)["paginationQuery"][0]


def loads_seconds(pages) -> float:
    """CPU seconds for a bare json.loads of every page."""
    started = time.process_time()
    for page in pages:
        json.loads(page)
    return time.process_time() - started


def big_week(containers: int, software: int) -> dict:
    """Export one week of large containers; measure RSS and CPU, and json.loads of the same pages."""
    gateway = FakeGateway(vulns_per_container=4, software_per_vuln=software)
    end_day = FIRST_DAY + dt.timedelta(days=7)
    gateway.generate(containers, FIRST_DAY, end_day)
    gateway.rate_limit = None
    with gateway, tempfile.TemporaryDirectory() as folder:
        code, wall, cpu, rss = run_exporter(gateway.url, folder, FIRST_DAY, end_day, "--workers", "1")
        _, _, startup_cpu, _ = run_exporter(gateway.url, folder, FIRST_DAY, end_day, "--dry_run")
        json_bytes = os.path.getsize(os.path.join(folder, "weekly_reports", f"{FIRST_DAY}_{end_day}.json"))
        pages = raw_pages(gateway.url, FIRST_DAY, end_day)
    loads_cpu = min(loads_seconds(pages) for _ in range(3))
    return {"code": code, "containers": containers, "rss": rss, "cpu": cpu - startup_cpu, "startup_cpu": startup_cpu,
            "loads_cpu": loads_cpu, "json_mib": json_bytes / MiB}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller weeks (1,000 and 4,000 containers)")
    args = parser.parse_args()
    small = 1000 if args.quick else 3000
    software = 100

    print("1. Backfill: 8 weeks, 0.4 s per page, rate limit 20 calls / 2 s")
    for workers in (4, 1):
        result = backfill(workers, per_week=1100)
        print(f"   --workers {workers}: exit {result['code']}, {result['pages']} pages, "
              f"wall / ideal = {result['ratio']:.2f}x, 429s = {result['share_429']:.1%}")

    print(f"2. Peak RSS and 3. CPU, one week of large containers ({software} software entries per QID, up to 4 QIDs)")
    sizes = [big_week(small, software), big_week(small * 4, software)]
    for result in sizes:
        print(f"   {result['containers']:>6} containers ({result['json_mib']:.0f} MiB of JSON): exit {result['code']}, "
              f"peak RSS {result['rss'] / MiB:.0f} MiB, CPU / json.loads = {result['cpu'] / result['loads_cpu']:.2f}x, "
              f"CPU per 10,000 containers = {result['cpu'] / result['containers'] * 10000:.1f}s "
              f"(json.loads {result['loads_cpu'] / result['containers'] * 10000:.1f}s; "
              f"start-up {result['startup_cpu']:.2f}s not counted)")
    print(f"   RSS ratio {sizes[1]['containers']} / {sizes[0]['containers']} containers = "
          f"{sizes[1]['rss'] / sizes[0]['rss']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
