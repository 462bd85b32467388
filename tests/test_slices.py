"""A large week in a run of few weeks is fetched as time slices side by side: same files as one
chain would give, whatever --workers is, whole or absent, and small weeks never pay for it."""
import datetime as dt
import filecmp
import json
import re

import weeklycontainerreport as wcr
from conftest import files, ms, week_range
from fake_gateway import Fault

WEEK = week_range("2025-09-01", "2025-09-08")
WEEK_FILE = "2025-09-01_2025-09-08.json"
START, END = ms(2025, 9, 1), ms(2025, 9, 8)


def stored(folder, name=WEEK_FILE):
    return json.loads((folder / "weekly_reports" / name).read_text())


def ranges(calls):
    """The created ranges the calls asked for, in order of first appearance."""
    seen = []
    for call in calls:
        low, high = map(int, re.match(r"created:\[(\d+) \.\.\. (\d+)\]", call["params"]["filter"][0]).groups())
        if (low, high) not in seen:
            seen.append((low, high))
    return seen


def test_a_large_week_is_fetched_as_slices_that_cover_it_exactly_once(run, gateway, workdir):
    gateway.generate(1200, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    assert run(*WEEK) == 0
    asked = ranges(gateway.list_calls())
    assert asked[0] == (START, END - 1)  # the first page of the whole week said there was more
    slices = sorted(asked[1:])
    assert len(slices) == 8
    assert slices[0][0] == START and slices[-1][1] == END - 1
    assert all(later[0] == earlier[1] + 1 for earlier, later in zip(slices, slices[1:]))  # no gap, no overlap
    uuids = [container["uuid"] for container in stored(workdir)]
    assert sorted(uuids) == sorted(record.uuid for record in gateway.records)
    log = (workdir / "logs" / files(workdir / "logs")[0]).read_text()
    assert "fetching it as 8 time slices side by side" in log and "in 8 slices" in log


def test_containers_on_the_slice_edges_land_in_exactly_one_slice(run, gateway, workdir):
    gateway.generate(300, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    edges = [low for low, _ in wcr.slice_bounds(START, END, 8)] + [END]
    for edge in edges:
        gateway.add_container(edge, name=f"at-{edge}")
        gateway.add_container(edge - 1, name=f"before-{edge}")
    assert run(*WEEK) == 0
    names = [container["name"] for container in stored(workdir)]
    inside = [f"at-{edge}" for edge in edges[:-1]] + [f"before-{edge}" for edge in edges[1:]]
    assert sorted(name for name in names if name.startswith(("at-", "before-"))) == sorted(inside)
    assert len(names) == len(set(names)) == 300 + len(inside)


def test_a_split_week_gives_the_same_bytes_with_one_worker_and_with_eight(run, gateway, workdir):
    gateway.generate(1000, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    gateway.latency_seconds = 0.005
    assert run(*WEEK, "--workers", "1", "--output_dir", "one") == 0
    assert run(*WEEK, "--workers", "8", "--output_dir", "eight") == 0
    assert run(*WEEK, "--workers", "8", "--slices", "1", "--output_dir", "chain") == 0
    for folder in ("weekly_reports", "weekly_csv_reports"):
        names = files(workdir / "one" / folder)
        _, mismatch, errors = filecmp.cmpfiles(workdir / "one" / folder, workdir / "eight" / folder, names,
                                               shallow=False)
        assert names and mismatch == [] and errors == []
    sliced, chained = stored(workdir / "one"), stored(workdir / "chain")
    assert sorted(c["uuid"] for c in sliced) == sorted(c["uuid"] for c in chained)  # the same containers
    created = [int(container["created"]) for container in sliced]
    bounds = wcr.slice_bounds(START, END, 8)
    slice_of = [next(index for index, (low, high) in enumerate(bounds) if low <= stamp < high) for stamp in created]
    assert slice_of == sorted(slice_of)  # slices in time order, each in the gateway's order


def test_a_failed_slice_fails_its_whole_week_writes_nothing_and_stops_its_other_slices(run, gateway, workdir):
    gateway.generate(4000, dt.date(2025, 9, 1), dt.date(2025, 9, 8))  # 4 pages a slice
    gateway.generate(50, dt.date(2025, 9, 8), dt.date(2025, 9, 15))
    gateway.latency_seconds = 0.01
    third_slice = wcr.slice_bounds(START, END, 4)[2][0]
    gateway.faults = [Fault("status", status=404, week_start_ms=third_slice, times=-1)]
    assert run(*week_range("2025-09-01", "2025-09-15")) == 1
    first_week = [call for call in gateway.list_calls() if int(call["params"]["filter"][0][9:22]) < ms(2025, 9, 8)]
    assert len(first_week) < 1 + 4 * 4 // 2  # the other slices stopped soon after, not 4 pages each
    assert files(workdir / "weekly_reports") == ["2025-09-08_2025-09-15.json"]
    assert files(workdir / "weekly_csv_reports") == ["2025-09-08_2025-09-15.csv"]
    assert files(workdir / "temp_reports") == [".lock"]
    log = (workdir / "logs" / files(workdir / "logs")[0]).read_text()
    assert "2025-09-01..2025-09-08 FAILED: HTTP 404" in log


def test_one_page_weeks_cost_one_call_each_and_a_split_costs_few_extra(run, gateway, workdir):
    gateway.generate(20 * 100, dt.date(2025, 1, 6), dt.date(2025, 5, 26))  # 20 weeks of 100 containers
    assert run(*week_range("2025-01-06", "2025-05-26")) == 0
    assert len(gateway.list_calls()) == 20
    gateway.calls.clear()
    assert run(*week_range("2025-01-06", "2025-01-20"), "--output_dir", "two") == 0  # 4 slices each if needed
    assert len(gateway.list_calls()) == 2
    gateway.generate(1000, dt.date(2025, 6, 2), dt.date(2025, 6, 9))
    gateway.calls.clear()
    assert run(*week_range("2025-06-02", "2025-06-09"), "--output_dir", "split") == 0
    assert len(gateway.list_calls()) <= 1 + 8 + 4 + 1  # the first page, then 8 slices of about 1.5 pages


def test_a_container_the_gateway_serves_in_two_slices_is_kept_once(run, gateway, workdir):
    gateway.generate(300, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    gateway.ignore_ranges = True  # every slice gets the whole week: a gateway bug, not a lost week
    assert run(*WEEK) == 0
    uuids = [container["uuid"] for container in stored(workdir)]
    assert len(uuids) == len(set(uuids)) == 300
    assert run(*WEEK, "--slices", "1", "--output_dir", "chain") == 0

    def csv_lines(folder):
        return sorted((folder / "weekly_csv_reports" / "2025-09-01_2025-09-08.csv").read_bytes().splitlines())

    assert csv_lines(workdir) == csv_lines(workdir / "chain")  # each container's rows once, no more
    log = (workdir / "logs" / files(workdir / "logs")[0]).read_text()
    assert "A container came in two slices of one week; keeping its first copy" in log


def test_a_page_that_breaks_after_its_containers_is_rolled_back_before_the_retry(run, gateway, workdir):
    for number in range(3):  # no uuid: de-duplication could not hide a page written twice
        gateway.add_raw(ms(2025, 9, 2) + number, f'{{"name": "no-uuid-{number}"}}')
    gateway.faults = [Fault("garbled")]
    assert run(*WEEK) == 0
    assert [container["name"] for container in stored(workdir)] == ["no-uuid-0", "no-uuid-1", "no-uuid-2"]
    csv_text = (workdir / "weekly_csv_reports" / "2025-09-01_2025-09-08.csv").read_bytes().decode("utf-8-sig")
    assert len(csv_text.splitlines()) == 1 + 3


def test_dry_run_says_how_many_slices_a_large_week_would_take(workdir, capsys):
    assert wcr.main(["--dry_run", *week_range("2025-09-01", "2025-09-15")]) == 0
    assert "fetched as 4 time slices side by side" in capsys.readouterr().out
