"""The CSV: columns, one row per QID, formats, the formula guard, and golden files."""
import csv
import datetime as dt
import io
import os

import pytest

import weeklycontainerreport as wcr
from conftest import files, ms, week_range

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
WEEK = week_range("2025-09-01", "2025-09-08")
CSV_NAME = "2025-09-01_2025-09-08.csv"


def read_rows(workdir, name=CSV_NAME):
    text = (workdir / "weekly_csv_reports" / name).read_bytes().decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def add_hostile(gateway):
    gateway.add_container(
        ms(2025, 9, 2), uuid="hostile-1", name="=cmd|' /C calc'!A0", command="@SUM(1+1)",
        arguments=["+1", "-c"], environment=["GREETING=say \"hi\", then leave", "MULTI=line one\nline two"],
        label=[{"key": "team", "value": "café ☕"}], riskScore="-1", maxQdsScore="+3.5", privileged=True,
        isRoot=False, hostArchitecture=None, host={"hostname": "\tnode", "ipAddress": "\r10.0.0.1"},
        cluster={"name": "-c", "k8s": {"pod": {"namespace": "prod", "controller": [{"name": "web", "type": None}]}}},
        stateChanged="1756714500000", updated_ms=ms(2025, 9, 2) + 1,
        vulnerabilities=[
            {"qid": 101, "firstFound": "1756714500123", "lastFound": None, "typeDetected": "CONFIRMED",
             "scanType": ["DYNAMIC", "STATIC"],
             "software": [{"name": "openssl", "version": "1.1", "fixVersion": "=3.0", "packagePath": None},
                          {"name": "zlib", "version": None, "fixVersion": "1.3", "packagePath": "/lib/z"}]},
            {"qid": 102, "result": "no software listed"},
        ])
    gateway.add_container(ms(2025, 9, 3), uuid="plain-2", name="no-vulns", command="null", host=None,
                          cluster=None, vulnerabilities=[])


def test_the_golden_csv_with_hostile_values_is_byte_for_byte_stable(run, gateway, workdir):
    add_hostile(gateway)
    assert run(*WEEK) == 0
    produced = (workdir / "weekly_csv_reports" / CSV_NAME).read_bytes()
    with open(os.path.join(GOLDEN, "hostile.csv"), "rb") as golden:
        assert produced == golden.read()


def test_the_golden_csv_of_a_generated_week_pins_the_flattening(run, gateway, workdir):
    gateway.generate(12, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    assert run(*WEEK) == 0
    produced = (workdir / "weekly_csv_reports" / CSV_NAME).read_bytes()
    with open(os.path.join(GOLDEN, "generated_week.csv"), "rb") as golden:
        assert produced == golden.read()


def test_cells_a_spreadsheet_would_evaluate_are_guarded_and_numbers_are_not(run, gateway, workdir):
    add_hostile(gateway)
    assert run(*WEEK) == 0
    row = read_rows(workdir)[0]
    assert row["name"] == "'=cmd|' /C calc'!A0"
    assert row["command"] == "'@SUM(1+1)"
    assert row["arguments"] == "'+1; -c"  # a list cell is text, so "+1; -c" is guarded
    assert row["host.hostname"] == "'\tnode" and row["host.ipAddress"] == "'\r10.0.0.1"
    assert row["cluster.name"] == "'-c"
    assert row["riskScore"] == "-1" and row["maxQdsScore"] == "+3.5"
    assert row["vuln_software_fixVersions"] == "'=3.0; 1.3"


def test_one_row_per_qid_and_one_blank_vulnerability_row_for_a_container_without_any(run, gateway, workdir):
    add_hostile(gateway)
    assert run(*WEEK) == 0
    rows = read_rows(workdir)
    assert [(row["uuid"], row["vuln_qid"]) for row in rows] == [("hostile-1", "101"), ("hostile-1", "102"),
                                                                ("plain-2", "")]
    assert all(rows[2][column] == "" for column in wcr.CSV_COLUMNS if column.startswith("vuln_"))
    assert rows[0]["name"] == rows[1]["name"]  # the container's cells repeat on each QID row


def test_values_render_readably(run, gateway, workdir):
    add_hostile(gateway)
    assert run(*WEEK) == 0
    first, second, plain = read_rows(workdir)
    assert first["created"] == "2025-09-02T00:00:00Z"
    assert first["stateChanged"] == "2025-09-01T08:15:00Z"
    assert first["vuln_firstFound"] == "2025-09-01T08:15:00.123Z" and first["vuln_lastFound"] == ""
    assert first["privileged"] == "true" and first["isRoot"] == "false"
    assert first["vuln_scanTypes"] == "DYNAMIC; STATIC"
    assert first["vuln_software_names"] == "openssl; zlib"
    assert first["vuln_software_versions"] == "1.1; "  # positions line up across the software columns
    assert first["vuln_software_packagePaths"] == "; /lib/z"
    assert first["environment"] == 'GREETING=say "hi", then leave; MULTI=line one\nline two'
    assert first["cluster.k8s.pod.controller[0].name"] == "web"
    assert first["cluster.k8s.pod.controller[0].type"] == ""
    assert plain["command"] == "" and plain["host.hostname"] == "" and plain["cluster.k8s.pod.name"] == ""


def test_the_csv_is_utf8_with_a_byte_order_mark_and_every_cell_quoted(run, gateway, workdir):
    add_hostile(gateway)
    assert run(*WEEK, "--csv_columns", "name,riskScore") == 0
    raw = (workdir / "weekly_csv_reports" / CSV_NAME).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf\"name\",\"riskScore\"\r\n")
    assert b'"-1"' in raw


