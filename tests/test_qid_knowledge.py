"""Severity, CVEs and titles per QID: the knowledge columns, learned from containers' vulnerability
details (GET /csapi/v1.3/containers/{sha}/vuln), kept in the QID catalog, and never at the cost of a
week published with blanks it could have filled."""
import datetime as dt
import json
import os

import openpyxl
import pytest

import weeklycontainerreport as wcr
from conftest import (CSV_FILE, NAME, WEEK, WEEK_FILE, FakeClock, client_for, everything_printed, files, log_text,
                      ms, read_csv_rows, week_range)
from fake_gateway import DETAILS_PATH, DETAILS_STYLES, DEMO_TOKEN, Fault, qid_knowledge

KNOWLEDGE = ",".join(wcr.KNOWLEDGE_COLUMNS)
COLUMNS = ["--csv_columns", "uuid,vuln_qid," + KNOWLEDGE]
WEEK2 = week_range("2025-09-08", "2025-09-15")
CSV2 = "2025-09-08_2025-09-15.csv"


def add_holding(gateway, day, *qids, **fields):
    """A hand-made container created on 2025-09-<day> holding these QIDs; return its sha."""
    index = len(gateway.records)
    gateway.add_container(ms(2025, 9, day) + index, vulnerabilities=[{"qid": qid, "result": "found"} for qid in qids],
                          **fields)
    return gateway.records[-1].core["sha"]


def expected_cells(qid, revision=0):
    """The CSV cells of a QID's knowledge, as the fake knows it."""
    known = qid_knowledge(qid, revision)
    published = dt.datetime.fromtimestamp(known["published"] / 1000, dt.timezone.utc)
    return {
        "vuln_severity": str(known["severity"]), "vuln_title": known["title"],
        "vuln_cveids": "; ".join(known["cveids"]), "vuln_cvss3Base": str(float(known["cvss3Info"]["baseScore"])),
        "vuln_patchAvailable": "true" if known["patchAvailable"] else "false",
        "vuln_published": published.strftime("%Y-%m-%dT%H:%M:%S.") + f"{published.microsecond // 1000:03d}Z",
        "vuln_category": known["category"],
    }


def knowledge_of(row):
    return {column: row[column] for column in wcr.KNOWLEDGE_COLUMNS}


def catalog(folder):
    return json.loads((folder / wcr.CATALOG_NAME).read_text())["qids"]


def asked_shas(gateway):
    return [call["sha"] for call in gateway.details_calls()]


# --- What users get ----------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_every_row_gets_its_qids_severity_title_cves_cvss_patch_published_and_category(run, gateway, workdir):
    gateway.generate(30, dt.date(2025, 9, 1), dt.date(2025, 9, 15))
    assert run(*week_range("2025-09-01", "2025-09-15"), *COLUMNS) == 0
    rows = read_csv_rows(workdir) + read_csv_rows(workdir, CSV2)
    with_qid = [row for row in rows if row["vuln_qid"]]
    assert len(with_qid) > 30
    for row in with_qid:
        assert knowledge_of(row) == expected_cells(int(row["vuln_qid"])), row["vuln_qid"]
    for row in rows:
        if not row["vuln_qid"]:  # a container without vulnerabilities: its knowledge cells are blank
            assert set(knowledge_of(row).values()) == {""}
    shas = asked_shas(gateway)
    assert len(shas) == len(set(shas))  # never the same container twice in a run
    assert len(shas) <= 30


