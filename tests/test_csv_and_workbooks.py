"""CSV and workbooks: columns, one row per QID, formats, the formula guard, golden files, and
--xlsx workbooks whose cells keep their types, read back with openpyxl."""
import csv
import datetime as dt
import io
import os
import shutil
import subprocess
import sys

import openpyxl
import pytest

import weeklycontainerreport as wcr
from conftest import (CSV_FILE, NAME, WEEK, WEEK_FILE, WEEK_UNSLICED, FakeClock, add_plain, files, ms, read_csv_rows,
                      week_range)

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
CSV_NAME = CSV_FILE


# --- The CSV ---------------------------------------------------------------------------------


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
    row = read_csv_rows(workdir)[0]
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
    rows = read_csv_rows(workdir)
    assert [(row["uuid"], row["vuln_qid"]) for row in rows] == [("hostile-1", "101"), ("hostile-1", "102"),
                                                                ("plain-2", "")]
    assert all(rows[2][column] == "" for column in wcr.CSV_COLUMNS if column.startswith("vuln_"))
    assert rows[0]["name"] == rows[1]["name"]  # the container's cells repeat on each QID row


def test_values_render_readably(run, gateway, workdir):
    add_hostile(gateway)
    assert run(*WEEK) == 0
    first, second, plain = read_csv_rows(workdir)
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
    rows = read_csv_rows(workdir)
    assert list(rows[0]) == ["vuln_qid", "name", "no_such_column", "uuid"]
    assert {row["no_such_column"] for row in rows} == {""}
    log = (workdir / "logs" / files(workdir / "logs")[0]).read_text()
    assert log.count("Unknown CSV column 'no_such_column'") == 1


def test_csv_cells_for_nulls_labels_objects_exponents_times_and_list_positions(run, gateway, workdir):
    gateway.add_container(
        ms(2025, 9, 2), uuid="cells", environment=["A=1", None, "B=2"],
        arguments=[{"key": "team", "value": "blue"}, {"key": "tier", "value": None}],
        host={"hostname": {"z": 1, "a": [2, None]}}, riskScore=-1e5, maxQdsScore="-1e5",
        stateChanged="=HYPERLINK(\"http://x\")",
        cluster={"k8s": {"pod": {"controller": [{"name": "only", "type": "Deployment"}]}}},
        vulnerabilities=[{"qid": 1, "software": [{"name": "null", "version": None},
                                                 {"name": "zlib", "version": "1.3"}]}])
    columns = "environment,arguments,host.hostname,riskScore,maxQdsScore,stateChanged,cluster.k8s.pod.controller[1].name," \
              "cluster.k8s.pod.controller[0].name,vuln_software_names,vuln_software_versions"
    assert run(*WEEK_UNSLICED, "--csv_columns", columns) == 0
    text = (workdir / "weekly_csv_reports" / f"{NAME}.csv").read_bytes().decode("utf-8-sig")
    [row] = list(csv.DictReader(io.StringIO(text, newline="")))
    assert row["environment"] == "A=1; ; B=2"  # a null in a list keeps its place
    assert row["arguments"] == "team=blue; tier="  # {key, value} objects, as labels come
    assert row["host.hostname"] == '{"a":[2,null],"z":1}'  # other objects: compact JSON, sorted keys
    assert row["riskScore"] == "-100000.0" and row["maxQdsScore"] == "-1e5"  # numbers with exponents: no guard
    assert row["stateChanged"] == "'=HYPERLINK(\"http://x\")"  # text in a time column is guarded too
    assert row["cluster.k8s.pod.controller[1].name"] == "" and row["cluster.k8s.pod.controller[0].name"] == "only"
    assert row["vuln_software_names"] == "; zlib" and row["vuln_software_versions"] == "; 1.3"  # "null" is blank


