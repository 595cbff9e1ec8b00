"""OVHcloud prices for the dossier's cost estimate: a dated table, `tools/ovh_prices.json`.

Every price there carries OVH's plan code, the https source it was read from and the day it was
read; the loader refuses one without. A price read rounded (to the cent, as the copy the table holds
now shows them) carries `roundedTo`: the estimate then says how far off the total can be.

    python -m tools.ovh_prices                      # the table, with each monthly amount
    python -m tools.ovh_prices --refresh cloud.json [--date YYYY-MM-DD]

--refresh rewrites every amount from OVHcloud's own public catalogue, no account needed:

    curl -fsS -o cloud.json 'https://eu.api.ovh.com/v1/order/catalog/public/cloud?ovhSubsidiary=FR'

Each price is then exact (the catalogue counts in 10^-8 euro), dated that day (or --date) and
sourced to that URL. A plan code the catalogue no longer has (OVH renames plans: `b2-7` became
`b3-8`) is named and the table is left unchanged: exit 1. The catalogue's shape (`addons[]`, each
with `planCode` and `pricings[]` of `price`, `intervalUnit`, `capacities`) is the one OVH's order API
documents (/order/catalog/public/cloud); this machine cannot reach it, so --refresh is tested on a
catalogue of that shape, not on OVH's live answer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from pathlib import Path

TABLE = Path(__file__).resolve().parent / "ovh_prices.json"
CATALOGUE = "https://eu.api.ovh.com/v1/order/catalog/public/cloud?ovhSubsidiary=FR"
HOURS_PER_MONTH = 730  # 365 × 24 / 12: an hourly price over an average month
MICRO = 100_000_000    # the catalogue's prices are integers in 10^-8 of the currency
# What a price cannot know, said under the dossier's cost table (tools/dossier.py TEXT).
ASSUMPTIONS = ("per-node", "snapshot-at-most-the-disk")


class PriceError(ValueError):
    pass


def load(path: Path = TABLE) -> dict[str, dict]:
    """{item: entry} with, added, `monthly` (euros a month for one unit) and `margin` (how far
    rounding can put it off). Refuses an entry without plan code, https source, date or amount."""
    doc = json.loads(path.read_text()) if path.exists() else {}
    about = doc.get("sources") or {}
    out = {}
    for item, entry in (doc.get("prices") or {}).items():
        where = f"{path.name}: price of {item}"
        if not isinstance(entry, dict) or not str(entry.get("source", "")).startswith("https://"):
            raise PriceError(f"{where} has no https source")
        try:
            dt.date.fromisoformat(str(entry.get("date")))
        except ValueError:
            raise PriceError(f"{where} has no date (YYYY-MM-DD)") from None
        per = entry.get("per", "month")
        amount = entry.get("eurPerMonth" if per == "month" else "eurPerHour")
        if per not in ("month", "hour") or not _euros(amount):
            raise PriceError(f"{where} is not an amount in euros per month (eurPerMonth) or per hour "
                             f"(eurPerHour with per: hour)")
        if not isinstance(entry.get("planCode"), str) or not entry["planCode"]:
            raise PriceError(f"{where} has no planCode (OVH's name for it, to check and refresh it)")
        times, rounded = entry.get("times", 1), entry.get("roundedTo", 0)
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            raise PriceError(f"{where}: times is not a whole number of units (1 or more)")
        if not _euros(rounded):
            raise PriceError(f"{where}: roundedTo is not an amount in euros")
        if entry.get("assumes") not in (None, *ASSUMPTIONS):
            raise PriceError(f"{where}: assumes is one of {', '.join(ASSUMPTIONS)}")
        hours = HOURS_PER_MONTH if per == "hour" else 1
        out[item] = {**entry, "about": about.get(entry["source"], {}), "monthly": amount * hours * times,
                     "margin": rounded / 2 * hours * times}
    return out


def _euros(value) -> bool:
    """A finite amount of zero or more (json reads NaN and Infinity; a bool is an int to Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def estimate(inventory: list[tuple[str, int]], prices: dict[str, dict]) -> dict:
    """The monthly estimate of an inventory: rows (item, quantity, entry or None), the total and its
    margin over the priced items (how many: `priced`), the usage-billed ones (not in the total) and
    the unpriced ones."""
    rows, total, margin, usage, missing = [], 0.0, 0.0, [], []
    for item, qty in inventory:
        p = prices.get(item)
        rows.append((item, qty, p))
        if p is None:
            missing.append(item)
        elif p.get("usage"):
            usage.append(item)
        else:
            total += p["monthly"] * qty
            margin += p["margin"] * qty
    sources = sorted({(p["source"], p["date"]) for _, _, p in rows if p})
    about = {p["source"]: p["about"] for _, _, p in rows if p}
    return {"rows": rows, "priced": len(rows) - len(usage) - len(missing), "total": total, "margin": margin,
            "usage": usage, "missing": missing, "sources": sources, "about": about}


def _catalogue_prices(catalogue: dict) -> dict[str, tuple[float, str]]:
    """planCode -> (euros, hour | month | ?) of its consumption pricing for one interval, from OVH's
    catalogue JSON. OVH gives some hourly prices (databases, load balancers) the interval unit
    "none" ("price for one hour"): their plan code says .hour. or .month., and that is taken."""
    out = {}
    for addon in catalogue.get("addons") or []:
        code = addon.get("planCode", "")
        pricings = [p for p in addon.get("pricings") or [] if "consumption" in (p.get("capacities") or [])]
        pricing = next((p for p in pricings if p.get("interval", 1) == 1), None)
        if pricing is None:
            continue
        unit = pricing.get("intervalUnit", "")
        if unit not in ("hour", "month"):
            unit = "hour" if ".hour." in f"{code}." else "month" if ".month." in f"{code}." else "?"
        out[code] = (pricing["price"] / MICRO, unit)
    return out


def refresh(doc: dict, catalogue: dict, day: str, source: str = CATALOGUE) -> tuple[dict, list[str]]:
    """The table with every amount read from the catalogue; and the items it could not price."""
    currency = (catalogue.get("locale") or {}).get("currencyCode")
    if currency != "EUR":
        return doc, [f"every price: the catalogue is in {currency}, the table in euros (ask ovhSubsidiary=FR)"]
    found = _catalogue_prices(catalogue)
    missing, prices = [], {}
    for item, entry in (doc.get("prices") or {}).items():
        code = entry.get("planCode")
        if code not in found:
            missing.append(f"{item} ({code})")
            continue
        euros, unit = found[code]
        per = entry.get("per", "month")
        if unit == "?":
            missing.append(f"{item} ({code}: the catalogue gives it no hour or month interval)")
            continue
        if unit != per:
            missing.append(f"{item} ({code} is priced per {unit}, the table says per {per})")
            continue
        new = {k: v for k, v in entry.items() if k not in ("roundedTo", "eurPerMonth", "eurPerHour")}
        new["eurPerMonth" if per == "month" else "eurPerHour"] = euros
        prices[item] = {**new, "source": source, "date": day}
    sources = {source: {"fr": "le catalogue public d'OVHcloud (API de commande), tarifs exacts",
                        "en": "OVHcloud's public catalogue (order API), exact prices"}}
    about = (f"Monthly OVHcloud prices, excluding VAT, read exact from {source} on {day} by "
             "python -m tools.ovh_prices --refresh. Entries as its docstring says.")
    return {**doc, "about": about, "sources": sources, "prices": prices}, missing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.ovh_prices", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refresh", type=Path, metavar="CATALOGUE_JSON",
                    help="rewrite the amounts from OVH's catalogue saved by curl (see above)")
    ap.add_argument("--date", default=dt.date.today().isoformat(), help="the day the catalogue was read")
    ap.add_argument("--table", type=Path, default=TABLE, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        prices = load(args.table)
    except (PriceError, json.JSONDecodeError) as err:
        print(f"ovh_prices: {err}", file=sys.stderr)
        return 2
    if args.refresh is None:
        for item, p in sorted(prices.items()):
            print(f"{item:<48} {p['monthly']:>9.2f} €/month  {p['planCode']}  ({p['date']})")
        return 0
    try:
        dt.date.fromisoformat(args.date)
        catalogue = json.loads(args.refresh.read_text())
    except (OSError, ValueError) as err:
        print(f"ovh_prices: {args.refresh} or --date: {err}", file=sys.stderr)
        return 2
    doc, missing = refresh(json.loads(args.table.read_text()), catalogue, args.date)
    if missing:
        print("ovh_prices: the catalogue has no consumption price for " + "; ".join(missing)
              + ". Find the new plan code (OVH renames plans), set it in the table, run again. Nothing written.",
              file=sys.stderr)
        return 1
    args.table.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"ovh_prices: {len(doc['prices'])} prices read from {args.refresh}, dated {args.date}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
