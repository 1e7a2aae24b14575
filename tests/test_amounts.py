"""Amounts read from words and written for people."""

from __future__ import annotations

from sandbox.amounts import among, money_text, price_is_stated, prices_in
from tests.handmade import shipped


def test_prices_in_reads_the_common_ways_of_writing_an_amount():
    text = "19200USD, $19,200.50, USD 1.2M, 3 million, 20k/year, 10K, 4.87 and 21 thousand."
    assert prices_in(text) == [19200, 19200.5, 1_200_000, 3_000_000, 20_000, 10_000, 4.87, 21_000]


def test_a_multiplier_is_only_a_whole_word():
    assert prices_in("5 kids, 12 months, 3 keys") == [5, 12, 3]  # not 5,000 kids nor 12 million months


def test_stated_within_tolerance_but_exact_for_a_private_figure():
    assert price_is_stated(19200, "We could do 19,250.")  # within 0.5 %: the offer's own words
    assert not price_is_stated(4.87, "Compared to what?")
    assert among(19200, prices_in("our floor is $19.2k")) and not among(19200, prices_in("maybe 19,250"))


def test_money_keeps_the_scenarios_format_and_its_cents():
    scenario = shipped().scenario("saas-seats")
    assert money_text(scenario, 19200) == "19,200 USD" == scenario.money(19200)
    assert money_text(scenario, 4.87) == "4.87 USD"  # the scenario's own format would write "5 USD"
    assert money_text(scenario, None) is None
