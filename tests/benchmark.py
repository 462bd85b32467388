#!/usr/bin/env python3
"""Benchmark weeklycontainerreport.py against the fake gateway on loopback; prints ratios.

    python3 tests/benchmark.py            # the full run (a few minutes)
    python3 tests/benchmark.py --quick    # one repetition, smaller weeks, for a first look

1. The big open week: one week of 24,000 containers (96 pages), the rate limit scaled to 120
   calls per 6 s (the real latency-to-rate ratio, ten times faster), in seven shapes: spread
   evenly or in a burst (two widths and places at 0.2 s a page, three at 0.6 s), at 0.2 s or
   0.6 s a page (12 requests must be in flight): wall time / ideal (pages / allowed rate),
   calls and 429s; for the even week also with --workers 1 and unsliced (--slices 1). And a
   long week, 300 pages at 0.6 s a page (a split must not leave one chain far longer than the
   others). The fake renders every container before the timed runs, so they time the exporter.
2. Backfill: 8 weeks of 1,100 containers at 0.4 s per page, 20 calls per 2 s: wall time /
   ideal (the fewest pages / the allowed rate), and the share of calls that drew a 429.
3. Small weeks: the list calls of 20 one-page weeks, and of a 2- and a 10-page week alone.
4. Peak RSS of the exporting process itself (its own VmHWM), for a week of 3,000 and of
   12,000 large containers, and for --workers 1, 4 and 8 on the big one.
5. CPU of an unsliced export / a bare json.loads of the same pages, timed in a clean child.
6. A snapshot of 20,000 running containers (of 40,000, created over the last 90 days; 300
   images, each container with its image's QIDs), 0.2 s a page, 120 calls / 6 s: wall / ideal
   for --snapshot_only with the QIDs known (and for the first, which learns them from details),
   and the comparison with the day before, in a clean child: its CPU / a bare json.loads of the two snapshots, and its peak RSS
   for 5,000 and 20,000 running containers (flat: it holds image x QID pairs, not containers).

Repetitions give medians. Not collected by pytest (its name does not start with test_);
never a timed assertion.
"""
import argparse
import datetime as dt
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

from fake_gateway import DEMO_TOKEN, SCRIPT, FakeGateway, Fault, make_vulnerabilities

FIRST_DAY = dt.date(2025, 9, 1)
MiB = 1024 * 1024

# The child reports its own peak RSS (VmHWM of its process image). ru_maxrss from wait4 would
# not do: Linux folds the parent's RSS at fork/exec time into it, and the parent holds the fake.
# The child may switch a rule off first (--patch Pacer.BURST_SHARE=0): the script's own classes, patched.
PEAK_PROBE = (
    "import os, sys\n"
    "sys.path.insert(0, os.path.dirname(sys.argv[1]))\n"
    "import weeklycontainerreport as script\n"
    "for patch in filter(None, os.environ.get('BENCHMARK_PATCH', '').split(';')):\n"
    "    name, value = patch.split('=')\n"
    "    owner, attribute = name.rsplit('.', 1)\n"
    "    setattr(getattr(script, owner), attribute, eval(value))\n"
    "code = script.main(sys.argv[2:])\n"
    "peak = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')]\n"
    "sys.stderr.write('PEAK_RSS_KB %s\\n' % peak[0])\n"
    "sys.exit(code)\n"
)
PATCHES = []  # --patch: rules switched off (or changed) in every timed child

# A clean child times json.loads of the pages a file holds (length-prefixed), so that the
# parent's big heap (the fake and its data) does not slow the collector and flatter the ratio.
LOADS_PROBE = (
    "import json, sys, time\n"
    "pages, data = [], open(sys.argv[1], 'rb').read()\n"
    "position = 0\n"
    "while position < len(data):\n"
    "    size = int.from_bytes(data[position:position + 8], 'big')\n"
    "    pages.append(data[position + 8:position + 8 + size])\n"
    "    position += 8 + size\n"
    "best = None\n"
    "for _ in range(3):\n"
    "    started = time.process_time()\n"
    "    for page in pages:\n"
    "        json.loads(page)\n"
    "    took = time.process_time() - started\n"
    "    best = took if best is None else min(best, took)\n"
    "print(best)\n"
)


