"""Generate an order line items CSV, shaped like a public benchmark table exported to CSV, that matches
scripts/bench_contracts/line_items.yaml: a quoted free-text comment on every line (some with commas, doubled quotes,
spaces kept inside the quotes and line breaks), a ship date spanning about 2,500 days (the partition), some
duplicates and a small share of bad lines of each kind the clean job quarantines. Deterministic for a given seed.

    python scripts/make_quoted_sample.py --rows 600000 --out .bench/line_items_600000.csv
"""

from __future__ import annotations

import argparse
import random
from datetime import date, timedelta
from pathlib import Path

HEADER = (
    "order_key,line_number,part_key,supp_key,quantity,extended_price,discount,tax,return_flag,line_status,"
    "ship_date,commit_date,receipt_date,ship_instruct,ship_mode,comment"
)
FIRST_SHIP_DATE = date(1992, 1, 2)
SHIP_DAYS = 2_526  # 1992-01-02 .. 1998-12-01
INSTRUCTIONS = ("DELIVER IN PERSON", "COLLECT COD", "NONE", "TAKE BACK RETURN")
MODES = ("REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB")
WORDS = (
    "furiously sly accounts wake carefully final deposits haggle blithely ironic packages nag slyly even requests "
    "sleep quickly pending theodolites boost quietly express foxes detect bold pinto beans are among the regular "
    "instructions unusual dependencies integrate fluffily special platelets cajole across the asymptotes"
).split()
BAD_KINDS = ("bad_number", "bad_date", "field_count", "bad_flag", "negative_quantity")


def _comment(rng: random.Random) -> tuple[str, bool]:
    """A comment as written in the file (quoted, "" for a quote inside) and whether it holds a line break."""
    words = rng.sample(WORDS, rng.randint(3, 8))
    roll = rng.random()
    broken = False
    if roll < 0.10:  # a comma inside the value
        words[rng.randrange(len(words))] += ","
    elif roll < 0.13:  # a quote inside the value
        i = rng.randrange(len(words))
        words[i] = f'"{words[i]}"'
    elif roll < 0.135:  # a line break inside the value (about 3,000 records in 600,000)
        words[rng.randrange(len(words) - 1)] += "\n"
        broken = True
    text = " ".join(words).replace("\n ", "\n")
    if rng.random() < 0.25:  # spaces inside the quotes are data
        text = f" {text} "
    return '"' + text.replace('"', '""') + '"', broken


def generate(
    path: str | Path,
    rows: int,
    *,
    seed: int = 42,
    bad_fraction: float = 0.005,
    duplicate_fraction: float = 0.003,
) -> dict[str, int]:
    """Write `rows` records (plus the header) to `path`; returns how many records of each kind were written
    (`line_breaks`: good records whose comment holds a line break, so the file has that many more lines)."""
    rng = random.Random(seed)
    counts = {"good": 0, "duplicate": 0, "line_breaks": 0, **dict.fromkeys(BAD_KINDS, 0)}
    out_path = Path(path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    recent: list[str] = []
    order_key, line_number, lines_in_order = 1, 0, 0
    with out_path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER + "\n")
        buffer: list[str] = []
        for _ in range(rows):
            roll = rng.random()
            if roll < duplicate_fraction and recent:
                buffer.append(rng.choice(recent))  # the same record exported twice
                counts["duplicate"] += 1
                continue
            if line_number >= lines_in_order:
                order_key += rng.randint(1, 4)
                line_number, lines_in_order = 0, rng.randint(1, 7)
            line_number += 1
            quantity = rng.randint(1, 50)
            price = rng.randint(90_000, 200_000) / 100
            ship = FIRST_SHIP_DATE + timedelta(days=rng.randrange(SHIP_DAYS))
            comment, broken = _comment(rng)
            fields = [
                str(order_key),
                str(line_number),
                str(rng.randint(1, 200_000)),
                str(rng.randint(1, 10_000)),
                f"{quantity}.00",
                f"{quantity * price:.2f}",
                f"0.{rng.randint(0, 10):02d}",
                f"0.{rng.randint(0, 8):02d}",
                rng.choice("ANR"),
                "F" if ship < date(1995, 6, 17) else "O",
                ship.isoformat(),
                (ship + timedelta(days=rng.randint(-60, 60))).isoformat(),
                (ship + timedelta(days=rng.randint(1, 30))).isoformat(),
                rng.choice(INSTRUCTIONS),
                rng.choice(MODES),
                comment,
            ]
            if roll < duplicate_fraction + bad_fraction:
                kind = BAD_KINDS[rng.randrange(len(BAD_KINDS))]
                counts[kind] += 1
                if kind == "bad_number":
                    fields[5] = fields[5].replace(".", ",", 1).join('""')  # "1234,56": a decimal comma
                elif kind == "bad_date":
                    fields[10] = ship.strftime("%d/%m/%Y")
                elif kind == "field_count":
                    fields = fields[:-2] + fields[-1:]
                elif kind == "bad_flag":
                    fields[8] = "X"
                elif kind == "negative_quantity":
                    fields[4] = "-" + fields[4]
            else:
                counts["good"] += 1
                counts["line_breaks"] += broken
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
    parser.add_argument("--rows", type=int, default=600_000)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bad-fraction", type=float, default=0.005)
    parser.add_argument("--duplicate-fraction", type=float, default=0.003)
    args = parser.parse_args()
    counts = generate(args.out, args.rows, seed=args.seed, bad_fraction=args.bad_fraction, duplicate_fraction=args.duplicate_fraction)
    print(f"wrote {args.rows} records to {args.out}: {counts}")


if __name__ == "__main__":
    main()