def test_deeply_nested_values_still_become_a_csv_cell(run, gateway, workdir):
    add_plain(gateway)
    deep = "[" * 600 + '"bottom"' + "]" * 600
    gateway.add_raw(ms(2025, 9, 3), f'{{"uuid": "deep", "name": "deep", "environment": {deep}}}')
    assert run(*WEEK_UNSLICED) == 0
    rows = {row["uuid"]: row for row in read_csv_rows(workdir)}
    assert rows["deep"]["environment"] == deep.replace(" ", "")
    assert len(rows) == 6


def test_a_lone_surrogate_keeps_its_escape_in_the_json_and_becomes_a_replacement_in_the_csv(run, gateway, workdir):
    add_plain(gateway)
    gateway.add_raw(ms(2025, 9, 3), '{"uuid": "odd", "name": "bad \\ud800 name"}')
    assert run(*WEEK_UNSLICED) == 0
    raw = (workdir / "weekly_reports" / WEEK_FILE).read_bytes()
    assert b'"bad \\ud800 name"' in raw
    raw.decode("utf-8")  # the file is valid UTF-8
    rows = {row["uuid"]: row for row in read_csv_rows(workdir)}
    assert rows["odd"]["name"] == "bad \ufffd name" and len(rows) == 6


def test_rebuild_csv_rewrites_every_csv_from_the_json_with_new_columns_and_no_call(
        run, gateway, workdir, clock, monkeypatch):
    add_hostile(gateway)
    gateway.generate(30, dt.date(2025, 9, 8), dt.date(2025, 9, 15))
    assert run(*week_range("2025-09-01", "2025-09-22")) == 0
    full = read_csv_rows(workdir)
    calls = len(gateway.calls)
    monkeypatch.delenv("QUALYS_TOKEN")
    assert wcr.main(["--rebuild_csv", "--csv_columns", "uuid,vuln_qid"], clock=clock) == 0
    assert len(gateway.calls) == calls
    rebuilt = read_csv_rows(workdir)
    assert [(row["uuid"], row["vuln_qid"]) for row in rebuilt] == [(row["uuid"], row["vuln_qid"]) for row in full]
    assert list(rebuilt[0]) == ["uuid", "vuln_qid"]
    assert list(read_csv_rows(workdir, "2025-09-08_2025-09-15.csv")[0]) == ["uuid", "vuln_qid"]
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


# --- Workbooks (--xlsx) ----------------------------------------------------------------------


def add_tricky(gateway):
    """Values a spreadsheet would re-type if it read them from a CSV."""
    gateway.add_container(
        ms(2025, 9, 2), uuid="tricky-1", containerId="012345678901", imageId="123456e78901",
        name="=cmd|' /C calc'!A0", riskScore=870, maxQdsScore="95", privileged=True, isRoot=False,
        stateChanged="1756714500000", cluster={"name": "prod", "version": "1.30"}, command="null",
        vulnerabilities=[
            {"qid": 105943, "firstFound": "1756714500123", "typeDetected": "CONFIRMED",
             "software": [{"name": "openssl", "version": "1.10", "fixVersion": None}]},
            {"qid": 105944, "lastFound": "not a time"},
        ])
    gateway.add_container(ms(2025, 9, 3), uuid="plain-2", name="no-vulns", host=None, cluster=None)


def workbook(folder, name=NAME):
    return openpyxl.load_workbook(folder / "weekly_xlsx_reports" / f"{name}.xlsx")


def sheet_rows(sheet):
    rows = list(sheet.iter_rows(values_only=True))
    return rows[0], [dict(zip(rows[0], row)) for row in rows[1:]]


