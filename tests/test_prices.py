"""`make prices`: the price table refreshed from AWS Price List bulk files (recorded, small, same format)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from preview import prices

FIXTURES = Path(__file__).parent / "fixtures"
OFFERS = FIXTURES / "price-list"
SMALL = FIXTURES / "prices-small.yaml"


def test_refresh_sets_the_list_prices_and_dates_and_keeps_the_comments():
    text, report = prices.refresh(SMALL.read_text(), OFFERS)
    new = yaml.safe_load(text)
    # Changed in the recorded files: m6i.large (0.096 -> 0.097), the interface endpoint (0.01 -> 0.011).
    assert report == ["instances.m6i.large.onDemand: 0.096 -> 0.097", "vpcInterfaceEndpointPerAzHour: 0.01 -> 0.011"]
    assert new["instances"]["m6i.large"] == {"onDemand": 0.097, "spotTypical": 0.037}   # spot is not in the files
    assert new["rdsPostgresPerHour"]["db.t4g.medium"] == 0.065 and new["natGatewayPerHour"] == 0.045
    assert new["sources"]["ec2"]["read"] == "2026-11-20" and "AmazonEC2 20261120210228" in new["sources"]["ec2"]["url"]
    # A source fed by two offers is dated by the older file (vpc: EC2's NAT gateway and the VPC offer).
    assert new["sources"]["vpc"]["read"] == "2026-11-12"
    assert new["sources"]["ec2Spot"]["read"] == "2025-07"                                   # not refreshed
    assert "# source: eks (standard support)" in text and "eksControlPlanePerHour: 0.10 " in text   # layout kept
    assert text.count("\n") == SMALL.read_text().count("\n")


def test_rows_are_chosen_by_every_column_of_the_query():
    """The recorded EC2 file also has Windows, Dedicated, Reserved and unused-reservation rows for m6i.large."""
    spec = yaml.safe_load(prices.QUERIES_FILE.read_text())
    query = copy.deepcopy(spec["queries"][0])
    [(key, _, code, match)] = prices.expand([query], {"instances": {"m6i.large": {}}})
    with (OFFERS / code / "us-east-1" / "index.csv").open() as f:
        offer = prices.read_offer(f, [match, {k: v for k, v in match.items() if k != "Tenancy"}])
    assert prices.price_of(offer, match, key) == 0.097
    # Mutation: without the tenancy column, the Dedicated row matches too and the price is ambiguous.
    with pytest.raises(prices.PriceListError, match="several prices"):
        prices.price_of(offer, {k: v for k, v in match.items() if k != "Tenancy"}, key)


def test_a_missing_row_or_file_fails_and_changes_nothing(tmp_path, capsys):
    table = tmp_path / "prices.yaml"
    table.write_text(SMALL.read_text().replace("db.t4g.medium: 0.065", "db.r9.huge: 1.0"))
    before = table.read_text()
    assert prices.main(["--offers", str(OFFERS), "--prices", str(table)]) == 1
    assert "rdsPostgresPerHour.db.r9.huge: no row in AmazonRDS" in capsys.readouterr().err
    assert prices.main(["--offers", str(tmp_path / "none"), "--prices", str(table)]) == 1
    assert table.read_text() == before


def test_every_query_finds_its_key_in_the_shipped_price_table():
    text = prices.PRICES_FILE.read_text()
    current = yaml.safe_load(text)
    spec = yaml.safe_load(prices.QUERIES_FILE.read_text())
    for key, source, _, _ in prices.expand(spec["queries"], current):
        value = current
        for k in key:
            value = value[k]
        assert yaml.safe_load(prices.set_value(text, key, float(value) + 1)) != current, key
        assert source in current["sources"], source