def test_csv_columns_pick_a_subset_in_order_and_an_unknown_column_is_blank_with_one_warning(
        run, gateway, workdir):
    add_hostile(gateway)
    assert run(*WEEK, "--csv_columns", "vuln_qid, name,no_such_column,uuid") == 0
    rows = read_rows(workdir)
    assert list(rows[0]) == ["vuln_qid", "name", "no_such_column", "uuid"]
    assert {row["no_such_column"] for row in rows} == {""}
    log = (workdir / "logs" / files(workdir / "logs")[0]).read_text()
    assert log.count("Unknown CSV column 'no_such_column'") == 1


def test_rebuild_csv_rewrites_every_csv_from_the_json_with_new_columns_and_no_call(
        run, gateway, workdir, clock, monkeypatch):
    add_hostile(gateway)
    gateway.generate(30, dt.date(2025, 9, 8), dt.date(2025, 9, 15))
    assert run(*week_range("2025-09-01", "2025-09-22")) == 0
    full = read_rows(workdir)
    calls = len(gateway.calls)
    monkeypatch.delenv("QUALYS_TOKEN")
    assert wcr.main(["--rebuild_csv", "--csv_columns", "uuid,vuln_qid"], clock=clock) == 0
    assert len(gateway.calls) == calls
    rebuilt = read_rows(workdir)
    assert [(row["uuid"], row["vuln_qid"]) for row in rebuilt] == [(row["uuid"], row["vuln_qid"]) for row in full]
    assert list(rebuilt[0]) == ["uuid", "vuln_qid"]
    assert list(read_rows(workdir, "2025-09-08_2025-09-15.csv")[0]) == ["uuid", "vuln_qid"]
    assert files(workdir / "weekly_csv_reports") == ["2025-09-01_2025-09-08.csv", "2025-09-08_2025-09-15.csv"]
    assert files(workdir / "temp_reports") == [".lock"]


def test_rebuild_csv_without_reports_is_a_usage_error(workdir, clock):
    assert wcr.main(["--rebuild_csv"], clock=clock) == 2


@pytest.mark.parametrize("column, steps", [
    ("host.hostname", ("host", "hostname")),
    ("cluster.k8s.pod.controller[0].name", ("cluster", "k8s", "pod", "controller", 0, "name")),
    ("name", ("name",)),
])
def test_column_paths_are_compiled_once_into_steps(column, steps):
    assert wcr.compile_path(column) == steps


def test_missing_or_null_at_any_depth_resolves_to_nothing():
    steps = wcr.compile_path("cluster.k8s.pod.controller[0].name")
    for container in ({}, {"cluster": None}, {"cluster": {"k8s": {"pod": {"controller": []}}}},
                      {"cluster": {"k8s": {"pod": {"controller": None}}}}, {"cluster": "text"}):
        assert wcr.resolve(container, steps) is None