def test_xlsx_writes_a_workbook_with_the_csvs_columns_and_rows(run, gateway, workdir):
    add_tricky(gateway)
    gateway.generate(40, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    assert run(*WEEK, "--xlsx") == 0
    assert files(workdir / "weekly_xlsx_reports") == [f"{NAME}.xlsx"]
    header, rows = sheet_rows(workbook(workdir).worksheets[0])
    text = (workdir / "weekly_csv_reports" / f"{NAME}.csv").read_bytes().decode("utf-8-sig")
    csv_rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert list(header) == list(wcr.CSV_COLUMNS)
    assert [(row["uuid"], row["vuln_qid"]) for row in rows] == [
        (row["uuid"], int(row["vuln_qid"]) if row["vuln_qid"] else None) for row in csv_rows]


def test_cells_keep_their_types(run, gateway, workdir):
    add_tricky(gateway)
    assert run(*WEEK, "--xlsx") == 0
    sheet = workbook(workdir).worksheets[0]
    _, rows = sheet_rows(sheet)
    first, second, plain = rows
    assert first["containerId"] == "012345678901"  # the leading zero stays
    assert first["imageId"] == "123456e78901"  # not 1.79769313486232E+308
    assert first["cluster.version"] == "1.30" and first["vuln_software_versions"] == "1.10"
    assert first["riskScore"] == 870 and first["vuln_qid"] == 105943  # JSON numbers are numbers
    assert first["maxQdsScore"] == "95"  # text that looks like a number stays text
    assert first["privileged"] is True and first["isRoot"] is False
    assert first["created"] == dt.datetime(2025, 9, 2) and first["stateChanged"] == dt.datetime(2025, 9, 1, 8, 15)
    assert first["vuln_firstFound"] == dt.datetime(2025, 9, 1, 8, 15, 0, 123000)
    assert second["vuln_lastFound"] == "not a time"  # a time column holding text keeps it as text
    assert first["command"] is None and plain["host.hostname"] is None  # blanks are empty cells
    created = sheet.cell(row=2, column=list(wcr.CSV_COLUMNS).index("created") + 1)
    assert created.is_date and "UTC" in created.number_format


def test_no_cell_is_a_formula_and_text_needs_no_apostrophe(run, gateway, workdir):
    add_tricky(gateway)
    assert run(*WEEK, "--xlsx") == 0
    sheet = workbook(workdir).worksheets[0]
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)
    _, rows = sheet_rows(sheet)
    assert rows[0]["name"] == "=cmd|' /C calc'!A0"


def test_the_header_is_frozen_filtered_and_the_columns_fit(run, gateway, workdir):
    add_tricky(gateway)
    assert run(*WEEK, "--xlsx", "--csv_columns", "uuid,created,vuln_software_names,name") == 0
    sheet = workbook(workdir).worksheets[0]
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:D4"
    assert sheet.column_dimensions["A"].width >= 38 and sheet.column_dimensions["B"].width >= 20


def test_a_full_sheet_continues_on_the_next(workdir, tmp_path):
    path = tmp_path / "week.json"
    path.write_text("[\n" + ",\n".join(f'{{"uuid": "u{number}"}}' for number in range(7)) + "\n]\n")
    with open(tmp_path / "week.xlsx", "wb") as stream:
        assert wcr.write_workbook(str(path), stream, ("uuid",), NAME, str(tmp_path), max_rows=3) == 7
    book = openpyxl.load_workbook(tmp_path / "week.xlsx")
    assert book.sheetnames == [NAME, f"{NAME}_2", f"{NAME}_3", f"{NAME}_4"]
    assert [[cell.value for cell in row] for row in book[f"{NAME}_2"].iter_rows()] == [["uuid"], ["u2"], ["u3"]]


def test_without_xlsx_there_is_no_workbook_and_an_emptied_week_loses_its_old_one(run, gateway, workdir):
    assert run(*WEEK) == 0
    assert not (workdir / "weekly_xlsx_reports").exists()
    add_tricky(gateway)
    on_wednesday = FakeClock(dt.datetime(2025, 9, 3, 12, tzinfo=dt.timezone.utc))  # the open week
    assert run(*WEEK, "--xlsx", "--output_dir", "open", use_clock=on_wednesday) == 0
    assert files(workdir / "open" / "weekly_xlsx_reports") == [f"{NAME}.partial.xlsx"]
    gateway.records.clear()
    assert run(*WEEK, "--xlsx", "--output_dir", "open", use_clock=on_wednesday) == 0
    assert files(workdir / "open" / "weekly_xlsx_reports") == []


