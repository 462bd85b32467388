"""Throughput: pacing by the X-RateLimit headers, how many pages go in flight, and when and where a
chain of pages is split. Rules, tested as pure functions with made-up pages and a fake clock; the
speed they give is measured by tests/benchmark.py, never here."""
import pytest

import weeklycontainerreport as wcr

HOUR = 3_600_000
DAY = 24 * HOUR


def page(low_ms, high_ms, count=wcr.PAGE_LIMIT):
    """The created times of a page whose containers lie evenly over [low_ms, high_ms)."""
    return [low_ms + (high_ms - low_ms) * number // count for number in range(count)]


def limit_headers(calls, seconds, remaining=1):
    return {"X-RateLimit-Limit": str(calls), "X-RateLimit-Window-Sec": str(seconds), "X-RateLimit-Remaining": str(remaining)}


def tiles(bounds, low_ms, high_ms):
    return bounds[0][0] == low_ms and bounds[-1][1] == high_ms and all(
        high == following for (_, high), (following, _) in zip(bounds, bounds[1:]))


# --- Pacing ----------------------------------------------------------------------------------


def test_the_pacer_keeps_a_little_under_the_limit_and_no_window_holds_more_than_allowed(clock):
    pacer = wcr.Pacer(clock, cap_seconds=900)
    pacer.learn(limit_headers(30, 60), pacer.wait_turn())
    sent = [pacer.wait_turn() for _ in range(200)]
    allowed, interval = int(30 / wcr.Pacer.MARGIN), 60 / 30 * wcr.Pacer.MARGIN
    assert all(sum(1 for stamp in sent if start <= stamp < start + 60) <= allowed for start in sent)
    assert (sent[-1] - sent[0]) / (len(sent) - 1) >= interval * 0.95  # 5% under the limit over the long run


def test_calls_missed_waiting_for_the_first_answer_are_caught_up_but_no_window_holds_more_than_allowed(clock):
    pacer = wcr.Pacer(clock, cap_seconds=900)
    first = pacer.wait_turn()  # before any header told the limit
    clock.advance(30.0)  # its answer took 30 s: the gateway would have allowed 60 calls meanwhile
    pacer.learn(limit_headers(120, 60, remaining=119), first)
    sent = [first] + [pacer.wait_turn() for _ in range(300)]
    interval, allowed = 60 / 120 * wcr.Pacer.MARGIN, int(120 / wcr.Pacer.MARGIN)
    at_once = sent.count(sent[1])
    assert 11 <= at_once <= 12  # a catch-up of a tenth of the window's 114 allowed calls, no more
    settled = sent[at_once + 1:]  # after the catch-up (and what was left of its last interval)
    assert min(later - earlier for earlier, later in zip(settled, settled[1:])) >= interval - 1e-9  # even, no burst
    assert all(sum(1 for stamp in sent if start <= stamp < start + 60) <= allowed for start in sent)


def test_calls_left_unsent_while_few_requests_were_going_are_banked_across_answers_up_to_a_tenth(clock):
    pacer = wcr.Pacer(clock, cap_seconds=900)
    headers = limit_headers(120, 60, remaining=100)
    interval = 60 / 120 * wcr.Pacer.MARGIN
    pacer.learn(headers, pacer.wait_turn())
    for _ in range(20):  # one request at a time, answered after three intervals: the spacing allowed three
        clock.advance(3 * interval)
        pacer.learn(headers, pacer.wait_turn())
    sent = [pacer.wait_turn() for _ in range(40)]  # a split: many chains want to go at once
    at_once = sent.count(sent[0])
    assert 10 <= at_once <= 12  # the unsent calls, banked across every answer, up to a tenth of 114
    settled = sent[at_once + 1:]
    assert min(later - earlier for earlier, later in zip(settled, settled[1:])) >= interval - 1e-9  # then even


def test_after_a_hold_calls_go_one_interval_apart_not_all_at_once(clock):
    pacer = wcr.Pacer(clock, cap_seconds=900)
    pacer.learn(limit_headers(120, 60), pacer.wait_turn())
    clock.advance(120.0)  # idle: a tenth of the window's calls banked
    pacer.hold(30.0)  # a 429 said: wait 30 s
    now = clock.monotonic()
    sent = [pacer.wait_turn() for _ in range(5)]
    assert sent[0] == pytest.approx(now + 30.0)
    assert all(later - earlier >= 60 / 120 * wcr.Pacer.MARGIN - 1e-9 for earlier, later in zip(sent, sent[1:]))


@pytest.mark.parametrize("headers", [limit_headers(0, 60), limit_headers(-5, 60), limit_headers(120, 0),
                                     limit_headers("nan", 60), {"X-RateLimit-Limit": "120"}])
def test_a_limit_that_is_not_one_paces_nothing(clock, headers):
    pacer = wcr.Pacer(clock, cap_seconds=900)
    pacer.learn(headers, pacer.wait_turn())
    assert [pacer.wait_turn() for _ in range(50)] == [clock.monotonic()] * 50 and clock.sleeps == []


@pytest.mark.parametrize("headers", [limit_headers(1, 10 ** 9), limit_headers(1, 1e300, remaining=0)])
def test_no_turn_ever_waits_longer_than_the_cap(clock, headers):
    pacer = wcr.Pacer(clock, cap_seconds=900)
    pacer.learn(headers, pacer.wait_turn())
    for _ in range(5):
        pacer.wait_turn()
    assert clock.sleeps and max(clock.sleeps) <= 900


# --- Pages in flight -------------------------------------------------------------------------


@pytest.mark.parametrize("rate, answer, processing, ceiling, wanted", [
    (20.0, None, None, 32, 1),  # no page yet: one
    (20.0, 0.6, 0.0, 32, 15),  # 20 calls a second x 0.6 s a page, with a margin of 1.2
    (20.0, 0.2, 0.01, 32, 6),  # 20 x 0.21 x 1.2
    (20.0, 0.6, 0.3, 32, 4),  # processing binds: 1 + 0.6 / 0.3 pages keep it busy, x 1.2
    (20.0, 0.6, 0.0, 2, 2),  # --workers is the ceiling
    (None, 0.6, 0.0, 32, 32),  # no rate told and nothing to process: the ceiling
])
def test_the_pages_wanted_in_flight_follow_the_rate_the_time_a_page_takes_and_the_ceiling(
        rate, answer, processing, ceiling, wanted):
    assert wcr.pages_in_flight(rate, answer, processing, ceiling) == wanted


def test_the_time_a_page_takes_to_process_is_its_cpu_time_not_its_wait_for_the_others(clock):
    throughput = wcr.Throughput(clock, ceiling=32, cap_seconds=900)
    times = iter([5.0, 5.25])  # the page's CPU time: 0.25 s, whatever the wall clock did meanwhile
    clock.thread_cpu = lambda: next(times)
    with throughput.processing():
        clock.advance(2.0)
    assert throughput.processing_seconds == pytest.approx(0.25)


# --- When and where a chain is split -----------------------------------------------------------


def test_a_page_whose_order_follows_created_shows_as_many_pages_past_it_as_dense():
    assert wcr.pages_to_come(0, 10 * HOUR, page(0, HOUR), 1) == pytest.approx(9.0, rel=0.01)


def test_a_page_that_samples_the_whole_range_tells_only_the_pages_shown():
    assert wcr.pages_to_come(0, 10 * HOUR, page(0, 10 * HOUR), 3) == 3.0  # updated lags: a sample, not a count
    assert wcr.pages_to_come(0, 10 * HOUR, [5 * HOUR], 2) == 2.0


def test_a_split_puts_its_parts_where_the_containers_are():
    burst, rest = page(5 * HOUR, 6 * HOUR, 200), page(0, 10 * HOUR, 50)
    bounds = wcr.split_plan(0, 10 * HOUR, burst + rest, 5)
    assert len(bounds) == 5 and tiles(bounds, 0, 10 * HOUR)
    assert sum(1 for low, _ in bounds[1:] if 5 * HOUR <= low <= 6 * HOUR) >= 3  # four in five are in the burst


def test_a_split_of_a_page_whose_order_follows_created_cuts_what_lies_past_it_evenly():
    bounds = wcr.split_plan(0, 10 * HOUR, page(0, HOUR), 10)
    assert len(bounds) == 10 and tiles(bounds, 0, 10 * HOUR)
    assert all(abs((high - low) - HOUR) < 0.05 * HOUR for low, high in bounds)


def test_no_part_is_narrower_than_a_second():
    bounds = wcr.split_plan(0, 5000, [0, 1, 2, 3], 10)
    assert tiles(bounds, 0, 5000) and 2 <= len(bounds) <= 5
    assert all(high - low >= wcr.MIN_CHAIN_MS for low, high in bounds)


def slow_gateway(clock):
    """The throughput of a run whose gateway allows 120 calls per 6 s and answers in 0.6 s: 14 pages wanted."""
    throughput = wcr.Throughput(clock, ceiling=32, cap_seconds=900)
    throughput.pacer.learn(limit_headers(120, 6), 0.0)
    throughput.answered(0.6)
    with throughput.processing():
        pass
    assert throughput.wanted() == 14
    return throughput


def test_a_chain_is_split_while_more_pages_are_wanted_in_flight_than_chains_are_alive(clock):
    throughput = slow_gateway(clock)
    narrow = page(0, HOUR)  # nine pages to come
    assert len(throughput.split(0, 10 * HOUR, narrow, 1, others=0, most=64)) == 9
    assert len(throughput.split(0, 10 * HOUR, narrow, 1, others=11, most=64)) == 3
    assert throughput.split(0, 10 * HOUR, narrow, 1, others=13, most=64) == []
    assert len(throughput.split(0, 10 * HOUR, narrow, 1, others=0, most=4)) == 4  # --slices


def test_a_two_page_week_is_not_split_at_its_first_page(clock):
    throughput = slow_gateway(clock)
    assert throughput.split(0, 7 * DAY, page(0, 6 * DAY), 1, others=0, most=64) == []  # under two pages to come


def test_a_chain_whose_pages_sample_its_whole_range_is_split_by_the_pages_it_has_shown(clock):
    throughput = slow_gateway(clock)
    wide = page(0, 10 * HOUR)
    assert throughput.split(0, 10 * HOUR, wide, 1, others=0, most=64) == []
    bounds = throughput.split(0, 10 * HOUR, wide, 4, others=0, most=64)
    assert len(bounds) == 4 and tiles(bounds, 0, 10 * HOUR)
