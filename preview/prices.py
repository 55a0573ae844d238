"""`make prices`: refresh components/data/prices.yaml from the AWS Price List bulk files.

    python -m preview.prices                 # download the offers' CSV files for the region, then update
    python -m preview.prices --offers DIR    # read DIR/<offer>/<region>/index.csv instead (recorded files)

The queries (which rows give which price) are in components/data/price-list.yaml. The CSV files are read as a
stream (the EC2 file is several hundred MB). prices.yaml is edited in place, value by value, so its comments and
layout stay; each refreshed source gets the offer's publication date and version. Exit 1, changing nothing, when a
query finds no row or several different prices.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

DATA = Path(__file__).resolve().parent.parent / "components" / "data"
PRICES_FILE = DATA / "prices.yaml"
QUERIES_FILE = DATA / "price-list.yaml"
OFFER_URL = "https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/{offer}/current/{region}/index.csv"
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "price-list"


class PriceListError(Exception):
    pass


@dataclass
class Offer:
    code: str
    published: str      # YYYY-MM-DD
    version: str
    rows: list[dict[str, str]]


def read_offer(lines: Iterator[str], wanted: list[dict[str, str]]) -> Offer:
    """An offer CSV: five `"Name","value"` metadata lines, the header, then rows. Keeps OnDemand rows that match
    one of `wanted` (column -> value or `~suffix`), so the big files are never held in memory."""
    meta = {}
    reader = csv.reader(lines)
    for _ in range(5):
        name, value = next(reader)[:2]
        meta[name] = value
    header = next(reader)
    index = {name: i for i, name in enumerate(header)}
    missing = {c for w in wanted for c in w} - set(index)
    if missing:
        raise PriceListError(f"offer {meta.get('OfferCode')}: no column {sorted(missing)} in the file's header")
    kept = []
    for row in reader:
        if row[index["TermType"]] != "OnDemand":
            continue
        for w in wanted:
            if all(_matches(row[index[c]], v) for c, v in w.items()):
                kept.append({name: row[i] for name, i in index.items()})
                break
    return Offer(meta["OfferCode"], meta["Publication Date"][:10], meta["Version"], kept)


def _matches(value: str, want: str) -> bool:
    return value.endswith(want[1:]) if want.startswith("~") else value == want


def expand(queries: list[dict[str, Any]], prices: dict[str, Any]) -> list[tuple[tuple[str, ...], str, str, dict]]:
    """(price key path, source, offer, columns) for every price, `{item}` expanded over the `each:` map."""
    out = []
    for q in queries:
        items = list(prices.get(q["each"]) or {}) if q.get("each") else [None]
        for item in items:
            fill = (lambda s: s.replace("{item}", item)) if item else (lambda s: s)
            out.append((tuple(fill(k) for k in q["key"]), q["source"], q["offer"],
                        {c: fill(v) for c, v in q["match"].items()}))
    return out


def price_of(offer: Offer, match: dict[str, str], key: tuple[str, ...]) -> float:
    rows = [r for r in offer.rows if all(_matches(r[c], v) for c, v in match.items())]
    if len(rows) > 1:     # tiered prices: the first tier is what a small platform pays
        rows = [r for r in rows if r.get("StartingRange", "0") in ("0", "0.0")] or rows
    found = {float(r["PricePerUnit"]) for r in rows}
    if len(found) != 1:
        what = "no row" if not found else f"several prices {sorted(found)}"
        raise PriceListError(f"{'.'.join(key)}: {what} in {offer.code} for {match}")
    return found.pop()


def set_value(text: str, path: tuple[str, ...], value: Any) -> str:
    """Set one scalar in YAML text, keeping comments and layout: block mappings (`key: 1.0  # why`) and one-line
    flow mappings (`m5.large: {onDemand: 0.096, spotTypical: 0.038}`)."""
    rendered = (f"{value:.6f}".rstrip("0").rstrip(".") if isinstance(value, float) else
                f'"{value}"' if isinstance(value, str) else str(value))
    stack: list[tuple[int, str]] = []
    lines = text.split("\n")
    for n, line in enumerate(lines):
        m = re.match(r"^(\s*)(\"[^\"]+\"|[^\s:#][^:#]*?):(\s*)(.*)$", line)
        if not m or line.lstrip().startswith("#"):
            continue
        indent, key, rest = len(m.group(1)), m.group(2).strip('"'), m.group(4)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        keys = tuple(k for _, k in stack)
        if keys == path:
            comment = re.search(r"(\s+#.*)$", rest)
            lines[n] = f"{line[:m.start(4)]}{rendered}{comment.group(1) if comment else ''}"
            return "\n".join(lines)
        if keys == path[:-1] and rest.startswith("{"):
            pattern = rf"((?:\{{|,)\s*{re.escape(path[-1])}:\s*)(\"[^\"]*\"|[^,}}]+)"
            new, count = re.subn(pattern, lambda g: g.group(1) + rendered, rest, count=1)
            if count:
                lines[n] = line[:m.start(4)] + new
                return "\n".join(lines)
    raise PriceListError(f"{'.'.join(path)} is not in {PRICES_FILE.name}")


def open_offer(offer: str, region: str, offers_dir: Path | None) -> Iterator[str]:
    if offers_dir is not None:
        path = offers_dir / offer / region / "index.csv"
        if not path.exists():
            url = OFFER_URL.format(offer=offer, region=region)
            raise PriceListError(f"{path} does not exist (download it from {url})")
        return path.open(newline="", encoding="utf-8")
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / f"{offer}-{region}.csv"
    urllib.request.urlretrieve(OFFER_URL.format(offer=offer, region=region), target)   # noqa: S310 (fixed https URL)
    return target.open(newline="", encoding="utf-8")


def refresh(prices_text: str, offers_dir: Path | None, region: str | None = None) -> tuple[str, list[str]]:
    """The new prices.yaml text and one line per changed figure."""
    spec = yaml.safe_load(QUERIES_FILE.read_text())
    region = region or spec["region"]
    current = yaml.safe_load(prices_text)
    wanted = expand(spec["queries"], current)
    offers: dict[str, Offer] = {}
    for code in sorted({o for _, _, o, _ in wanted}):
        with open_offer(code, region, offers_dir) as f:
            offers[code] = read_offer(f, [m for _, _, o, m in wanted if o == code])
    text, report = prices_text, []
    used: dict[str, dict[str, Offer]] = {}
    for key, source, code, match in wanted:
        new = price_of(offers[code], match, key)
        old = current
        for k in key:
            old = old[k]
        if abs(float(old) - new) > 1e-9:     # unchanged figures keep their spelling (0.10 stays 0.10)
            report.append(f"{'.'.join(key)}: {old} -> {new:g}")
            text = set_value(text, key, new)
        used.setdefault(source, {})[code] = offers[code]
    for source, by_code in sorted(used.items()):
        files = ", ".join(f"{o.code} {o.version}" for o in by_code.values())
        text = set_value(text, ("sources", source, "url"), f"AWS Price List bulk files ({region}): {files}")
        # the oldest file behind a source dates it
        text = set_value(text, ("sources", source, "read"), min(o.published for o in by_code.values()))
    return text, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m preview.prices", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offers", type=Path,
                        help="directory of recorded offer files: OFFERS/<offer>/<region>/index.csv")
    parser.add_argument("--region", help="price list region (default: price-list.yaml's region)")
    parser.add_argument("--prices", type=Path, default=PRICES_FILE, help="the price table to update")
    args = parser.parse_args(argv)
    try:
        text, report = refresh(args.prices.read_text(), args.offers, args.region)
    except (PriceListError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.prices.write_text(text)
    print("\n".join(report) or "no price changed", f"\nupdated {args.prices}", sep="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
