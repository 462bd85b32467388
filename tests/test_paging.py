"""Paging: the Link cursor in every shape, every last-page form, odd records that never poison a
week, and large weeks fetched as time slices side by side."""
import datetime as dt
import filecmp
import json
import re

import pytest

import weeklycontainerreport as wcr
from conftest import (WEEK, WEEK_FILE, WEEK_UNSLICED, add_plain, files, fill_four_weeks, fill_week, log_text, ms,
                      read_csv_rows, stored, week_range)
from fake_gateway import EMPTY_STYLES, LAST_PAGE_STYLES, NEXT_LINK_STYLES, NOT_A_PAGE, Fault

START, END = ms(2025, 9, 1), ms(2025, 9, 8)


def reject(name):
    raise ValueError(f"{name} is not JSON")


def strict_load(path):
    """Read a weekly JSON as any strict parser would: NaN and Infinity are not JSON (integers of any
    length are, though Python 3.11+ converts only 4,300 digits by default)."""
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject,
                      parse_int=lambda digits: int(digits) if len(digits) < 4000 else digits)


def ranges(calls):
    """The created ranges the calls asked for, in order of first appearance."""
    seen = []
    for call in calls:
        low, high = map(int, re.match(r"created:\[(\d+) \.\.\. (\d+)\]", call["params"]["filter"][0]).groups())
        if (low, high) not in seen:
            seen.append((low, high))
    return seen


FOUR_WEEKS = week_range("2025-09-01", "2025-09-29") + ["--slices", "1"]  # weeks side by side, each one chain


# --- The cursor and the last page ------------------------------------------------------------


@pytest.mark.parametrize("style", NEXT_LINK_STYLES)
def test_every_next_link_shape_is_followed_through_the_configured_gateway(style, run, gateway, workdir):
    gateway.next_link_style = style
    uuids = fill_week(gateway, 600)  # three pages
    assert run(*WEEK_UNSLICED) == 0
    assert {container["uuid"] for container in stored(workdir)} == uuids
    calls = gateway.list_calls()
    assert len(calls) == 3
    for call in calls:  # the same filter and limit on every page, to this gateway only
        assert call["params"]["filter"] == [f"created:[{ms(2025, 9, 1)} ... {ms(2025, 9, 8) - 1}]"]
        assert call["params"]["limit"] == ["250"]
    assert "paginationQuery" not in calls[0]["params"]
    assert all("paginationQuery" in call["params"] for call in calls[1:])


@pytest.mark.parametrize("style", LAST_PAGE_STYLES)
def test_every_last_page_form_ends_the_week(style, run, gateway, workdir):
    gateway.last_page_style = style
    uuids = fill_week(gateway, 300)
    assert run(*WEEK_UNSLICED) == 0
    assert {container["uuid"] for container in stored(workdir)} == uuids
    assert len(gateway.list_calls()) == 2


@pytest.mark.parametrize("empty_style", EMPTY_STYLES)
def test_a_full_last_page_followed_by_an_empty_one_ends_the_week(empty_style, run, gateway, workdir):
    gateway.empty_style = empty_style
    uuids = fill_week(gateway, 500)  # exactly two full pages, then a Link to nothing
    assert run(*WEEK_UNSLICED) == 0
    assert {container["uuid"] for container in stored(workdir)} == uuids
    assert len(gateway.list_calls()) == 3


@pytest.mark.parametrize("empty_style", EMPTY_STYLES)
def test_an_empty_week_is_written_as_an_empty_array_without_a_csv(empty_style, run, gateway, workdir):
    gateway.empty_style = empty_style
    assert run(*WEEK_UNSLICED) == 0
    assert (workdir / "weekly_reports" / "2025-09-01_2025-09-08.json").read_text() == "[]\n"
    assert files(workdir / "weekly_csv_reports") == []


def test_a_repeated_cursor_stops_the_paging_loop(run, gateway, workdir):
    gateway.faults = [Fault("repeat-cursor", times=-1)]
    fill_week(gateway, 800)
    assert run(*WEEK_UNSLICED) == 0
    assert len(gateway.list_calls()) == 2  # page 2 names its own cursor again: the guard stops there
    assert len(stored(workdir)) == 500