@pytest.mark.timeout(30)
def test_without_the_knowledge_columns_no_details_call_is_made_and_no_catalog_written(run, gateway, workdir):
    gateway.generate(20, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    assert run(*WEEK) == 0
    assert gateway.details_calls() == []
    assert not (workdir / wcr.CATALOG_NAME).exists()
    assert "vuln_severity" not in read_csv_rows(workdir)[0]


@pytest.mark.timeout(30)
def test_one_call_for_the_container_that_holds_the_most_unknown_qids(run, gateway, workdir):
    everything = add_holding(gateway, 2, 1001, 1002, 1003)
    for qid in (1001, 1002, 1003):
        add_holding(gateway, 3, qid)
    assert run(*WEEK, *COLUMNS) == 0
    assert asked_shas(gateway) == [everything]
    assert {row["vuln_title"] for row in read_csv_rows(workdir)} == {qid_knowledge(qid)["title"]
                                                                     for qid in (1001, 1002, 1003)}


def test_the_containers_to_ask_cover_the_unknown_qids_greedily():
    missing = {"1": ["a", "b"], "2": ["a", "c"], "3": ["a"], "4": ["d", "b"]}
    assert wcr.choose_containers(missing, 16) == ["a", "d"]  # a holds three; then one of b, d for QID 4
    assert wcr.choose_containers(missing, 1) == ["a"]
    assert wcr.choose_containers({"1": [], "2": ["x"]}, 16) == ["x"]
    assert wcr.choose_containers({"1": []}, 16) == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("style", DETAILS_STYLES)
def test_every_shape_of_the_details_answer_is_read(run, gateway, workdir, style):
    gateway.details_style = style
    add_holding(gateway, 2, 2001, 2002)
    add_holding(gateway, 3, 2003)
    assert run(*WEEK, *COLUMNS) == 0
    for row in read_csv_rows(workdir):
        assert knowledge_of(row) == expected_cells(int(row["vuln_qid"]))


@pytest.mark.parametrize("body, found", [
    ({"details": {"vulns": [{"qid": 1}], "driftVulns": [{"qid": 2}]}}, [1, 2]),
    ({"details": {"vulns": None}}, []),
    ({"details": None, "vunlSummary": {}}, []),
    ({"vulns": [{"qid": 1}, "junk", {"no": "qid"}]}, [1]),
    ({"data": [{"qid": 3}]}, [3]),
])
def test_details_answers_in_any_plausible_shape_give_their_vulnerabilities(body, found):
    assert sorted(vuln["qid"] for vuln in wcr.details_vulns(json.dumps(body))) == found


@pytest.mark.parametrize("text", ['{}', '{"errorCode": "SERVICE_UNAVAILABLE"}', '<html>proxy</html>', '[1, 2] x'])
def test_an_answer_that_holds_no_details_is_a_failed_request(text):
    with pytest.raises(wcr.TransientError):
        wcr.details_vulns(text)


@pytest.mark.parametrize("field, value, kept", [
    ("severity", "4", 4), ("severity", 5, 5), ("severity", "high", None), ("severity", True, None),
    ("cvss3Base", "7.5", 7.5), ("cvss3Base", "NaN", None), ("cveids", "CVE-1, CVE-2", ["CVE-1", "CVE-2"]),
    ("cveids", [], []), ("patchAvailable", "false", False), ("patchAvailable", "maybe", None),
    ("published", "2020-01-01T00:00:00Z", 1577836800000), ("published", "1577836800000", 1577836800000),
    ("title", "null", None), ("category", 7, "7"),
    ("severity", 99, None), ("severity", -3, None), ("severity", 1e300, None), ("severity", 2.5, None),
    ("cvss3Base", "10.1", None), ("cvss3Base", -1, None),
])
def test_knowledge_is_kept_in_one_type_per_field_whatever_the_gateway_sends(field, value, kept):
    assert wcr.normalized_knowledge(field, value) == kept


@pytest.mark.timeout(30)
def test_odd_qids_never_fail_a_week_and_their_knowledge_cells_are_blank(run, gateway, workdir):
    index = len(gateway.records)
    gateway.add_container(ms(2025, 9, 2) + index, vulnerabilities=[
        {"qid": [1]}, {"qid": {"a": 1}}, {"qid": None}, {"qid": True}, {"qid": "null"}, "junk", {"qid": 1101}])
    assert run(*WEEK, *COLUMNS) == 0
    rows = read_csv_rows(workdir)
    assert len(rows) == 7
    assert [row["vuln_title"] for row in rows if row["vuln_qid"] == "1101"] == [qid_knowledge(1101)["title"]]
    assert all(row["vuln_title"] == "" for row in rows if row["vuln_qid"] != "1101")


# --- The catalog ---------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_later_run_and_a_rebuild_use_the_catalog_without_a_call(run, gateway, workdir, clock, monkeypatch):
    add_holding(gateway, 2, 3001, 3002)
    add_holding(gateway, 9, 3001)
    add_holding(gateway, 10, 3002)
    assert run(*WEEK, *COLUMNS) == 0
    assert len(gateway.details_calls()) == 1
    assert run(*WEEK2, *COLUMNS) == 0
    assert len(gateway.details_calls()) == 1  # the QIDs of the second week were known
    assert {row["vuln_title"] for row in read_csv_rows(workdir, CSV2)} == {qid_knowledge(3001)["title"],
                                                                          qid_knowledge(3002)["title"]}
    calls = len(gateway.calls)
    (workdir / "weekly_csv_reports" / CSV2).unlink()
    monkeypatch.delenv("QUALYS_TOKEN")
    assert wcr.main(["--rebuild_csv", "--csv_columns", "vuln_qid,vuln_severity,vuln_title"], clock=clock) == 0
    assert len(gateway.calls) == calls
    assert [row["vuln_title"] for row in read_csv_rows(workdir, CSV2)] == [qid_knowledge(3001)["title"],
                                                                          qid_knowledge(3002)["title"]]


@pytest.mark.timeout(30)
def test_the_catalog_keeps_only_per_qid_fields_with_when_they_were_learned(run, gateway, workdir, clock):
    add_holding(gateway, 2, 4001)
    assert run(*WEEK, *COLUMNS) == 0
    entry = catalog(workdir)["4001"]
    assert set(entry) == set(wcr.KNOWLEDGE_COLUMNS.values()) | {"learned"}  # no firstFound, customerSeverity...
    assert entry["learned"] == clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    assert entry["severity"] == qid_knowledge(4001)["severity"]
    assert files(workdir / "temp_reports") == [".lock"]


@pytest.mark.timeout(30)
def test_knowledge_older_than_30_days_is_refreshed_when_its_qid_is_seen_again(run, gateway, workdir, clock):
    add_holding(gateway, 2, 5001)
    add_holding(gateway, 9, 5001)
    add_holding(gateway, 16, 5001)
    assert run(*WEEK, *COLUMNS) == 0
    gateway.knowledge_revision = 1  # Qualys revised what it knows
    clock.advance(20 * 86400)
    assert run(*WEEK2, *COLUMNS) == 0
    assert len(gateway.details_calls()) == 1  # 20 days old: still good
    assert read_csv_rows(workdir, CSV2)[0]["vuln_title"] == qid_knowledge(5001, 0)["title"]
    clock.advance(11 * 86400)
    assert run(*week_range("2025-09-15", "2025-09-22"), *COLUMNS) == 0
    assert len(gateway.details_calls()) == 2  # 31 days old: asked again
    row = read_csv_rows(workdir, "2025-09-15_2025-09-22.csv")[0]
    assert knowledge_of(row) == expected_cells(5001, revision=1)
    assert catalog(workdir)["5001"]["title"] == qid_knowledge(5001, 1)["title"]


@pytest.mark.timeout(30)
def test_a_damaged_catalog_is_kept_aside_and_learned_again(run, gateway, workdir):
    add_holding(gateway, 2, 6001)
    (workdir / wcr.CATALOG_NAME).write_text('{"format": 1, "qids": {"6001": {"title": "cut sh')
    assert run(*WEEK, *COLUMNS) == 0
    assert (workdir / (wcr.CATALOG_NAME + ".damaged")).read_text().endswith("cut sh")
    assert catalog(workdir)["6001"]["title"] == qid_knowledge(6001)["title"]
    assert "cannot be read" in log_text(workdir)


@pytest.mark.timeout(30)
def test_fields_the_list_already_carries_are_used_with_no_call(run, gateway, workdir):
    gateway.list_carries = ("severity", "title")
    add_holding(gateway, 2, 7001, 7002)
    assert run(*WEEK, "--csv_columns", "vuln_qid,vuln_severity,vuln_title") == 0
    assert gateway.details_calls() == []
    for row in read_csv_rows(workdir):
        known = qid_knowledge(int(row["vuln_qid"]))
        assert (row["vuln_severity"], row["vuln_title"]) == (str(known["severity"]), known["title"])


# --- Failures ------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_429_and_5xx_on_the_details_are_retried_and_never_hold_back_the_list(run, gateway, workdir, clock):
    add_holding(gateway, 2, 8001)
    add_holding(gateway, 9, 8002)
    gateway.faults = [Fault("429", seconds=40, path=DETAILS_PATH),
                      Fault("status", status=503, times=2, path=DETAILS_PATH)]
    assert run(*week_range("2025-09-01", "2025-09-15"), *COLUMNS, "--slices", "1") == 0
    assert [row["vuln_title"] for row in read_csv_rows(workdir) + read_csv_rows(workdir, CSV2)] == [
        qid_knowledge(8001)["title"], qid_knowledge(8002)["title"]]
    assert len(gateway.details_calls()) == 5  # 429, 503, 503, then the two answers
    assert "Vulnerability details of container" in log_text(workdir)


class StillClock(FakeClock):
    """A clock whose sleeps are counted but take no time: a hold is still on when they end."""

    def sleep(self, seconds, wake=None):
        self.sleeps.append(seconds)


@pytest.mark.timeout(30)
def test_a_details_429_holds_the_details_pacer_only(gateway):
    sha = add_holding(gateway, 2, 8101)
    gateway.faults = [Fault("429", seconds=40, path=DETAILS_PATH)]
    clock = StillClock()
    client, session = client_for(gateway.url, clock)
    try:
        assert [vuln["qid"] for vuln in client.fetch_details(sha, wcr.details_vulns)] == [8101]
        assert 40 in clock.sleeps
        slept = len(clock.sleeps)
        client.pacer.wait_turn()
        assert clock.sleeps[slept:] == []  # the list's turn comes at once
        client.details_pacer.wait_turn()
        assert sum(clock.sleeps[slept:]) > 30  # the details wait out their own hold
    finally:
        session.close()


@pytest.mark.timeout(30)
def test_details_that_keep_failing_fail_the_week_and_nothing_is_published(run, gateway, workdir, clock):
    add_holding(gateway, 2, 9001)
    gateway.faults = [Fault("status", status=503, times=-1, path=DETAILS_PATH)]
    assert run(*WEEK, *COLUMNS) == 1
    assert files(workdir / "weekly_reports") == [] and files(workdir / "weekly_csv_reports") == []
    assert "Vulnerability details of container" in log_text(workdir) and "FAILED" in log_text(workdir)
    gateway.faults = []
    assert run(*WEEK, *COLUMNS) == 0  # the next run tries again
    assert read_csv_rows(workdir)[0]["vuln_title"] == qid_knowledge(9001)["title"]


@pytest.mark.timeout(30)
def test_a_403_on_the_details_stops_the_run_in_one_line_before_any_week_is_published(
        run, gateway, workdir, capsys):
    for day in (2, 9, 16):
        add_holding(gateway, day, 9100 + day)
    gateway.faults = [Fault("403", times=-1, path=DETAILS_PATH)]
    assert run(*week_range("2025-09-01", "2025-09-22"), *COLUMNS) == 3
    assert files(workdir / "weekly_reports") == [] and files(workdir / "weekly_csv_reports") == []
    err = capsys.readouterr().err
    refusals = [line for line in err.splitlines() if "refused vulnerability details" in line]
    assert len(refusals) == 1 and "Qualys admin" in refusals[0] and "vuln_severity" in refusals[0]
    assert "Traceback" not in err
    assert len(gateway.details_calls()) == 1  # stopped at once


@pytest.mark.timeout(30)
def test_a_container_gone_meanwhile_gives_way_to_another_holding_the_same_qid(run, gateway, workdir):
    for day in (2, 3, 4):
        add_holding(gateway, day, 9201)
    gateway.faults = [Fault("status", status=404, times=1, path=DETAILS_PATH,
                            body={"errorCode": "404 NOT_FOUND", "message": "Container not found"})]
    assert run(*WEEK, *COLUMNS) == 0
    shas = asked_shas(gateway)
    assert len(shas) == 2 and shas[0] != shas[1]
    assert {row["vuln_title"] for row in read_csv_rows(workdir)} == {qid_knowledge(9201)["title"]}


@pytest.mark.timeout(30)
def test_when_every_container_holding_a_qid_is_gone_the_week_fails(run, gateway, workdir):
    add_holding(gateway, 2, 9301)
    add_holding(gateway, 3, 9301)
    gateway.faults = [Fault("status", status=404, times=2, path=DETAILS_PATH, body={"message": "gone"})]
    assert run(*WEEK, *COLUMNS) == 1
    assert files(workdir / "weekly_reports") == []
    assert "9301" in log_text(workdir) and "gone from the gateway" in log_text(workdir)


@pytest.mark.timeout(30)
def test_a_container_is_never_asked_twice_in_a_run(run, gateway, workdir):
    shared = "5" * 64  # two weeks list a container by the same sha
    add_holding(gateway, 2, 9351, sha=shared)
    add_holding(gateway, 9, 9351, sha=shared)
    gateway.faults = [Fault("status", status=404, times=-1, path=DETAILS_PATH, body={"message": "gone"})]
    assert run(*week_range("2025-09-01", "2025-09-15"), *COLUMNS) == 1
    assert asked_shas(gateway) == [shared]
    assert log_text(workdir).count("or was asked already") == 2


def mention_only(gateway, *qids):
    """The gateway's details of every container mention only these QIDs."""
    real = gateway.details_body
    gateway.details_body = lambda container: {"details": {"vulns": [
        vuln for vuln in real(container)["details"]["vulns"] + real(container)["details"]["driftVulns"]
        if vuln["qid"] in qids]}}


@pytest.mark.timeout(30)
def test_a_qid_its_containers_details_never_mention_stays_blank_with_a_warning_and_is_asked_again_later(
        run, gateway, workdir):
    add_holding(gateway, 2, 9401, 9402)
    add_holding(gateway, 9, 9402)
    mention_only(gateway, 9401)
    assert run(*WEEK, *COLUMNS) == 0
    rows = {row["vuln_qid"]: row for row in read_csv_rows(workdir)}
    assert rows["9401"]["vuln_title"] == qid_knowledge(9401)["title"] and rows["9402"]["vuln_title"] == ""
    assert "do not mention" in log_text(workdir) and "9402" not in catalog(workdir)  # nothing known is kept
    gateway.details_body = type(gateway).details_body.__get__(gateway)  # the next week's container tells it
    assert run(*WEEK2, *COLUMNS) == 0
    assert read_csv_rows(workdir, CSV2)[0]["vuln_title"] == qid_knowledge(9402)["title"]


@pytest.mark.timeout(30)
def test_the_token_never_appears_in_what_the_details_failures_log(run, gateway, workdir, capsys):
    add_holding(gateway, 2, 9501)
    gateway.faults = [Fault("status", status=500, times=2, path=DETAILS_PATH,
                            body={"message": f"bad token {DEMO_TOKEN}"})]
    assert run(*WEEK, *COLUMNS) == 0
    assert DEMO_TOKEN not in everything_printed(workdir, capsys.readouterr())


# --- Workbooks and rebuilds ----------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_in_a_workbook_severity_and_cvss_are_numbers_patch_a_boolean_published_a_date(run, gateway, workdir):
    add_holding(gateway, 2, 9601, 9602)
    assert run(*WEEK, *COLUMNS, "--xlsx") == 0
    sheet = openpyxl.load_workbook(workdir / "weekly_xlsx_reports" / f"{NAME}.xlsx").worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    header, first = rows[0], dict(zip(rows[0], rows[1]))
    known = qid_knowledge(first["vuln_qid"])
    assert header[2:] == tuple(wcr.KNOWLEDGE_COLUMNS)
    assert first["vuln_severity"] == known["severity"] and isinstance(first["vuln_severity"], int)
    assert first["vuln_cvss3Base"] == float(known["cvss3Info"]["baseScore"])
    assert first["vuln_patchAvailable"] is known["patchAvailable"]
    assert first["vuln_published"] == dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=known["published"])
    assert first["vuln_title"] == known["title"] and first["vuln_category"] == known["category"]