def test_the_workbook_is_published_with_the_csv_before_the_json(run, gateway, workdir, monkeypatch):
    add_tricky(gateway)
    order, real_replace = [], os.replace
    monkeypatch.setattr(wcr.os, "replace", lambda source, target: (order.append(os.path.basename(target)),
                                                                  real_replace(source, target)))
    assert run(*WEEK, "--xlsx") == 0
    assert order == [f"{NAME}.csv", f"{NAME}.xlsx", f"{NAME}.json"]
    assert files(workdir / "temp_reports") == [".lock"]


def test_rebuild_csv_with_xlsx_rebuilds_the_workbooks_without_a_call(run, gateway, workdir, clock, monkeypatch):
    add_tricky(gateway)
    assert run(*WEEK) == 0
    calls = len(gateway.calls)
    monkeypatch.delenv("QUALYS_TOKEN")
    assert wcr.main(["--rebuild_csv", "--xlsx", "--csv_columns", "uuid,riskScore"], clock=clock) == 0
    assert len(gateway.calls) == calls
    header, rows = sheet_rows(workbook(workdir).worksheets[0])
    assert header == ("uuid", "riskScore") and rows[0] == {"uuid": "tricky-1", "riskScore": 870}


def test_without_xlsxwriter_xlsx_is_a_usage_error_that_says_how_to_install_it(workdir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "xlsxwriter", None)  # as if it were not installed
    assert wcr.main(["https://gateway.qg2.apps.qualys.com", "--xlsx"], clock=FakeClock()) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "pip install XlsxWriter" in err
    assert files(workdir) == []


def test_the_export_itself_never_imports_xlsxwriter(tmp_path):
    code = ("import sys; sys.path.insert(0, %r); import weeklycontainerreport as w; "
            "w.main(['--dry_run']); print('xlsxwriter' in sys.modules)" % os.path.dirname(wcr.__file__))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert result.stdout.strip().endswith("False")


@pytest.mark.skipif(not (shutil.which("soffice") or shutil.which("libreoffice")), reason="LibreOffice is not installed")
def test_libreoffice_keeps_ids_and_versions_as_they_are(run, gateway, workdir):
    add_tricky(gateway)
    assert run(*WEEK, "--xlsx", "--csv_columns", "containerId,imageId,cluster.version,vuln_software_versions") == 0
    office = shutil.which("soffice") or shutil.which("libreoffice")
    subprocess.run([office, "--headless", "--convert-to", "csv", "--outdir", str(workdir / "converted"),
                    str(workdir / "weekly_xlsx_reports" / f"{NAME}.xlsx")], capture_output=True, timeout=120,
                   check=True)
    text = (workdir / "converted" / f"{NAME}.csv").read_text(encoding="utf-8", errors="replace")
    assert "012345678901" in text and "123456e78901" in text and "1.30" in text and "1.10" in text


def test_integers_a_spreadsheet_cannot_hold_exactly_stay_text_in_the_workbook(run, gateway, workdir):
    gateway.add_raw(ms(2025, 9, 2), '{"uuid": "big", "riskScore": 9007199254740993, "maxQdsScore": -9007199254740993, '
                                    '"qdsSeverity": 9007199254740992}')
    assert run(*WEEK, "--xlsx", "--csv_columns", "uuid,riskScore,maxQdsScore,qdsSeverity") == 0
    _, [row] = sheet_rows(workbook(workdir).worksheets[0])
    assert row["riskScore"] == "9007199254740993" and row["maxQdsScore"] == "-9007199254740993"  # every digit
    assert row["qdsSeverity"] == 9007199254740992  # 2^53 itself is exact: a number
