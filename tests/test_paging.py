"""Paging: the Link cursor in every shape, every last-page form, and boundary containers."""
import datetime as dt
import json

import pytest

from conftest import files, ms, week_range
from fake_gateway import LAST_PAGE_STYLES, NEXT_LINK_STYLES

WEEK = week_range("2025-09-01", "2025-09-08") + ["--slices", "1"]  # one chain of pages: the paging itself


def stored(workdir, name="2025-09-01_2025-09-08.json"):
    return json.loads((workdir / "weekly_reports" / name).read_text())


def fill_week(gateway, count):
    gateway.generate(count, dt.date(2025, 9, 1), dt.date(2025, 9, 8))
    return {record.uuid for record in gateway.records}


@pytest.mark.parametrize("style", NEXT_LINK_STYLES)
def test_every_next_link_shape_is_followed_through_the_configured_gateway(style, run, gateway, workdir):
    gateway.next_link_style = style
    uuids = fill_week(gateway, 600)  # three pages
    assert run(*WEEK) == 0
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
    assert run(*WEEK) == 0
    assert {container["uuid"] for container in stored(workdir)} == uuids
    assert len(gateway.list_calls()) == 2


@pytest.mark.parametrize("empty_style", ["empty-list", "null", "missing", "204"])
def test_a_full_last_page_followed_by_an_empty_one_ends_the_week(empty_style, run, gateway, workdir):
    gateway.empty_style = empty_style
    uuids = fill_week(gateway, 500)  # exactly two full pages, then a Link to nothing
    assert run(*WEEK) == 0
    assert {container["uuid"] for container in stored(workdir)} == uuids
    assert len(gateway.list_calls()) == 3


@pytest.mark.parametrize("empty_style", ["empty-list", "null", "missing", "204"])
def test_an_empty_week_is_written_as_an_empty_array_without_a_csv(empty_style, run, gateway, workdir):
    gateway.empty_style = empty_style
    assert run(*WEEK) == 0
    assert (workdir / "weekly_reports" / "2025-09-01_2025-09-08.json").read_text() == "[]\n"
    assert files(workdir / "weekly_csv_reports") == []


def test_a_repeated_cursor_stops_the_paging_loop(run, gateway, workdir):
    gateway.repeat_cursor = True
    fill_week(gateway, 800)
    assert run(*WEEK) == 0
    assert len(gateway.list_calls()) == 2  # page 2 names its own cursor again: the guard stops there
    assert len(stored(workdir)) == 500


def test_a_single_object_in_place_of_the_data_list_is_one_container(run, gateway, workdir):
    gateway.single_object_data = True
    gateway.add_container(ms(2025, 9, 2), name="lonely")
    assert run(*WEEK) == 0
    assert [container["name"] for container in stored(workdir)] == ["lonely"]


def test_boundary_containers_land_in_exactly_one_week(run, gateway, workdir):
    gateway.add_container(ms(2025, 9, 8), name="at-start-of-week-2")
    gateway.add_container(ms(2025, 9, 8) - 1, name="last-ms-of-week-1")
    gateway.add_container(ms(2025, 9, 1), name="at-start-of-week-1")
    gateway.add_container(ms(2025, 9, 15), name="at-the-exclusive-end")
    assert run(*week_range("2025-09-01", "2025-09-15")) == 0
    first = [container["name"] for container in stored(workdir)]
    second = [container["name"] for container in stored(workdir, "2025-09-08_2025-09-15.json")]
    assert sorted(first) == ["at-start-of-week-1", "last-ms-of-week-1"]
    assert second == ["at-start-of-week-2"]


def test_a_container_served_twice_by_the_keyset_cursor_is_kept_once(run, gateway, workdir):
    fill_week(gateway, 400)
    moved = sorted(gateway.records, key=lambda record: (record.updated_ms, record.uuid))[3].uuid
    gateway.touch_uuids = {moved}
    assert run(*WEEK) == 0
    assert gateway.served.count(moved) == 2  # the gateway really did serve it twice
    uuids = [container["uuid"] for container in stored(workdir)]
    assert len(uuids) == 400 and uuids.count(moved) == 1


def test_the_user_filter_is_parenthesized_so_an_or_cannot_escape_the_week(run, gateway, workdir):
    gateway.generate(200, dt.date(2025, 8, 1), dt.date(2025, 10, 1))
    week_start, week_end = ms(2025, 9, 1), ms(2025, 9, 8)
    expected = {record.uuid for record in gateway.records if week_start <= record.created_ms < week_end
                and record.core["state"] in ("RUNNING", "STOPPED")}
    assert run(*week_range("2025-09-01", "2025-09-08"), "--optional_filter", "state:RUNNING or state:STOPPED") == 0
    [name] = files(workdir / "weekly_reports")
    assert {container["uuid"] for container in stored(workdir, name)} == expected
    assert gateway.list_calls()[0]["params"]["filter"][0].endswith(" and (state:RUNNING or state:STOPPED)")


def test_each_container_is_stored_exactly_as_the_api_sent_it(run, gateway, workdir):
    fill_week(gateway, 30)
    assert run(*WEEK) == 0
    sent = {record.uuid: gateway.container_json(record) for record in gateway.records}
    for container in stored(workdir):
        assert container == sent[container["uuid"]]
    assert any(container["command"] == "null" for container in stored(workdir))
    assert any(container["host"] is None for container in stored(workdir))
