"""The basics: a run exports weeks and a second run skips them."""
import json
import os

from conftest import files, week_range


def test_a_two_week_run_writes_json_and_csv_for_each_week(run, gateway, workdir):
    gateway.generate(20, __import__("datetime").date(2025, 9, 1), __import__("datetime").date(2025, 9, 15))
    assert run(*week_range("2025-09-01", "2025-09-15")) == 0
    assert files(workdir / "weekly_reports") == ["2025-09-01_2025-09-08.json", "2025-09-08_2025-09-15.json"]
    assert files(workdir / "weekly_csv_reports") == ["2025-09-01_2025-09-08.csv", "2025-09-08_2025-09-15.csv"]
    total = sum(len(json.load(open(workdir / "weekly_reports" / name))) for name in files(workdir / "weekly_reports"))
    assert total == 20
