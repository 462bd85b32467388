"""--xlsx: a workbook whose cells keep their types, whole or absent, read back with openpyxl."""
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
from conftest import FakeClock, files, ms, week_range

WEEK = week_range("2025-09-01", "2025-09-08")
NAME = "2025-09-01_2025-09-08"


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