@pytest.mark.timeout(30)
def test_a_rebuild_with_a_qid_the_catalog_lacks_fails_that_week_and_keeps_its_csv(
        run, gateway, workdir, clock, monkeypatch):
    add_holding(gateway, 2, 9701)
    assert run(*WEEK) == 0  # exported without the knowledge columns: nothing learned
    before = (workdir / "weekly_csv_reports" / CSV_FILE).read_bytes()
    monkeypatch.delenv("QUALYS_TOKEN")
    assert wcr.main(["--rebuild_csv", "--csv_columns", "vuln_qid,vuln_severity"], clock=clock) == 1
    assert (workdir / "weekly_csv_reports" / CSV_FILE).read_bytes() == before
    assert "9701" in log_text(workdir) and wcr.CATALOG_NAME in log_text(workdir)
    assert gateway.details_calls() == []


@pytest.mark.timeout(30)
def test_a_rebuild_given_the_gateway_learns_what_the_catalog_lacks_without_a_list_call(
        run, gateway, workdir, clock):
    add_holding(gateway, 2, 9801)
    assert run(*WEEK) == 0
    lists = len(gateway.list_calls())
    assert wcr.main([gateway.url, "--rebuild_csv", "--csv_columns", "vuln_qid,vuln_severity"], clock=clock) == 0
    assert len(gateway.list_calls()) == lists and len(gateway.details_calls()) == 1
    assert read_csv_rows(workdir)[0]["vuln_severity"] == str(qid_knowledge(9801)["severity"])
    assert os.path.exists(workdir / "weekly_reports" / WEEK_FILE)