def test_a_single_object_in_place_of_the_data_list_is_one_container(run, gateway, workdir):
    gateway.single_object_data = True
    gateway.add_container(ms(2025, 9, 2), name="lonely")
    assert run(*WEEK_UNSLICED) == 0
    assert [container["name"] for container in stored(workdir)] == ["lonely"]


def test_a_container_served_twice_by_the_keyset_cursor_is_kept_once(run, gateway, workdir):
    fill_week(gateway, 400)
    moved = sorted(gateway.records, key=lambda record: (record.updated_ms, record.uuid))[3].uuid
    gateway.faults = [Fault("touch", times=-1, uuids=frozenset({moved}))]
    assert run(*WEEK_UNSLICED) == 0
    assert gateway.served.count(moved) == 2  # the gateway really did serve it twice
    uuids = [container["uuid"] for container in stored(workdir)]
    assert len(uuids) == 400 and uuids.count(moved) == 1


def test_each_container_is_stored_exactly_as_the_api_sent_it(run, gateway, workdir):
    fill_week(gateway, 30)
    assert run(*WEEK_UNSLICED) == 0
    sent = {record.uuid: gateway.container_json(record) for record in gateway.records}
    for container in stored(workdir):
        assert container == sent[container["uuid"]]
    assert any(container["command"] == "null" for container in stored(workdir))
    assert any(container["host"] is None for container in stored(workdir))


def test_endless_fresh_cursors_without_new_containers_fail_the_week(run, gateway, workdir):
    fill_week(gateway, 300)
    gateway.faults = [Fault("fresh-cursors", times=-1)]  # every page names a new cursor, serves the same
    assert run(*WEEK_UNSLICED) == 1
    assert len(gateway.list_calls()) == 1 + wcr.PAGES_WITHOUT_PROGRESS  # one page of news, then 3 of nothing
    assert files(workdir / "weekly_reports") == []
    assert "served 3 pages in a row without a container not already seen" in log_text(workdir)


