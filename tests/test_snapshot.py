"""The daily snapshot: what runs now (state:RUNNING, and the filter), and what changed since the snapshot
before, keyed by image and QID; whole or absent like a week, and derived from the two JSON files alone."""
import csv
import io
import json

import pytest

import weeklycontainerreport as wcr
from conftest import files, log_text, ms
from fake_gateway import DETAILS_PATH, Fault, qid_knowledge

TODAY, TOMORROW = "2026-01-15", "2026-01-16"  # the fake clock's days
ONLY = ["--snapshot_only"]
IMAGE_A, IMAGE_B = "aaaaaaaaaaaa", "bbbbbbbbbbbb"


def run_container(gateway, image, *qids, state="RUNNING", **fields):
    """A container of image, holding these QIDs, created in December 2025."""
    gateway.add_container(ms(2025, 12, 1) + len(gateway.records), imageId=image, imageSha=image * 5 + "cccc",
                          state=state, vulnerabilities=[{"qid": qid} for qid in qids], **fields)
    return gateway.records[-1]


def changes(folder, day=TOMORROW, fingerprint=""):
    name = ".".join([day] + ([fingerprint] if fingerprint else []) + ["changes.csv"])
    text = (folder / "snapshots" / name).read_bytes().decode("utf-8-sig")
    return [(row["change"], row["imageId"], row["vuln_qid"], row["containers_now"], row["containers_before"])
            for row in csv.DictReader(io.StringIO(text, newline=""))]


def next_day(clock):
    clock.advance(86400)


@pytest.mark.timeout(30)
def test_a_snapshot_holds_the_running_containers_and_the_first_has_no_changes_file(run, gateway, workdir):
    running = run_container(gateway, IMAGE_A, 1001)
    run_container(gateway, IMAGE_A, 1001, state="STOPPED")
    assert run(*ONLY) == 0
    assert files(workdir / "snapshots") == [f"{TODAY}.csv", f"{TODAY}.json"]
    assert [container["uuid"] for container in json.loads((workdir / "snapshots" / f"{TODAY}.json").read_text())] \
        == [running.uuid]
    assert all("state:RUNNING" in call["params"]["filter"][0] for call in gateway.list_calls())
    assert "the first of its filter; no changes file" in log_text(workdir)
    assert files(workdir / "weekly_reports") == []  # --snapshot_only: no week


@pytest.mark.timeout(30)
def test_a_redeploy_of_the_same_image_is_no_change_and_the_changes_file_keeps_its_header(run, gateway, workdir,
                                                                                        clock):
    old = run_container(gateway, IMAGE_A, 1001, 1002)
    assert run(*ONLY) == 0
    old.core["state"] = "STOPPED"
    run_container(gateway, IMAGE_A, 1001, 1002)  # the pod was redeployed: a new container, the same image
    next_day(clock)
    assert run(*ONLY) == 0
    assert changes(workdir) == []
    header = (workdir / "snapshots" / f"{TOMORROW}.changes.csv").read_bytes().decode("utf-8-sig").splitlines()[0]
    assert header == ",".join(f'"{column}"' for column in wcr.CHANGES_COLUMNS)


@pytest.mark.timeout(30)
def test_an_image_patched_resolves_its_old_qids_and_a_new_image_brings_new_ones(run, gateway, workdir, clock):
    old = run_container(gateway, IMAGE_A, 1005, 1006)  # severities 1 and 5
    run_container(gateway, IMAGE_A, 1005)
    assert run(*ONLY) == 0
    old.core["state"] = "STOPPED"
    gateway.records[-1].core["state"] = "DELETED"
    run_container(gateway, IMAGE_B, 1003)  # the patched image, running instead
    next_day(clock)
    assert run(*ONLY) == 0
    assert changes(workdir) == [("new", IMAGE_B, "1003", "1", "0"), ("resolved", IMAGE_A, "1006", "0", "1"),
                                ("resolved", IMAGE_A, "1005", "0", "2")]  # by change, then severity, highest first


@pytest.mark.timeout(30)
def test_a_qid_newly_found_on_an_image_that_kept_running_is_new(run, gateway, workdir, clock):
    container = run_container(gateway, IMAGE_A, 1001)
    assert run(*ONLY) == 0
    container.vulnerabilities = container.vulnerabilities + [{"qid": 1009}]  # Qualys rescanned it
    container.updated_ms += 86400_000
    next_day(clock)
    assert run(*ONLY) == 0
    [row] = (workdir / "snapshots" / f"{TOMORROW}.changes.csv").read_bytes().decode("utf-8-sig").splitlines()[1:]
    known = qid_knowledge(1009)
    assert row.startswith(f'"new","{IMAGE_A}","{IMAGE_A * 5}cccc","1009","{known["severity"]}","{known["title"]}"')
    assert "since 2026-01-15: 1 new" in log_text(workdir)


@pytest.mark.timeout(30)
def test_snapshots_of_different_filters_are_never_compared(run, gateway, workdir, clock):
    run_container(gateway, IMAGE_A, 1001, name="web-1")
    assert run(*ONLY) == 0
    next_day(clock)
    assert run(*ONLY, "--optional_filter", "name:web-1") == 0
    fingerprint = wcr.filter_fingerprint("name:web-1")
    assert f"{TOMORROW}.{fingerprint}.json" in files(workdir / "snapshots")
    assert not [name for name in files(workdir / "snapshots") if "changes" in name]  # its first: nothing to compare
    assert "name:web-1" in gateway.list_calls()[-1]["params"]["filter"][0]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("damage", ['[{"uuid": "cut sho', "[1, 2, 3]\n", ""])