@pytest.mark.timeout(30)
def test_a_done_weeks_missing_csv_is_rebuilt_with_its_knowledge(run, gateway, workdir):
    add_holding(gateway, 2, 9901)
    assert run(*WEEK) == 0
    (workdir / "weekly_csv_reports" / CSV_FILE).unlink()
    lists = len(gateway.list_calls())
    assert run(*WEEK, *COLUMNS) == 0
    assert len(gateway.list_calls()) == lists
    assert knowledge_of(read_csv_rows(workdir)[0]) == expected_cells(9901)


# --- Hostile details: a week is never lost, nor filled wrong, by its knowledge -------------------------


def add_holders(gateway, count, qid, day=2):
    """count containers holding qid, created one after another; their shas, in the order they are listed."""
    return [add_holding(gateway, day, qid) for _ in range(count)]


@pytest.mark.timeout(30)
def test_when_the_holders_seen_last_are_gone_the_weeks_other_holders_are_asked(run, gateway, workdir):
    shas = add_holders(gateway, 12, 9901)
    gateway.faults = [Fault("status", status=404, times=-1, path=DETAILS_PATH, shas=frozenset(shas[4:]),
                            body={"message": "gone"})]  # the eight listed last were purged
    assert run(*WEEK, *COLUMNS) == 0
    asked = asked_shas(gateway)
    assert set(asked[:8]) == set(shas[4:]) and asked[-1] in shas[:4]  # the last seen first, then the others
    assert {row["vuln_title"] for row in read_csv_rows(workdir)} == {qid_knowledge(9901)["title"]}