# A clean child compares two snapshots as the script does after taking one (no file written): its CPU
# time and its own peak RSS.
COMPARE_PROBE = (
    "import os, sys, time, types, datetime as dt\n"
    "sys.path.insert(0, os.path.dirname(sys.argv[1]))\n"
    "import weeklycontainerreport as script\n"
    "layout = script.Layout(sys.argv[2])\n"
    "files = script.snapshot_files(layout, dt.date.fromisoformat(sys.argv[3]), '')\n"
    "learner = types.SimpleNamespace(catalog=script.QidCatalog(os.path.join(sys.argv[2], script.CATALOG_NAME)))\n"
    "started = time.process_time()\n"
    "result = script.write_changes(files, learner, layout.temp, write=False)\n"
    "cpu = time.process_time() - started\n"
    "peak = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')]\n"
    "print(cpu, int(peak[0]) * 1024, result.running, result.since)\n"
)


def run_exporter(url, folder, first_day, end_day, *extra):
    """Run the exporter as a child; return (exit code, wall seconds, CPU seconds, peak RSS bytes)."""
    dates = ["--start_date", first_day.isoformat(), "--end_date", end_day.isoformat()] if first_day else []
    command = [sys.executable, "-c", PEAK_PROBE, SCRIPT, url, *dates, "--output_dir", folder, *extra]
    started = time.monotonic()
    child = subprocess.Popen(command, env=dict(os.environ, QUALYS_TOKEN=DEMO_TOKEN, BENCHMARK_PATCH=";".join(PATCHES)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = child.stderr.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - started
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    peak_kb = int(err.rsplit("PEAK_RSS_KB ", 1)[1].split()[0]) if "PEAK_RSS_KB " in err else 0
    return code, wall, usage.ru_utime + usage.ru_stime, peak_kb * 1024


def timed_run(gateway, weeks: int, *extra) -> dict:
    """One export against the gateway into a fresh folder; its calls, 429s, wall time, and the time
    to the last page's answer (paging; the rest is writing the files, on this machine's CPU)."""
    before_calls, before_429 = len(gateway.list_calls()), gateway.rate_limited
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        code, wall, _, _ = run_exporter(gateway.url, folder, FIRST_DAY, FIRST_DAY + dt.timedelta(days=7 * weeks),
                                        *extra)
    calls = gateway.list_calls()[before_calls:]
    limited = gateway.rate_limited - before_429
    paging = max(call["at"] for call in calls) + gateway.latency_seconds - started if calls else wall
    return {"code": code, "wall": wall, "paging": paging, "calls": len(calls), "share_429": limited / max(len(calls), 1)}


def median_of(runs: list, key: str) -> float:
    return statistics.median(run[key] for run in runs)


# The open week's shapes: (what, seconds per page, burst as (share, hours after Monday 00:00, hours) or None).
SHAPES = (
    ("even, 0.2 s a page", 0.2, None),
    ("80% in 6 h (Tue 10:00), 0.2 s a page", 0.2, (0.8, 34, 6)),
    ("60% in 1 h (Sun 20:00), 0.2 s a page", 0.2, (0.6, 164, 1)),
    ("even, 0.6 s a page", 0.6, None),
    ("80% in 6 h (Tue 10:00), 0.6 s a page", 0.6, (0.8, 34, 6)),
    ("60% in 1 h (Sun 20:00), 0.6 s a page", 0.6, (0.6, 164, 1)),
    ("90% in 12 h (Thu 08:00), 0.6 s a page", 0.6, (0.9, 80, 12)),
)


def open_week_gateway(containers: int, latency: float, burst, lag: str = "realistic") -> FakeGateway:
    """The big open week: its containers generated as the gateway would hold them at the week's end
    (no updated later than that), 1 in 100 of them moving on in updated once served (re-served)."""
    gateway = FakeGateway(vulns_per_container=1, software_per_vuln=1)
    gateway.lag = lag
    end_day = FIRST_DAY + dt.timedelta(days=7)
    gateway.now = lambda: dt.datetime(end_day.year, end_day.month, end_day.day, tzinfo=dt.timezone.utc)
    if burst:
        gateway.generate_burst(containers, FIRST_DAY, end_day, *burst)
    else:
        gateway.generate(containers, FIRST_DAY, end_day)
    gateway.now = lambda: dt.datetime.now(dt.timezone.utc)
    gateway.latency_seconds = latency
    gateway.rate_limit = (120, 6.0)
    gateway.render()
    gateway.faults = [Fault("touch", times=-1, uuids=frozenset(record.uuid for record in gateway.records[::100]))]
    return gateway


def big_open_week(repetitions: int, containers: int, lags) -> None:
    pages = math.ceil(containers / 250)
    ideal = pages / (120 / 6.0)
    print(f"1. The big open week: {containers} containers ({pages} pages), 120 calls / 6 s; ideal {ideal:.1f}s")
    for lag in lags:
        for number, (what, latency, burst) in enumerate(SHAPES):
            configs = [("defaults", ())]
            if number == 0 and lag == lags[0]:
                configs += [("--workers 1", ("--workers", "1")), ("--slices 1", ("--slices", "1"))]
            gateway = open_week_gateway(containers, latency, burst, lag)
            with gateway:
                for label, extra in configs:
                    runs = []
                    for _ in range(repetitions):
                        gateway.faults[0].uuids = frozenset(record.uuid for record in gateway.records[::100])
                        runs.append(timed_run(gateway, 1, *extra))
                        time.sleep(gateway.rate_limit[1])  # a fresh window for the next run
                    print(f"   {lag:9} {what:38} {label:12} exit {runs[0]['code']}: wall / ideal = "
                          f"{median_of(runs, 'wall') / ideal:.2f}x (paging {median_of(runs, 'paging') / ideal:.2f}x), "
                          f"{median_of(runs, 'calls'):.0f} calls, 429s = {median_of(runs, 'share_429'):.1%}",
                          flush=True)


def long_week(repetitions: int, containers: int) -> None:
    pages = math.ceil(containers / 250)
    ideal = pages / (120 / 6.0)
    with open_week_gateway(containers, 0.6, None) as gateway:
        runs = []
        for _ in range(repetitions):
            runs.append(timed_run(gateway, 1))
            time.sleep(gateway.rate_limit[1])
    print(f"   a long week, {pages} pages, even, 0.6 s a page: exit {runs[0]['code']}: wall / ideal = "
          f"{median_of(runs, 'wall') / ideal:.2f}x, {median_of(runs, 'calls'):.0f} calls, "
          f"429s = {median_of(runs, 'share_429'):.1%}")


def backfill(repetitions: int) -> None:
    gateway = FakeGateway(vulns_per_container=2, software_per_vuln=1)
    gateway.generate(1100 * 8, FIRST_DAY, FIRST_DAY + dt.timedelta(days=56))
    gateway.latency_seconds = 0.4
    gateway.rate_limit = (20, 2.0)
    gateway.render()
    ideal = 8 * math.ceil(1100 / 250) / (gateway.rate_limit[0] / gateway.rate_limit[1])
    print(f"2. Backfill: 8 weeks of 1,100 containers, 0.4 s per page, 20 calls / 2 s; ideal {ideal:.1f}s")
    with gateway:
        for label, extra in (("defaults", ()), ("--workers 1", ("--workers", "1"))):
            runs = []
            for _ in range(repetitions):
                runs.append(timed_run(gateway, 8, *extra))
                time.sleep(gateway.rate_limit[1])
            print(f"   {label:12} exit {runs[0]['code']}: wall / ideal = {median_of(runs, 'wall') / ideal:.2f}x, "
                  f"{median_of(runs, 'calls'):.0f} calls, 429s = {median_of(runs, 'share_429'):.1%}")


def small_weeks() -> None:
    gateway = FakeGateway(vulns_per_container=2, software_per_vuln=1)
    gateway.generate(20 * 120, FIRST_DAY, FIRST_DAY + dt.timedelta(days=7 * 20))
    with gateway:
        one_run = timed_run(gateway, 20)
        singles = [timed_run(gateway, 1) for _ in range(1)]  # a daily run: one open week alone
    print(f"3. Small weeks: 20 one-page weeks cost {one_run['calls']} list calls (exit {one_run['code']}); "
          f"one such week alone costs {singles[0]['calls']}")
    for pages in (2, 10):  # a daily run of one week of that many pages, at 0.2 s a page and 120 calls / 6 s
        with open_week_gateway(250 * pages - 100, 0.2, None) as gateway:
            run = timed_run(gateway, 1)
        print(f"   a {pages}-page week alone (a daily run) costs {run['calls']} list calls (exit {run['code']})")


def write_pages(gateway, first_day, end_day, path: str) -> int:
    """Store the pages of one unsliced week, as the gateway serves them, for the json.loads child."""
    query = (f"created:[{int(dt.datetime(first_day.year, first_day.month, first_day.day, tzinfo=dt.timezone.utc).timestamp()) * 1000}"
             f" ... {int(dt.datetime(end_day.year, end_day.month, end_day.day, tzinfo=dt.timezone.utc).timestamp()) * 1000 - 1}]")
    from fake_gateway import parse_qql
    predicate, cursor, count = parse_qql(query), None, 0
    with open(path, "wb") as stream:
        while True:
            texts, cursor = gateway.page(predicate, cursor, 250, query)
            body = ('{"count": ' + str(len(texts)) + ', "data": [' + ", ".join(texts) + "]}").encode()
            stream.write(len(body).to_bytes(8, "big") + body)
            count += 1
            if cursor is None:
                return count


def memory_and_cpu(repetitions: int, sizes) -> None:
    print("4. Peak RSS and 5. CPU, one week of large containers (100 software entries per QID, up to 4 QIDs)")
    results = {}
    for containers in sizes:
        gateway = FakeGateway(vulns_per_container=4, software_per_vuln=100)
        end_day = FIRST_DAY + dt.timedelta(days=7)
        gateway.generate(containers, FIRST_DAY, end_day)
        gateway.rate_limit = None
        gateway.render()
        configs = [("defaults", ())] + ([("--workers 1", ("--workers", "1")), ("--workers 4", ("--workers", "4")),
                                          ("--workers 8", ("--workers", "8"))] if containers == sizes[-1] else [])
        with gateway, tempfile.TemporaryDirectory() as folder:
            for label, extra in configs:
                peaks = []
                for _ in range(repetitions):
                    code, _, _, rss = run_exporter(gateway.url, os.path.join(folder, "out"), FIRST_DAY, end_day, *extra)
                    subprocess.run(["rm", "-rf", os.path.join(folder, "out")])
                    peaks.append(rss)
                results[(containers, label)] = statistics.median(peaks)
                print(f"   {containers:>6} containers, {label:12}: exit {code}, peak RSS "
                      f"{results[(containers, label)] / MiB:.0f} MiB")
            cpus = []
            for _ in range(repetitions):
                _, _, cpu, _ = run_exporter(gateway.url, os.path.join(folder, "cpu"), FIRST_DAY, end_day,
                                            "--workers", "1", "--slices", "1")
                json_bytes = os.path.getsize(os.path.join(folder, "cpu", "weekly_reports", f"{FIRST_DAY}_{end_day}.json"))
                subprocess.run(["rm", "-rf", os.path.join(folder, "cpu")])
                cpus.append(cpu)
            _, _, startup, _ = run_exporter(gateway.url, os.path.join(folder, "dry"), FIRST_DAY, end_day, "--dry_run")
            pages_path = os.path.join(folder, "pages.bin")
            write_pages(gateway, FIRST_DAY, end_day, pages_path)
            loads = float(subprocess.run([sys.executable, "-c", LOADS_PROBE, pages_path], capture_output=True,
                                         text=True, check=True).stdout)
        cpu = statistics.median(cpus) - startup
        print(f"   {containers:>6} containers ({json_bytes / MiB:.0f} MiB of JSON): CPU / json.loads = "
              f"{cpu / loads:.2f}x (export {cpu:.2f}s after {startup:.2f}s of start-up, json.loads {loads:.2f}s)")
    if len(sizes) == 2:
        print(f"   RSS ratio {sizes[1]} / {sizes[0]} containers (defaults) = "
              f"{results[(sizes[1], 'defaults')] / results[(sizes[0], 'defaults')]:.2f}x")


def snapshot_gateway(running: int, images: int = 300) -> FakeGateway:
    """About twice `running` containers created over the last 90 days (about half RUNNING), sharing `images`
    images; a container has its image's QIDs, as containers of one image do."""
    gateway = FakeGateway(vulns_per_container=4, software_per_vuln=1)
    today = dt.datetime.now(dt.timezone.utc).date()
    gateway.generate(2 * running, today - dt.timedelta(days=90), today)
    for record in gateway.records:
        image = record.index % images
        record.core.update(imageId=f"{image:012x}", imageSha=f"{image:064x}")
        record.vulnerabilities = make_vulnerabilities(gateway.seed, image, record.created_ms, 4, 1)
        record.index = -1  # served with the image's vulnerabilities
    gateway.latency_seconds, gateway.rate_limit = 0.2, (120, 6.0)
    gateway.render()
    return gateway


def snapshot(repetitions: int, sizes) -> None:
    today = dt.datetime.now(dt.timezone.utc).date()
    print(f"6. A snapshot: {sizes[-1]} of {2 * sizes[-1]} containers running, 300 images, 0.2 s a page, "
          "120 calls / 6 s")
    peaks = {}
    for running in sizes:
        with snapshot_gateway(running) as gateway, tempfile.TemporaryDirectory() as folder:
            pages = math.ceil(sum(record.core["state"] == "RUNNING" for record in gateway.records) / 250)
            ideal = pages / (120 / 6.0)
            out = os.path.join(folder, "out")
            _, cold, _, _ = run_exporter(gateway.url, out, None, None, "--snapshot_only")  # it learns the QIDs too
            time.sleep(gateway.rate_limit[1])
            runs = []
            for _ in range(repetitions if running == sizes[-1] else 1):  # a daily run: the QIDs known
                subprocess.run(["rm", "-rf", os.path.join(out, "snapshots")])
                calls = len(gateway.list_calls())
                code, wall, _, _ = run_exporter(gateway.url, out, None, None, "--snapshot_only")
                runs.append((wall, len(gateway.list_calls()) - calls))
                time.sleep(gateway.rate_limit[1])
            wall, calls = statistics.median(run[0] for run in runs), statistics.median(run[1] for run in runs)
            taken = os.path.join(out, "snapshots", f"{today}.json")
            os.replace(taken, os.path.join(out, "snapshots", f"{today - dt.timedelta(days=1)}.json"))
            code, _, _, _ = run_exporter(gateway.url, out, None, None, "--snapshot_only")  # today's, compared
            cpu, peak, found, since = subprocess.run(
                [sys.executable, "-c", COMPARE_PROBE, SCRIPT, out, today.isoformat()], capture_output=True,
                text=True, check=True).stdout.split()
            both = os.path.join(folder, "both.bin")
            with open(both, "wb") as stream:
                for day in (today, today - dt.timedelta(days=1)):
                    body = open(os.path.join(out, "snapshots", f"{day}.json"), "rb").read()
                    stream.write(len(body).to_bytes(8, "big") + body)
            loads = float(subprocess.run([sys.executable, "-c", LOADS_PROBE, both], capture_output=True, text=True,
                                         check=True).stdout)
        peaks[running] = int(peak)
        print(f"   {found} running ({pages} pages): exit {code}, wall / ideal = {wall / ideal:.2f}x "
              f"(the first, learning its QIDs: {cold / ideal:.2f}x), {calls:.0f} list calls; the comparison with {since}: CPU / json.loads = {float(cpu) / loads:.2f}x "
              f"({float(cpu):.2f}s), peak RSS {int(peak) / MiB:.0f} MiB", flush=True)
    if len(sizes) == 2:
        print(f"   comparison RSS ratio {sizes[1]} / {sizes[0]} running = {peaks[sizes[1]] / peaks[sizes[0]]:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one repetition and smaller weeks")
    parser.add_argument("--only", type=int, choices=(1, 2, 3, 4, 6), help="run one part (4 is RSS and CPU)")
    parser.add_argument("--repetitions", type=int, default=0, help="repetitions of each timed run")
    parser.add_argument("--lag", choices=("realistic", "tight"), action="append",
                        help="the lag of the open week's updated behind created (default: both, realistic first)")
    parser.add_argument("--patch", action="append", default=[], metavar="CLASS.ATTRIBUTE=VALUE",
                        help="switch a rule of the script off in every child, e.g. Pacer.BURST_SHARE=0")
    args = parser.parse_args()
    PATCHES.extend(args.patch)
    repetitions = 1 if args.quick else 3
    if args.repetitions:
        repetitions = args.repetitions
    parts = {
        1: lambda: (big_open_week(repetitions, 6000 if args.quick else 24000, args.lag or ("realistic", "tight")),
                    long_week(repetitions, 25000 if args.quick else 75000)),
        2: lambda: backfill(repetitions),
        3: small_weeks,
        4: lambda: memory_and_cpu(1 if args.quick else 2, (1000, 4000) if args.quick else (3000, 12000)),
        6: lambda: snapshot(repetitions, (1250, 5000) if args.quick else (5000, 20000)),
    }
    for number, part in parts.items():
        if args.only in (None, number):
            part()
    return 0


if __name__ == "__main__":
    sys.exit(main())