def test_a_damaged_earlier_snapshot_is_kept_aside_and_the_one_before_it_is_compared(run, gateway, workdir, clock,
                                                                                     damage):
    run_container(gateway, IMAGE_A, 1001)
    assert run(*ONLY) == 0  # the 15th
    next_day(clock)
    assert run(*ONLY) == 0  # the 16th, then damaged
    (workdir / "snapshots" / f"{TOMORROW}.json").write_text(damage)
    run_container(gateway, IMAGE_B, 1002)
    next_day(clock)
    assert run(*ONLY) == 0  # the 17th: compared with the 15th
    assert changes(workdir, "2026-01-17") == [("new", IMAGE_B, "1002", "1", "0")]
    assert (workdir / "snapshots" / f"{TOMORROW}.json.damaged").read_text() == damage


@pytest.mark.timeout(30)
def test_a_snapshot_taken_today_costs_no_call_and_its_missing_files_are_rebuilt(run, gateway, workdir):
    run_container(gateway, IMAGE_A, 1001)
    assert run(*ONLY) == 0
    csv_bytes = (workdir / "snapshots" / f"{TODAY}.csv").read_bytes()
    (workdir / "snapshots" / f"{TODAY}.csv").unlink()
    calls = len(gateway.calls)
    assert run(*ONLY) == 0
    assert len(gateway.calls) == calls and (workdir / "snapshots" / f"{TODAY}.csv").read_bytes() == csv_bytes


@pytest.mark.timeout(30)
def test_a_failed_snapshot_writes_nothing_and_exits_1_after_the_weeks(run, gateway, workdir):
    run_container(gateway, IMAGE_A, 1001)
    gateway.faults = [Fault("status", status=503, times=-1, week_start_ms=0)]  # the snapshot's range starts at 0
    assert run("--start_date", "2025-12-01", "--end_date", "2025-12-08", "--snapshot") == 1
    assert files(workdir / "weekly_reports") == ["2025-12-01_2025-12-08.json"]  # the week was done first
    assert files(workdir / "snapshots") == [] and files(workdir / "temp_reports") == [".lock"]
    assert "Snapshot 2026-01-15: FAILED" in log_text(workdir)


@pytest.mark.timeout(30)
def test_a_403_on_the_details_stops_the_run_before_the_changes_are_written(run, gateway, workdir, clock):
    run_container(gateway, IMAGE_A, 1001)
    assert run(*ONLY) == 0
    run_container(gateway, IMAGE_B, 1002)
    gateway.faults = [Fault("403", times=-1, path=DETAILS_PATH)]
    next_day(clock)
    assert run(*ONLY) == 3
    assert not [name for name in files(workdir / "snapshots") if "changes" in name]


@pytest.mark.timeout(30)
def test_rebuild_csv_writes_the_snapshots_files_again_with_the_same_bytes_and_no_call(run, gateway, workdir, clock):
    run_container(gateway, IMAGE_A, 1001)
    assert run(*ONLY) == 0
    run_container(gateway, IMAGE_B, 1002)
    next_day(clock)
    assert run(*ONLY) == 0
    folder = workdir / "snapshots"
    before = {name: (folder / name).read_bytes() for name in files(folder)}
    for name in before:
        if name.endswith(".csv"):
            (folder / name).unlink()
    calls = len(gateway.calls)
    assert wcr.main(["--rebuild_csv"], clock=clock) == 0
    assert {name: (folder / name).read_bytes() for name in files(folder)} == before and len(gateway.calls) == calls


@pytest.mark.timeout(30)
def test_containers_without_an_image_are_keyed_by_what_they_have_and_never_crash(run, gateway, workdir, clock):
    gateway.add_container(ms(2025, 12, 2), imageId=None, imageSha=None, vulnerabilities=[{"qid": 1001}])
    gateway.add_container(ms(2025, 12, 3), imageId=None, imageSha="f" * 64, vulnerabilities=[{"qid": 1002}])
    gateway.add_raw(ms(2025, 12, 4), '{"uuid": "odd", "state": "RUNNING", "imageId": ["x"], "vulnerabilities": 7}')
    assert run(*ONLY) == 0
    gateway.add_container(ms(2025, 12, 5), vulnerabilities=[{"qid": 1003}])  # no image at all, like the first
    next_day(clock)
    assert run(*ONLY) == 0
    assert changes(workdir) == [("new", "", "1003", "1", "0")]


@pytest.mark.timeout(30)
def test_the_summary_says_what_runs_and_what_changed_and_the_metrics_count_it_by_severity(run, gateway, workdir,
                                                                                          clock):
    from test_monitoring import metrics
    run_container(gateway, IMAGE_A, 1001)
    assert run(*ONLY) == 0
    run_container(gateway, IMAGE_B, 1002)
    next_day(clock)
    assert run(*ONLY, "--metrics_file", "job.prom") == 0
    severity = str(qid_knowledge(1002)["severity"])
    assert "Snapshot 2026-01-16: 2 running containers, 2 findings; since 2026-01-15: 1 new" in log_text(workdir)
    samples = {(name, labels): value for name, value, labels in parse_samples(workdir)}
    assert samples["snapshot_running_containers", ()] == 2
    assert samples["snapshot_changes", (("change", "new"), ("severity", severity))] == 1
    assert samples["snapshot_changes", (("change", "resolved"), ("severity", "5"))] == 0
    assert sum(value for (name, _), value in samples.items() if name == "snapshot_findings") == 2
    assert metrics(workdir / "job.prom")[("last_run_exit_code", None)] == 0


def parse_samples(folder):
    from prometheus_client.parser import text_string_to_metric_families
    for family in text_string_to_metric_families((folder / "job.prom").read_text()):
        for sample in family.samples:
            yield sample.name[len(wcr.METRICS_PREFIX):], sample.value, tuple(sorted(sample.labels.items()))