@pytest.mark.timeout(30)
def test_when_every_holder_is_gone_the_message_says_what_was_asked(run, gateway, workdir):
    add_holders(gateway, 10, 9902)
    gateway.faults = [Fault("status", status=404, times=-1, path=DETAILS_PATH, body={"message": "gone"})]
    assert run(*WEEK, *COLUMNS) == 1
    assert len(set(asked_shas(gateway))) == 10  # every holder was asked, once
    assert "(10 gone)" in log_text(workdir)


@pytest.mark.timeout(30)
def test_a_container_whose_details_keep_failing_gives_way_and_the_others_answers_are_kept(run, gateway, workdir):
    failing = add_holding(gateway, 2, 9911)
    add_holding(gateway, 3, 9911)
    add_holding(gateway, 4, 9912)
    lone = add_holding(gateway, 9, 9913)  # the second week's QID: its only holder fails
    gateway.faults = [Fault("status", status=500, times=-1, path=DETAILS_PATH, shas=frozenset({failing, lone}))]
    assert run(*week_range("2025-09-01", "2025-09-15"), *COLUMNS) == 1
    assert {row["vuln_title"] for row in read_csv_rows(workdir)} == {qid_knowledge(9911)["title"],
                                                                     qid_knowledge(9912)["title"]}
    assert files(workdir / "weekly_reports") == [WEEK_FILE]
    assert {"9911", "9912"} <= set(catalog(workdir))  # learned, and saved though a week failed
    assert "9913" in log_text(workdir) and "HTTP 500" in log_text(workdir)