def test_a_next_link_that_cannot_be_read_fails_the_week_in_one_line(run, gateway, workdir, capsys):
    gateway.generate(600, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    gateway.next_link_style = "bad-ipv6"
    assert run(*WEEK_UNSLICED) == 1
    err = capsys.readouterr().err
    assert "FAILED: the gateway's Link header names a next page that cannot be read" in err
    assert len(gateway.list_calls()) == 1 and "Traceback" not in err
    assert files(workdir / "weekly_reports") == []


@pytest.mark.parametrize("body", [NOT_A_PAGE, {}, {"count": 0, "items": []}], ids=["maintenance", "empty", "no-data"])
def test_an_answer_that_is_not_a_page_fails_the_week_and_is_never_written_as_empty(body, run, gateway, workdir):
    fill_week(gateway, 20)
    gateway.faults = [Fault("not-a-page", times=-1, body=body)]
    assert run(*WEEK_UNSLICED) == 1
    assert files(workdir / "weekly_reports") == [] and files(workdir / "weekly_csv_reports") == []
    assert len(gateway.list_calls()) == 6  # retried like a 5xx
    log = log_text(workdir)
    assert "FAILED: the answer is not a page of containers (it has no data field)" in log
    if body is NOT_A_PAGE:  # what the gateway said is in the log line
        assert "errorCode: SERVICE_UNAVAILABLE; message: Container Security is under maintenance" in log


def test_an_answer_that_is_not_a_page_once_is_retried_and_the_week_kept_whole(run, gateway, workdir):
    uuids = fill_week(gateway, 600)
    gateway.faults = [Fault("not-a-page", with_cursor=True)]
    assert run(*WEEK_UNSLICED) == 0
    assert {container["uuid"] for container in stored(workdir)} == uuids


def test_items_of_data_that_are_not_objects_are_dropped_with_one_warning(run, gateway, workdir):
    fill_week(gateway, 3)
    gateway.faults = [Fault("items", body=['"x"', "1", "null", "true"])]
    assert run(*WEEK_UNSLICED) == 0
    assert [type(container) for container in stored(workdir)] == [dict] * 3
    assert {row["uuid"] for row in read_csv_rows(workdir)} == {record.uuid for record in gateway.records}
    assert log_text(workdir).count("dropped 4 items of data that are not containers (not JSON objects)") == 1
    assert "3 containers" in log_text(workdir)


def test_containers_created_outside_the_asked_range_are_left_out_of_the_week(run, gateway, workdir):
    gateway.generate(40, dt.date(2025, 9, 1), dt.date(2025, 9, 15))  # two weeks
    gateway.add_raw(ms(2025, 9, 3), '{"uuid": "when?", "created": "last tuesday"}')
    gateway.faults = [Fault("ignore-ranges", times=-1)]  # the gateway answers every week with both
    assert run(*week_range("2025-09-01", "2025-09-15"), "--slices", "1") == 0
    for name, low, high in (("2025-09-01_2025-09-08.json", ms(2025, 9, 1), ms(2025, 9, 8)),
                            ("2025-09-08_2025-09-15.json", ms(2025, 9, 8), ms(2025, 9, 15))):
        week = stored(workdir, name)
        dated = [container for container in week if container["uuid"] != "when?"]
        assert dated and all(low <= int(container["created"]) < high for container in dated)
        assert any(container["uuid"] == "when?" for container in week)  # unreadable: nothing proves it wrong
    assert len(stored(workdir)) + len(stored(workdir, "2025-09-08_2025-09-15.json")) == 40 + 2
    assert log_text(workdir).count("created outside the range asked for") == 2


# --- Odd records never fail a week -----------------------------------------------------------


def test_uuids_that_are_not_strings_never_crash_and_never_merge_different_containers(run, gateway, workdir):
    add_plain(gateway)
    odd = ['[1, 2]', '{"a": 1}', "1", "1.0", "true", '"1"', "null", '[[1, 2]]']
    for number, uuid_text in enumerate(odd):
        gateway.add_raw(ms(2025, 9, 3) + number, f'{{"uuid": {uuid_text}, "name": "odd-{number}"}}')
    gateway.add_raw(ms(2025, 9, 4), '{"uuid": [1, 2], "name": "same list uuid again"}')
    assert run(*WEEK_UNSLICED) == 0
    stored = strict_load(workdir / "weekly_reports" / WEEK_FILE)
    names = sorted(container["name"] for container in stored)
    assert names == sorted([f"odd-{number}" for number in range(len(odd))] + [f"plain-{n}" for n in range(5)])


def test_numbers_python_cannot_hold_stay_as_sent_and_the_json_stays_strict(run, gateway, workdir):
    add_plain(gateway)
    huge = "9" * 5000
    gateway.add_raw(ms(2025, 9, 3), '{"uuid": "big", "riskScore": 1e400, "maxQdsScore": -1E+400, '
                                    f'"vulnerabilities": [{{"qid": {huge}}}]}}')
    assert run(*WEEK_UNSLICED) == 0
    path = workdir / "weekly_reports" / WEEK_FILE
    assert b'"riskScore": 1e400, "maxQdsScore": -1E+400' in path.read_bytes()
    assert len(strict_load(path)) == 6
    rows = {row["uuid"]: row for row in read_csv_rows(workdir)}
    assert rows["big"]["riskScore"] == "1e400" and rows["big"]["maxQdsScore"] == "-1E+400"
    assert rows["big"]["vuln_qid"] == huge


def test_each_container_is_stored_as_the_gateways_own_bytes(run, gateway, workdir):
    gateway.add_raw(ms(2025, 9, 3), '{ "uuid" : "spaced",\n  "name":"caf\\u00e9" ,"n": 1.50 }')
    gateway.add_raw(ms(2025, 9, 4), '{"uuid":"raw-utf8","name":"café ☕"}')
    assert run(*WEEK_UNSLICED) == 0
    lines = (workdir / "weekly_reports" / WEEK_FILE).read_bytes().split(b"\n")
    assert lines == [b"[", '{"uuid":"raw-utf8","name":"café ☕"},'.encode(),  # no created: in uuid order
                     b'{ "uuid" : "spaced",  "name":"caf\\u00e9" ,"n": 1.50 }', b"]", b""]


def test_a_page_nested_too_deeply_to_decode_fails_the_week_in_one_line(run, gateway, workdir, capsys):
    add_plain(gateway)
    gateway.add_raw(ms(2025, 9, 3), '{"uuid": "abyss", "x": ' + "[" * 100000 + "]" * 100000 + "}")
    assert run(*WEEK_UNSLICED) == 1
    err = capsys.readouterr().err
    assert "FAILED: a container is nested too deeply to be decoded" in err and "Traceback" not in err
    assert len(gateway.list_calls()) == 1  # not retried: the same page can never be read


def test_nan_is_not_json_so_such_a_page_is_retried_and_then_fails(run, gateway, workdir, capsys):
    add_plain(gateway)
    gateway.add_raw(ms(2025, 9, 3), '{"uuid": "nan", "riskScore": NaN}')
    assert run(*WEEK_UNSLICED) == 1
    err = capsys.readouterr().err
    assert "NaN is not JSON" in err and "gave up after 6 attempts" in err
    assert files(workdir / "weekly_reports") == []


# --- Weeks side by side, and large weeks as time slices --------------------------------------


def test_pages_of_different_weeks_interleave_and_each_week_stays_whole(run, gateway, workdir):
    fill_four_weeks(gateway)
    gateway.latency_seconds, gateway.rate_limit = 0.03, None  # no limit told: --workers requests in flight
    assert run(*FOUR_WEEKS, "--workers", "4") == 0
    starts = [call["params"]["filter"][0] for call in gateway.list_calls()]
    switches = sum(1 for before, after in zip(starts, starts[1:]) if before != after)
    assert switches > len(set(starts))  # not one week after another
    assert len(files(workdir / "weekly_reports")) == 4


def test_a_failing_week_does_not_block_or_corrupt_the_others(run, gateway, workdir):
    fill_four_weeks(gateway)
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


def split_freely(gateway):
    """A gateway that sends no X-RateLimit headers: the run keeps as many chains as --workers allows."""
    gateway.rate_limit = None


def in_time_order(containers):
    keys = [(int(container["created"]), container["uuid"]) for container in containers]
    return keys == sorted(keys)


def test_a_large_week_is_fetched_as_slices_that_cover_it_exactly_once(run, gateway, workdir):
    gateway.generate(1200, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    split_freely(gateway)
    assert run(*WEEK) == 0
    asked = ranges(gateway.list_calls())
    assert asked[0] == (START, END - 1) and len(asked) > 1  # the week, then the narrower ranges of its chains
    assert all(START <= low <= high <= END - 1 for low, high in asked)
    uuids = [container["uuid"] for container in stored(workdir)]
    assert sorted(uuids) == sorted(record.uuid for record in gateway.records)
    assert in_time_order(stored(workdir))
    assert "split into" in log_text(workdir) and " chains -> " in log_text(workdir)


def test_the_chains_ranges_tile_the_week_so_each_millisecond_is_asked_exactly_once(run, gateway, workdir):
    gateway.generate_burst(3000, dt.date(2025, 9, 1), dt.date(2025, 9, 8), 0.6, 50, 2)
    split_freely(gateway)
    assert run(*WEEK) == 0
    asked = ranges(gateway.list_calls())
    lows = {low for low, _ in asked}
    # A chain cut short keeps its start; its final range is the one no other chain starts inside.
    final = sorted((low, high) for low, high in asked if not any(low < other <= high for other in lows))
    assert len(final) > 2
    assert final[0][0] == START and final[-1][1] == END - 1  # QQL ranges are inclusive: [start, end - 1 ms]
    assert all(high + 1 == following for (_, high), (following, _) in zip(final, final[1:]))
    names = [container["uuid"] for container in stored(workdir)]
    assert sorted(names) == sorted(record.uuid for record in gateway.records)


def test_a_split_week_gives_the_same_bytes_with_one_worker_and_with_eight(run, gateway, workdir):
    gateway.generate(2000, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    split_freely(gateway)
    gateway.latency_seconds = 0.005
    assert run(*WEEK, "--workers", "1", "--output_dir", "one") == 0  # one request at a time: never split
    assert run(*WEEK, "--workers", "8", "--output_dir", "eight") == 0
    assert run(*WEEK, "--slices", "1", "--output_dir", "chain") == 0
    assert "split into" in log_text(workdir / "eight") and "split into" not in log_text(workdir / "one")
    for other in ("eight", "chain"):
        for folder in ("weekly_reports", "weekly_csv_reports"):
            names = files(workdir / "one" / folder)
            _, mismatch, errors = filecmp.cmpfiles(workdir / "one" / folder, workdir / other / folder, names,
                                                   shallow=False)
            assert names and mismatch == [] and errors == []
    assert in_time_order(stored(workdir / "eight"))  # the chains joined in time order


def test_a_split_of_a_split_is_joined_in_time_order(run, gateway, workdir):
    gateway.generate_burst(3000, dt.date(2025, 9, 1), dt.date(2025, 9, 8), 0.8, 34, 6)  # most in 6 hours
    split_freely(gateway)
    assert run(*WEEK, "--workers", "16") == 0
    splits = [line for line in log_text(workdir).splitlines() if "split into" in line]
    assert any("(chain " in line for line in splits)  # a chain that was split off split again
    week = stored(workdir)
    assert sorted(container["uuid"] for container in week) == sorted(record.uuid for record in gateway.records)
    assert in_time_order(week)


def test_workers_is_the_ceiling_of_the_requests_in_flight(run, gateway, workdir):
    gateway.lag = "tight"  # the first page shows eleven pages to come
    gateway.generate(3000, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    split_freely(gateway)
    assert run(*WEEK, "--output_dir", "auto") == 0
    assert run(*WEEK, "--workers", "2", "--output_dir", "two") == 0

    def widest_split(folder):
        return max([int(parts) for parts in re.findall(r"split into (\d+) chains", log_text(folder))] or [1])

    assert widest_split(workdir / "auto") >= 4
    assert widest_split(workdir / "two") <= 2
    assert stored(workdir / "auto") == stored(workdir / "two")


def test_a_burst_costs_few_calls_more_than_its_pages(run, gateway, workdir):
    gateway.generate_burst(6000, dt.date(2025, 9, 1), dt.date(2025, 9, 8), 0.8, 34, 6)  # 24 pages, most in 6 hours
    split_freely(gateway)
    assert run(*WEEK) == 0
    splits = [int(parts) for parts in re.findall(r"split into (\d+) chains", log_text(workdir))]
    chains = 1 + sum(parts - 1 for parts in splits)
    assert splits and chains < 24
    # Each chain's pages are full but its last: at most one call per chain beyond the week's pages, however
    # many chains were called for (the ratio to the ideal is measured by the benchmark).
    assert len(gateway.list_calls()) <= min(24 + chains, 1.2 * 24 + 5)
    assert sorted(container["uuid"] for container in stored(workdir)) == sorted(r.uuid for r in gateway.records)
    assert in_time_order(stored(workdir))


def test_a_week_is_split_only_when_the_gateways_numbers_call_for_more_requests(run, gateway, workdir):
    gateway.generate(1200, dt.date(2025, 9, 1), dt.date(2025, 9, 8))  # 5 pages
    assert run(*WEEK) == 0  # 1200 calls a window, and answers that take no time on the run's clock: one in flight
    assert len(gateway.list_calls()) == 5 and "split into" not in log_text(workdir)


def test_an_opaque_cursor_is_never_sent_with_another_range(run, gateway, workdir):
    gateway.lag = "tight"  # the first page shows the pages to come, so it is split
    gateway.generate(1300, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    split_freely(gateway)
    gateway.cursor_style = "opaque"  # the gateway refuses a cursor with any other filter than its own
    assert run(*WEEK) == 0
    assert sorted(container["uuid"] for container in stored(workdir)) == sorted(r.uuid for r in gateway.records)
    asked = ranges(gateway.list_calls())
    assert len(asked) > 1  # the week's first page was fetched again as chains, from their own first pages
    for call in gateway.list_calls():
        if "paginationQuery" in call["params"]:
            assert gateway.open_cursor(call["params"]["paginationQuery"][0], call["params"]["filter"][0]) is not None


def test_a_failed_slice_fails_its_whole_week_writes_nothing_and_stops_its_other_slices(run, gateway, workdir):
    gateway.generate(10000, dt.date(2025, 9, 1), dt.date(2025, 9, 8))  # 40 pages
    gateway.generate(50, dt.date(2025, 9, 8), dt.date(2025, 9, 15))
    split_freely(gateway)
    gateway.latency_seconds = 0.1  # a page takes longer than the failure takes to reach the other chains
    gateway.faults = [Fault("status", status=404, with_cursor=True, week_start_ms=START)]  # the week's 2nd page
    assert run(*week_range("2025-09-01", "2025-09-15"), "--workers", "4") == 1  # chains of several pages
    first_week = [call for call in gateway.list_calls() if int(call["params"]["filter"][0][9:22]) < ms(2025, 9, 8)]
    assert len(first_week) < 20  # the other chains stopped soon after, not all their pages
    assert files(workdir / "weekly_reports") == ["2025-09-08_2025-09-15.json"]
    assert files(workdir / "weekly_csv_reports") == ["2025-09-08_2025-09-15.csv"]
    assert files(workdir / "temp_reports") == [".lock"]
    assert "2025-09-01..2025-09-08 FAILED: HTTP 404" in log_text(workdir)


def test_one_page_weeks_cost_one_call_each_and_a_split_costs_few_extra(run, gateway, workdir):
    gateway.generate(20 * 100, dt.date(2025, 1, 6), dt.date(2025, 5, 26))  # 20 weeks of 100 containers
    split_freely(gateway)
    assert run(*week_range("2025-01-06", "2025-05-26")) == 0
    assert len(gateway.list_calls()) == 20
    gateway.generate(400, dt.date(2025, 6, 2), dt.date(2025, 6, 9))  # a 2-page week
    gateway.calls.clear()
    assert run(*week_range("2025-06-02", "2025-06-09"), "--output_dir", "two") == 0
    assert len(gateway.list_calls()) <= 2 + 3  # a few calls more than its pages, at most
    gateway.generate(2400, dt.date(2025, 6, 9), dt.date(2025, 6, 16))  # a 10-page week
    gateway.calls.clear()
    assert run(*week_range("2025-06-09", "2025-06-16"), "--output_dir", "ten") == 0
    assert len(gateway.list_calls()) <= 1.2 * 10 + 5


def test_a_container_the_gateway_serves_in_two_slices_is_kept_once(run, gateway, workdir):
    gateway.lag = "tight"  # the first page shows the pages to come, so it is split
    gateway.generate(1300, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    gateway.add_raw(ms(2025, 9, 2), '{"uuid": "no-created", "name": "nothing proves it wrong"}')
    split_freely(gateway)
    gateway.cursor_style = "opaque"  # chains start from their own first pages
    gateway.faults = [Fault("ignore-ranges", times=-1)]  # every chain gets the whole week: a gateway bug
    assert run(*WEEK) == 0
    uuids = [container["uuid"] for container in stored(workdir)]
    assert len(uuids) == len(set(uuids)) == 1301
    assert run(*WEEK, "--slices", "1", "--output_dir", "chain") == 0
    assert (workdir / "weekly_csv_reports" / "2025-09-01_2025-09-08.csv").read_bytes() == \
        (workdir / "chain" / "weekly_csv_reports" / "2025-09-01_2025-09-08.csv").read_bytes()
    log = log_text(workdir)
    assert "created outside the range asked for" in log  # each chain left out the others' containers
    assert "came in two chains; kept once" in log  # the one without created, served to every chain


def test_a_page_that_breaks_after_its_containers_is_rolled_back_before_the_retry(run, gateway, workdir):
    for number in range(3):  # no uuid: de-duplication could not hide a page written twice
        gateway.add_raw(ms(2025, 9, 2) + number, f'{{"name": "no-uuid-{number}"}}')
    gateway.faults = [Fault("garbled")]
    assert run(*WEEK) == 0
    assert sorted(container["name"] for container in stored(workdir)) == ["no-uuid-0", "no-uuid-1", "no-uuid-2"]
    csv_text = (workdir / "weekly_csv_reports" / "2025-09-01_2025-09-08.csv").read_bytes().decode("utf-8-sig")
    assert len(csv_text.splitlines()) == 1 + 3
