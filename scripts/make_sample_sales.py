"""Generate a retail sales CSV that matches contracts/retail_sales.yaml, with realistic volume, some duplicates
and a small share of bad rows of each kind the clean job quarantines. Deterministic for a given seed.

    python scripts/make_sample_sales.py --rows 200000 --out .demo/input/retail_sales.csv
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime
from pathlib import Path

HEADER = "transaction_id,store_id,sku,quantity,unit_price,discount,currency,sold_at,channel"
# Each store sells in one currency; WEB is the web shop.
STORES = [(f"S{n:03d}", cur) for n, cur in zip(range(1, 13), ["EUR"] * 6 + ["GBP"] * 3 + ["USD"] * 3, strict=True)]
STORES.append(("WEB", "EUR"))
BAD_KINDS = (
    "negative_quantity",
    "bad_number",
    "bad_date",
    "missing_store",
    "bad_currency",
    "field_count",
    "bad_sku",
)


def generate(
    path: str | Path,
    rows: int,
    *,
    seed: int = 42,
    bad_fraction: float = 0.004,
    duplicate_fraction: float = 0.003,
    days: int = 7,
    start: datetime = datetime(2024, 5, 1, tzinfo=UTC),
) -> dict[str, int]:
    """Write `rows` data lines (plus the header) to `path`; returns how many lines of each kind were written."""
    rng = random.Random(seed)
    skus = [f"SKU-{n:05d}" for n in range(2000)]
    prices = [round(rng.uniform(0.5, 250.0), 2) for _ in skus]
    span = days * 86400
    counts = {"good": 0, "duplicate": 0, **dict.fromkeys(BAD_KINDS, 0)}
    out_path = Path(path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    start_ts = start.timestamp()
    recent: list[str] = []
    with out_path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER + "\n")
        buffer: list[str] = []
        for i in range(rows):
            roll = rng.random()
            if roll < duplicate_fraction and recent:
                line = rng.choice(recent)  # the same record sent twice
                counts["duplicate"] += 1
            else:
                store, currency = STORES[rng.randrange(len(STORES))]
                k = rng.randrange(len(skus))
                qty = 1 + int(rng.expovariate(0.6))
                price = prices[k]
                discount = round(price * qty * 0.1, 2) if rng.random() < 0.15 else 0.0
                sold = datetime.fromtimestamp(start_ts + rng.randrange(span), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                channel = "web" if store == "WEB" else ("phone" if rng.random() < 0.02 else "store")
                fields = [
                    f"TX-{i:010d}",
                    store,
                    skus[k],
                    str(qty),
                    f"{price:.2f}",
                    f"{discount:.2f}",
                    currency,
                    sold,
                    channel,
                ]
                if roll < duplicate_fraction + bad_fraction:
                    kind = BAD_KINDS[rng.randrange(len(BAD_KINDS))]
                    counts[kind] += 1
                    if kind == "negative_quantity":
                        fields[3] = "-" + fields[3]
                    elif kind == "bad_number":
                        fields[4] = fields[4].replace(".", ",", 1).join('""')  # "12,50": a decimal comma
                    elif kind == "bad_date":
                        fields[7] = "31/12/2024 10:00"
                    elif kind == "missing_store":
                        fields[1] = ""
                    elif kind == "bad_currency":
                        fields[6] = "JPY"
                    elif kind == "field_count":
                        fields = fields[:6]
                    elif kind == "bad_sku":
                        fields[2] = "sku " + fields[2].lower()
                else:
                    counts["good"] += 1
                line = ",".join(fields)
                if len(recent) < 1000:
                    recent.append(line)
                else:
                    recent[rng.randrange(1000)] = line
            buffer.append(line)
            if len(buffer) >= 100_000:
                out.write("\n".join(buffer) + "\n")
                buffer.clear()
        if buffer:
            out.write("\n".join(buffer) + "\n")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bad-fraction", type=float, default=0.004)
    parser.add_argument("--duplicate-fraction", type=float, default=0.003)
    args = parser.parse_args()
    counts = generate(args.out, args.rows, seed=args.seed, bad_fraction=args.bad_fraction, duplicate_fraction=args.duplicate_fraction)
    print(f"wrote {args.rows} rows to {args.out}: {counts}")


if __name__ == "__main__":
    main()