@pytest.mark.timeout(30)
def test_details_refused_for_one_container_ask_another_holder(run, gateway, workdir):
    refused = add_holding(gateway, 2, 9921, sha="f" * 64)  # asked first: the greatest sha
    add_holding(gateway, 3, 9921, sha="a" * 64)
    gateway.faults = [Fault("403", times=-1, path=DETAILS_PATH, shas=frozenset({refused}))]
    assert run(*WEEK, *COLUMNS) == 0
    assert {row["vuln_title"] for row in read_csv_rows(workdir)} == {qid_knowledge(9921)["title"]}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("sha", [".", "..", "x/y", "\\ud800abc", "12ab"])
def test_a_sha_that_cannot_name_a_container_never_goes_into_a_url(run, gateway, workdir, sha):
    gateway.add_raw(ms(2025, 9, 2), f'{{"uuid": "odd", "sha": "{sha}", "vulnerabilities": [{{"qid": 9931}}]}}')
    assert run(*WEEK, *COLUMNS) == 0
    assert gateway.details_calls() == [] and read_csv_rows(workdir)[0]["vuln_title"] == ""
    assert "has a sha to ask its vulnerability details by" in log_text(workdir)


@pytest.mark.timeout(30)
def test_impossible_knowledge_is_never_kept(run, gateway, workdir):
    add_holding(gateway, 2, 9941, 9942, 9943, 9944)
    known = dict(qid_knowledge(9941), severity=99, cvss3Info={"baseScore": "1e300"})
    gateway.details_body = lambda container: {"details": {"vulns": [
        known, {"qid": 9942, "title": None, "severity": None}, {"qid": 9943.0, "title": "a float QID"},
        dict(qid_knowledge(9944), severity=2), dict(qid_knowledge(9944), severity=5)]}}
    assert run(*WEEK, *COLUMNS) == 0
    kept = catalog(workdir)
    assert kept["9941"]["severity"] is None and kept["9941"]["cvss3Base"] is None
    assert kept["9941"]["title"] == known["title"]
    assert "9942" not in kept and "9943" not in kept  # nothing said of them: blank, with a warning
    assert kept["9944"]["severity"] == 2 and "say two things of QID 9944" in log_text(workdir)
    assert "do not mention" in log_text(workdir)


