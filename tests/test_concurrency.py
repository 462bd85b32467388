"""Several weeks at once: the same files whatever the worker count, and failures kept apart."""
import datetime as dt
import filecmp

from conftest import files, ms, week_range
from fake_gateway import Fault

FOUR_WEEKS = week_range("2025-09-01", "2025-09-29") + ["--slices", "1"]  # weeks side by side, each one chain


def fill(gateway):
    gateway.generate(1400, dt.date(2025, 9, 1), dt.date(2025, 9, 29))


def test_one_worker_and_four_workers_write_identical_files(run, gateway, workdir):
    fill(gateway)
    gateway.latency_seconds = 0.01
    assert run(*FOUR_WEEKS, "--workers", "1", "--output_dir", "one") == 0
    assert run(*FOUR_WEEKS, "--workers", "4", "--output_dir", "four") == 0
    for folder in ("weekly_reports", "weekly_csv_reports"):
        names = files(workdir / "one" / folder)
        assert len(names) == 4 and names == files(workdir / "four" / folder)
        _, mismatch, errors = filecmp.cmpfiles(workdir / "one" / folder, workdir / "four" / folder, names,
                                               shallow=False)
        assert mismatch == [] and errors == []


def test_pages_of_different_weeks_interleave_and_each_week_stays_whole(run, gateway, workdir):
    fill(gateway)
    gateway.latency_seconds = 0.03
    assert run(*FOUR_WEEKS, "--workers", "4") == 0
    starts = [call["params"]["filter"][0] for call in gateway.list_calls()]
    switches = sum(1 for before, after in zip(starts, starts[1:]) if before != after)
    assert switches > len(set(starts))  # not one week after another
    assert len(files(workdir / "weekly_reports")) == 4


def test_a_failing_week_does_not_block_or_corrupt_the_others(run, gateway, workdir):
    fill(gateway)
    gateway.latency_seconds = 0.02
    gateway.faults = [Fault("status", status=503, times=-1, week_start_ms=ms(2025, 9, 15), with_cursor=True)]
    assert run(*FOUR_WEEKS, "--workers", "4") == 1
    names = files(workdir / "weekly_reports")
    assert len(names) == 3 and "2025-09-15_2025-09-22.json" not in names
    assert run(*FOUR_WEEKS, "--workers", "4", "--output_dir", "reference") == 1
    gateway.faults = []
    assert run(*FOUR_WEEKS, "--workers", "4") == 0
    _, mismatch, errors = filecmp.cmpfiles(workdir / "weekly_reports", workdir / "reference" / "weekly_reports",
                                           names, shallow=False)
    assert mismatch == [] and errors == []
