"""The dossier's price table (tools/ovh_prices.py, tools/ovh_prices.json): every price carries its
plan code, https source and date, or the table is refused; the estimate adds what is priced, says
how far rounding can put it off, and names what is billed on use or has no price; --refresh reads
OVH's catalogue (a catalogue of the order API's shape here: this machine cannot reach OVH) and
refuses to write when OVH no longer has a plan code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.test_dossier import STACK_FILES, _cfg
from tools import dossier, ovh_prices

GOOD = {"planCode": "b3-8.consumption", "per": "hour", "eurPerHour": 0.05, "roundedTo": 0.01,
        "source": "https://www.ovhcloud.com/fr/public-cloud/prices/", "date": "2026-11-26"}


def _table(tmp_path, prices: dict, **extra) -> object:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"prices": prices, **extra}))
    return path


@pytest.mark.parametrize("bad, says", [
    ({**GOOD, "date": "last week"}, "no date"),
    ({**GOOD, "source": "a friend"}, "no https source"),
    ({k: v for k, v in GOOD.items() if k != "source"}, "no https source"),
    ({**GOOD, "eurPerHour": "cheap"}, "not an amount"),
    ({**GOOD, "eurPerHour": True}, "not an amount"),
    ({**GOOD, "eurPerHour": -1}, "not an amount"),
    ({**GOOD, "per": "week"}, "not an amount"),
    ({k: v for k, v in GOOD.items() if k != "planCode"}, "no planCode"),
    ({**GOOD, "planCode": 7}, "no planCode"),
    ({**GOOD, "eurPerHour": float("nan")}, "not an amount"),
    ({**GOOD, "eurPerHour": float("inf")}, "not an amount"),
    ({**GOOD, "times": -1}, "times is not a whole number"),
    ({**GOOD, "times": True}, "times is not a whole number"),
    ({**GOOD, "times": "50"}, "times is not a whole number"),
    ({**GOOD, "roundedTo": -0.01}, "roundedTo is not an amount"),
    ({**GOOD, "roundedTo": "cent"}, "roundedTo is not an amount"),
    ({**GOOD, "assumes": "it is cheap"}, "assumes is one of"),
])
def test_a_price_without_its_plan_code_source_date_or_amount_is_refused(tmp_path, bad, says):
    with pytest.raises(ovh_prices.PriceError, match=f"price of instance b3-8(:)? (has |is )?{says}"):
        ovh_prices.load(_table(tmp_path, {"instance b3-8": bad}))


def test_an_hourly_price_counts_730_hours_and_its_rounding(tmp_path):
    p = ovh_prices.load(_table(tmp_path, {"instance b3-8": GOOD}))["instance b3-8"]
    assert p["monthly"] == pytest.approx(36.5) and p["margin"] == pytest.approx(3.65), p


def test_the_shipped_table_holds_to_the_rule_and_prices_what_the_stacks_use():
    prices = ovh_prices.load()
    assert prices, "tools/ovh_prices.json holds no price"
    used = {item for path in STACK_FILES for item, _ in dossier.inventory(_cfg(path))}
    unpriced = used - set(prices) - {"file storage share (the proxies' certificates)"}
    assert not unpriced, f"the stacks and examples use {sorted(unpriced)}, which tools/ovh_prices.json does not price"
    for item, p in prices.items():
        assert p["about"], f"{item}: its source {p['source']} is not described under 'sources'"


def test_the_estimate_adds_the_priced_and_names_the_rest(tmp_path):
    prices = ovh_prices.load(_table(tmp_path, {
        "instance b3-8": GOOD,
        "floating IP": {**GOOD, "planCode": "floatingip", "per": "month", "eurPerMonth": 1.8, "roundedTo": 0},
        "object storage bucket": {**GOOD, "planCode": "storage", "per": "month", "eurPerMonth": 0.01,
                                  "usage": "GB stored"},
        "instance snapshot of b3-8 (kept)": {**GOOD, "planCode": "snapshot", "per": "month",
                                              "eurPerMonth": 0.01, "times": 50,
                                              "assumes": "snapshot-at-most-the-disk"}}))
    inv = [("instance b3-8", 2), ("floating IP", 1), ("object storage bucket", 3),
           ("instance snapshot of b3-8 (kept)", 7), ("load balancer small", 1)]
    est = ovh_prices.estimate(inv, prices)
    assert est["total"] == pytest.approx(2 * 36.5 + 1.8 + 7 * 0.5), est
    assert est["margin"] == pytest.approx(2 * 3.65 + 7 * 0.25), est
    assert est["usage"] == ["object storage bucket"] and est["missing"] == ["load balancer small"], est
    text = dossier.cost_section(inv, prices, dossier.TEXT["en"])
    assert "≈ 78.30 €" in text and "± 9.05 €" in text, text
    assert "Without: load balancer small" in text and "On top, depending on use: object storage bucket" in text
    complete = dossier.cost_section(inv[:2], prices, dossier.TEXT["fr"])
    assert "Sans :" not in complete and "≈ 74.80 €" in complete, complete
    assert "Aucun tarif daté" in dossier.cost_section(inv, {}, dossier.TEXT["fr"]), "an empty table must be said"
    assert dossier.TEXT["en"]["assumes_snapshot-at-most-the-disk"] in text, "the snapshot's upper bound is not said"
    assert "Hypothèse" not in complete, "an assumption said of rows that do not need it"
    unpriced = dossier.cost_section([("load balancer small", 1), ("object storage bucket", 1)], prices,
                                    dossier.TEXT["fr"])
    assert "Total" not in unpriced, f"a total of nothing priced:\n{unpriced}"
    for assumption in ovh_prices.ASSUMPTIONS:
        for lang in ("fr", "en"):
            assert dossier.TEXT[lang].get(f"assumes_{assumption}"), f"{lang}: no text for the assumption {assumption}"


def _catalogue(**prices) -> dict:
    """A catalogue of the order API's shape: addons, each a planCode with pricings in 10^-8 euro."""
    return {"locale": {"currencyCode": "EUR", "subsidiary": "FR"}, "addons": [
        {"planCode": code, "product": "x", "pricings": [
            {"capacities": ["installation"], "intervalUnit": "none", "price": 0},
            {"capacities": ["consumption"], "intervalUnit": unit, "price": price}]}
        for code, (price, unit) in prices.items()]}