@pytest.mark.timeout(30)
def test_knowledge_learned_in_the_future_is_asked_again(run, gateway, workdir):
    add_holding(gateway, 2, 9951)
    (workdir / wcr.CATALOG_NAME).write_text(json.dumps({"format": 1, "qids": {"9951": {
        "title": "from the future", "learned": "2099-01-01T00:00:00Z"}}}))
    assert run(*WEEK, *COLUMNS) == 0
    assert read_csv_rows(workdir)[0]["vuln_title"] == qid_knowledge(9951)["title"]


@pytest.mark.timeout(30)
def test_a_list_that_carries_every_field_even_an_empty_cve_list_costs_no_call(run, gateway, workdir):
    qid = next(qid for qid in range(1000, 2000) if not qid_knowledge(qid)["cveids"])
    gateway.list_carries = ("severity", "title", "cveids", "cvss3Info", "patchAvailable", "published", "category")
    add_holding(gateway, 2, qid)
    assert run(*WEEK, *COLUMNS) == 0
    assert gateway.details_calls() == [] and read_csv_rows(workdir)[0]["vuln_cveids"] == ""


@pytest.mark.timeout(30)
def test_a_fifo_in_place_of_the_catalog_stops_the_run_in_one_line_before_any_call(run, gateway, workdir, capsys):
    add_holding(gateway, 2, 9961)
    os.mkfifo(workdir / wcr.CATALOG_NAME)
    assert run(*WEEK, *COLUMNS) == 2
    err = capsys.readouterr().err
    assert "is not a regular file" in err and "Traceback" not in err and gateway.calls == []


@pytest.mark.timeout(30)
def test_with_one_worker_the_details_are_asked_one_at_a_time(run, gateway, workdir):
    for day in (2, 3, 4):
        add_holding(gateway, day, 9970 + day)
    gateway.faults = [Fault("slow", seconds=0.1, times=-1, path=DETAILS_PATH)]
    assert run(*WEEK, *COLUMNS, "--workers", "1") == 0
    starts = sorted(call["at"] for call in gateway.details_calls())
    assert len(starts) == 3 and all(later - earlier >= 0.09 for earlier, later in zip(starts, starts[1:]))


@pytest.mark.timeout(30)
def test_after_a_429_on_the_details_one_request_probes_while_the_others_wait(run, gateway, workdir):
    for qid in range(8):
        add_holding(gateway, 2, 9800 + qid)
    gateway.details_latency_seconds = 0.05
    gateway.faults = [Fault("429", seconds=1, times=12, path=DETAILS_PATH)]  # the first batch, then four probes
    assert run(*WEEK, *COLUMNS) == 0
    calls = gateway.details_calls()
    storm_seen = min(call["ended"] for call in calls if call["status"] == 429)
    probes = sorted((call["at"], call["ended"]) for call in calls if call["status"] == 429 and call["at"] > storm_seen)
    assert len(probes) == 4 and all(ended <= following for (_, ended), (following, _) in zip(probes, probes[1:]))
    assert {row["vuln_title"] for row in read_csv_rows(workdir)} == {qid_knowledge(9800 + qid)["title"]
                                                                     for qid in range(8)}


@pytest.mark.timeout(30)
def test_a_429_storm_on_the_details_fails_what_is_left_to_learn_within_minutes(run, gateway, workdir, clock):
    for day in (2, 9, 16):
        add_holding(gateway, day, 9850 + day)
    gateway.faults = [Fault("429", seconds=60, times=-1, path=DETAILS_PATH)]
    assert run(*week_range("2025-09-01", "2025-09-22"), *COLUMNS) == 1
    assert files(workdir / "weekly_reports") == []
    assert sum(clock.sleeps) <= wcr.DETAILS_STORM_SECONDS + 2 * 60  # minutes, not an hour a week
    assert "rate-limited for over 600s in all in this run" in log_text(workdir)


def test_a_details_answer_is_decoded_one_vulnerability_at_a_time_keeping_only_the_qids_wanted():
    text = json.dumps({"details": {"vulns": [{"qid": number, "title": "x" * 10} for number in range(5000)],
                                   "driftVulns": [{"qid": 7}]}, "vunlSummary": {}})
    assert [vuln["qid"] for vuln in wcr.details_vulns(text, wanted={"7", "4999"})] == [7, 4999, 7]
    assert len(wcr.details_vulns(text)) == 5001


@pytest.mark.timeout(30)
def test_the_catalog_is_written_once_per_run(run, gateway, workdir, monkeypatch):
    for day in (2, 9, 16):
        add_holding(gateway, day, 9990 + day)
    writes, real_replace = [], os.replace
    monkeypatch.setattr(wcr.os, "replace", lambda source, target: (
        writes.append(target) if str(target).endswith(wcr.CATALOG_NAME) else None, real_replace(source, target)))
    assert run(*week_range("2025-09-01", "2025-09-22"), *COLUMNS) == 0
    assert len(writes) == 1 and len(catalog(workdir)) == 3