def _run(*args):
    return subprocess.run([sys.executable, "-m", "tools.ovh_prices", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_refresh_reads_exact_prices_from_the_catalogue(tmp_path):
    table = _table(tmp_path, {"instance b3-8": GOOD, "floating IP": {
        **GOOD, "planCode": "floatingip.month", "per": "month", "eurPerMonth": 1.8}}, sources={"x": {}})
    cat = tmp_path / "cloud.json"
    cat.write_text(json.dumps(_catalogue(**{"b3-8.consumption": (5_120_000, "hour"),
                                            "floatingip.month": (180_000_000, "month"),
                                            "databases.pg-db1-4.hour.consumption": (6_800_000, "none")})))
    doc = json.loads(table.read_text())
    doc["prices"]["database pg"] = {**GOOD, "planCode": "databases.pg-db1-4.hour.consumption"}
    table.write_text(json.dumps(doc))
    done = _run("--refresh", str(cat), "--date", "2026-11-20", "--table", str(table))
    assert done.returncode == 0, done.stderr
    prices = ovh_prices.load(table)
    assert prices["instance b3-8"]["eurPerHour"] == pytest.approx(0.0512), prices
    assert prices["instance b3-8"]["margin"] == 0 and prices["floating IP"]["monthly"] == pytest.approx(1.8)
    assert {p["date"] for p in prices.values()} == {"2026-11-20"}
    assert {p["source"] for p in prices.values()} == {ovh_prices.CATALOGUE}
    assert all(p["about"] for p in prices.values()), "the catalogue is not described under 'sources'"
    assert prices["database pg"]["eurPerHour"] == pytest.approx(0.068), "an hourly price of unit 'none' not read"
    assert "third party" not in json.loads(table.read_text()).get("about", ""), "the table still says it is a copy"


def test_refresh_names_a_plan_code_ovh_renamed_and_writes_nothing(tmp_path):
    table = _table(tmp_path, {"instance b3-8": GOOD, "floating IP": {
        **GOOD, "planCode": "floatingip.month", "per": "month", "eurPerMonth": 1.8}})
    before = table.read_text()
    cat = tmp_path / "cloud.json"
    cat.write_text(json.dumps(_catalogue(**{"b3-8.consumption.v2": (5_120_000, "hour"),
                                            "floatingip.month": (180_000_000, "none")})))
    done = _run("--refresh", str(cat), "--table", str(table))
    assert done.returncode == 1, done.stderr
    assert "instance b3-8 (b3-8.consumption)" in done.stderr, done.stderr
    assert "floatingip.month is priced per month" not in done.stderr, "a .month. plan code read as another unit"
    assert table.read_text() == before, "a refused refresh changed the table"
    cat.write_text(json.dumps(_catalogue(**{"b3-8.consumption": (5_120_000, "none"),
                                            "floatingip.month": (180_000_000, "hour")})))
    mixed = _run("--refresh", str(cat), "--table", str(table))
    assert mixed.returncode == 1 and "b3-8.consumption: the catalogue gives it no hour or month interval" in mixed.stderr, mixed.stderr
    assert "floatingip.month is priced per hour, the table says per month" in mixed.stderr, mixed.stderr
    dollars = _catalogue(**{"b3-8.consumption": (5_120_000, "hour"), "floatingip.month": (180_000_000, "month")})
    cat.write_text(json.dumps({**dollars, "locale": {"currencyCode": "USD"}}))
    usd = _run("--refresh", str(cat), "--table", str(table))
    assert usd.returncode == 1 and "in USD" in usd.stderr, usd.stderr
    assert table.read_text() == before, "a refused refresh changed the table"


def test_the_command_line_lists_the_table_and_refuses_bad_input(tmp_path):
    listed = _run()
    assert listed.returncode == 0 and "€/month" in listed.stdout, listed.stderr
    bad = _table(tmp_path, {"instance b3-8": {**GOOD, "date": "soon"}})
    refused = _run("--table", str(bad))
    assert refused.returncode == 2 and "no date" in refused.stderr and "Traceback" not in refused.stderr
    missing = _run("--refresh", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "nope.json" in missing.stderr and "Traceback" not in missing.stderr
