"""The bad-input corpus: one test per kind of bad (or odd) input, each checking its outcome, the quarantine reason
and the conservation equation (rows_in = rows_out + rows_quarantined + duplicates_dropped) against the files."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from pipeline_constructs.runtime import clean_transform
from pipeline_constructs.runtime.clean_transform import run_clean

pytestmark = pytest.mark.spark


@pytest.fixture
def run(spark, contract, tmp_path):
    """run(files, ratio=1.0, run_id="r1") -> CleanResult; files maps a name to str (UTF-8) or bytes content."""

    def _run(files: dict[str, str | bytes], ratio: float = 1.0, run_id: str = "r1"):
        uris = []
        for name, content in files.items():
            path = tmp_path / "in" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
            uris.append(str(path))
        return run_clean(
            spark,
            contract,
            uris,
            run_id=run_id,
            curated_root=str(tmp_path / "curated"),
            quarantine_root=str(tmp_path / "quarantine"),
            max_quarantine_ratio=ratio,
        )

    return _run


def lines(*rows: str, header: str) -> str:
    return "\n".join([header, *rows]) + "\n"


def only_reason(quarantine: list[dict]) -> list[list[str]]:
    return [q["reasons"] for q in quarantine]


def test_good_rows_load_with_types_revenue_and_partition(run, conserved, header, make_row):
    result = run({"a.csv": lines(make_row(1), make_row(2, sold_at="2024-05-02 23:30:00+02:00"), header=header)})
    curated, quarantine = conserved(result)
    assert result.ok and result.rows_out == 2 and not quarantine
    first, second = curated
    assert first["quantity"] == 2 and first["unit_price"] == Decimal("10.00") and first["revenue"] == Decimal("19.00")
    assert str(first["sale_date"]) == "2024-05-01"
    assert str(second["sale_date"]) == "2024-05-02"  # 23:30+02:00 is 21:30 UTC
    assert sorted(p.name for p in Path(result.curated_path).iterdir() if p.is_dir()) == [
        "sale_date=2024-05-01",
        "sale_date=2024-05-02",
    ]
    assert all(f.name.endswith(".snappy.parquet") for f in Path(result.curated_path).rglob("part-*"))


def test_wrong_field_count_goes_to_quarantine_as_malformed(run, conserved, header, make_row):
    result = run({"a.csv": lines(make_row(1), make_row(2) + ",extra", "TX-0000000003,S001,SKU-1,2", header=header)})
    curated, quarantine = conserved(result)
    assert [c["transaction_id"] for c in curated] == ["TX-0000000001"]
    assert only_reason(quarantine) == [["malformed_row"], ["malformed_row"]]
    assert {q["raw_line"] for q in quarantine} == {make_row(2) + ",extra", "TX-0000000003,S001,SKU-1,2"}
    assert all(q["run_id"] == "r1" and q["source_uri"].endswith("a.csv") for q in quarantine)


def test_open_quote_goes_to_quarantine_as_malformed(run, conserved, header, make_row):
    result = run({"a.csv": lines(make_row(1), 'TX-0000000002,"S001,SKU-1,2,10.00,1.00,EUR,2024-05-01,store', header=header)})
    curated, quarantine = conserved(result)
    assert len(curated) == 1 and only_reason(quarantine) == [["malformed_row"]]
    assert quarantine[0]["raw_line"].startswith('TX-0000000002,"S001')


def test_bad_number_fails_the_cast(run, conserved, header, make_row):
    result = run(
        {
            "a.csv": lines(
                make_row(1, quantity="two"),
                make_row(2, quantity="1.5"),
                make_row(3, unit_price="9.999"),
                make_row(4),
                header=header,
            )
        }
    )
    curated, quarantine = conserved(result)
    assert [c["transaction_id"] for c in curated] == ["TX-0000000004"]
    assert sorted(only_reason(quarantine)) == [
        ["cast_failed:quantity"],
        ["cast_failed:quantity"],
        ["cast_failed:unit_price"],
    ]
    assert result.reasons == {"cast_failed:quantity": 2, "cast_failed:unit_price": 1}
    assert {q["raw_values"]["quantity"] for q in quarantine} == {"two", "1.5", "2"}


def test_bad_date_fails_the_cast(run, conserved, header, make_row):
    result = run({"a.csv": lines(make_row(1, sold_at="2024-02-30T10:00:00"), make_row(2, sold_at="2024"), make_row(3), header=header)})
    curated, quarantine = conserved(result)
    assert len(curated) == 1
    assert only_reason(quarantine) == [["cast_failed:sold_at"], ["cast_failed:sold_at"]]


def test_null_in_required_column_is_quarantined(run, conserved, header, make_row):
    result = run({"a.csv": lines(make_row(1, store_id=""), make_row(2, store_id="  "), make_row(3, channel=""), header=header)})
    curated, quarantine = conserved(result)
    assert [c["transaction_id"] for c in curated] == ["TX-0000000003"] and curated[0]["channel"] is None
    assert only_reason(quarantine) == [["null_in_required:store_id"]] * 2


def test_failed_check_is_quarantined_with_the_check_name(run, conserved, header, make_row):
    result = run(
        {
            "a.csv": lines(
                make_row(1, currency="JPY"),
                make_row(2, sku="sku lower"),
                make_row(3),
                make_row(4, currency="JPY", store_id="X1"),
                header=header,
            )
        }
    )
    curated, quarantine = conserved(result)
    assert len(curated) == 1
    assert sorted(only_reason(quarantine)) == [
        ["check_allowed_values:currency"],
        ["check_pattern:sku"],
        ["check_pattern:store_id", "check_allowed_values:currency"],
    ]
    assert result.reasons["check_allowed_values:currency"] == 2


def test_negative_quantity_fails_the_min_check(run, conserved, header, make_row):
    result = run({"a.csv": lines(make_row(1, quantity="-3"), make_row(2), header=header)})
    curated, quarantine = conserved(result)
    assert len(curated) == 1 and only_reason(quarantine) == [["check_min:quantity"]]


@pytest.mark.parametrize(
    ("keys_limit", "rows_limit"),
    [(200_000, 1_000_000), (0, 1_000_000), (200_000, 0)],
    ids=["losers-broadcast", "rank-every-row-many-keys", "rank-every-row-many-rows"],
)
def test_duplicate_key_keeps_the_latest_then_the_last_in_input(run, conserved, header, make_row, keys_limit, rows_limit, monkeypatch):
    monkeypatch.setattr(clean_transform, "DUPLICATE_KEYS_BROADCAST_LIMIT", keys_limit)
    monkeypatch.setattr(clean_transform, "DUPLICATE_ROWS_BROADCAST_LIMIT", rows_limit)
    result = run(
        {
            "a.csv": lines(
                make_row(1, sold_at="2024-05-01T12:00:00Z", store_id="S002"),  # latest sold_at: wins
                make_row(1, sold_at="2024-05-01T09:00:00Z", store_id="S001"),
                make_row(2, store_id="S001"),
                make_row(2, store_id="S002"),  # same sold_at: the one last in the input wins
                header=header,
            ),
            "b.csv": lines(make_row(3, store_id="S001"), header=header),
            "c.csv": lines(make_row(3, store_id="S003"), header=header),  # later file wins the tie
        }
    )
    curated, quarantine = conserved(result)
    assert result.duplicates_dropped == 3 and not quarantine
    assert [(c["transaction_id"], c["store_id"]) for c in curated] == [
        ("TX-0000000001", "S002"),
        ("TX-0000000002", "S002"),
        ("TX-0000000003", "S003"),
    ]


def test_reordered_columns_are_matched_by_name(run, conserved, make_row, header):
    names = header.split(",")
    order = list(reversed(names))
    values = dict(zip(names, make_row(1).split(","), strict=True))
    text = ",".join(order) + "\n" + ",".join(values[n] for n in order) + "\n"
    result = run({"a.csv": text})
    curated, _ = conserved(result)
    assert curated[0]["transaction_id"] == "TX-0000000001" and curated[0]["currency"] == "EUR"


def test_missing_required_column_rejects_the_whole_file_and_fails(run, conserved, header, make_row):
    cut = ",".join(header.split(",")[1:])
    bad = cut + "\n" + ",".join(make_row(1).split(",")[1:]) + "\n"
    result = run({"good.csv": lines(make_row(1), header=header), "bad.csv": bad})
    curated, _ = conserved(result)
    assert not result.ok and len(curated) == 1
    assert result.rejected_files[0]["reason"] == "missing_required_columns: transaction_id"
    assert any("file rejected" in e for e in result.errors)
    files = Path(result.quarantine_path) / "files"
    assert (files / "00001_bad.csv").read_text() == bad
    assert "missing_required_columns" in (files / "rejected_files.jsonl").read_text()


def test_missing_nullable_column_is_null(run, conserved, header, make_row):
    cut = header.rsplit(",", 1)[0]
    result = run({"a.csv": cut + "\n" + make_row(1).rsplit(",", 1)[0] + "\n"})
    curated, _ = conserved(result)
    assert result.ok and curated[0]["channel"] is None


def test_extra_unknown_column_is_ignored(run, conserved, header, make_row):
    result = run({"a.csv": "loyalty_card," + header + "\n" + "L123," + make_row(1) + "\n"})
    curated, _ = conserved(result)
    assert result.ok and "loyalty_card" not in curated[0] and curated[0]["transaction_id"] == "TX-0000000001"


def test_utf8_bom_on_the_header_is_stripped(run, conserved, header, make_row):
    result = run({"a.csv": b"\xef\xbb\xbf" + lines(make_row(1), header=header).encode()})
    curated, _ = conserved(result)
    assert result.ok and curated[0]["transaction_id"] == "TX-0000000001"


def test_crlf_line_endings(run, conserved, header, make_row):
    result = run({"a.csv": lines(make_row(1), make_row(2), header=header).replace("\n", "\r\n")})
    curated, _ = conserved(result)
    assert result.ok and [c["channel"] for c in curated] == ["store", "store"]


def test_header_only_file_succeeds_with_zero_rows(run, conserved, header):
    result = run({"a.csv": header + "\n"})
    conserved(result)
    assert result.ok and result.rows_in == 0 and result.rows_out == 0


def test_empty_lines_are_not_rows(run, conserved, header, make_row):
    result = run({"a.csv": header + "\n\n" + make_row(1) + "\n   \n\n" + make_row(2) + "\n\n"})
    conserved(result)
    assert result.ok and result.rows_in == 2 and result.rows_out == 2


def test_non_utf8_bytes_are_quarantined_as_invalid_utf8(run, conserved, header, make_row):
    content = lines(make_row(1), header=header).encode() + make_row(2, sku="SKU-\xff").encode("latin-1") + b"\n"
    result = run({"a.csv": content})
    curated, quarantine = conserved(result)
    assert len(curated) == 1 and quarantine[0]["reasons"][0] == "invalid_utf8"
    assert "\ufffd" in quarantine[0]["raw_values"]["sku"]


def test_very_long_field_fails_the_length_check(run, conserved, header, make_row):
    result = run({"a.csv": lines(make_row(1, sku="A" * 200_000), make_row(2), header=header)})
    curated, quarantine = conserved(result)
    assert len(curated) == 1 and only_reason(quarantine) == [["check_max_length:sku"]]
    assert len(quarantine[0]["raw_values"]["sku"]) == 200_000


def test_binary_file_is_rejected_as_not_csv(run, conserved, header, make_row):
    result = run({"a.csv": lines(make_row(1), header=header), "b.csv": b"\x89PNG\r\n\x1a\n\x00\x00\x00"})
    conserved(result)
    assert not result.ok and result.rejected_files[0]["reason"].startswith("not_csv_text")


def test_quarantine_ratio_above_the_limit_fails_below_warns(run, conserved, header, make_row):
    text = lines(*[make_row(i) for i in range(1, 10)], make_row(10, quantity="x"), header=header)
    failed = run({"a.csv": text}, ratio=0.05, run_id="strict")
    conserved(failed)
    assert not failed.ok and "above the limit" in failed.errors[0] and failed.rows_out == 9
    warned = run({"a.csv": text}, ratio=0.2, run_id="lenient")
    conserved(warned)
    assert warned.ok and warned.warnings and warned.quarantine_ratio == pytest.approx(0.1)


def test_a_second_run_of_the_same_input_leaves_the_output_unchanged(run, read_outputs, header, make_row):
    text = lines(make_row(1), make_row(1), make_row(2, quantity="x"), make_row(3, sold_at="2024-06-01T00:00:00"), header=header)
    first = run({"a.csv": text})
    before = read_outputs(first)
    files_before = sorted(p.relative_to(first.curated_path).parent for p in Path(first.curated_path).rglob("*.parquet"))
    second = run({"a.csv": text})
    assert read_outputs(second) == before
    assert second.summary() == first.summary()
    files_after = sorted(p.relative_to(second.curated_path).parent for p in Path(second.curated_path).rglob("*.parquet"))
    assert files_after == files_before


def test_gzip_csv_is_read_like_plain_csv(run, conserved, header, make_row):
    import gzip

    result = run({"a.csv.gz": gzip.compress(lines(make_row(1), make_row(2), header=header).encode())})
    curated, _ = conserved(result)
    assert result.ok and len(curated) == 2


def test_quoted_lines_are_parsed_as_csv(run, conserved, header, make_row):
    all_quoted = ",".join(f'"{v}"' for v in make_row(1).split(","))
    comma_inside = make_row(2, sku='"SKU-1,BLUE"')
    doubled_quote = make_row(3, sku='"SKU ""XL"""')
    result = run({"a.csv": lines(all_quoted, comma_inside, doubled_quote, make_row(4), header=header)})
    curated, quarantine = conserved(result)
    assert [c["transaction_id"] for c in curated] == ["TX-0000000001", "TX-0000000004"]
    assert curated[0]["sku"] == "SKU-1" and curated[0]["quantity"] == 2
    # one field each (not a wrong field count): the check on the value is what fails
    assert only_reason(quarantine) == [["check_pattern:sku"], ["check_pattern:sku"]]
    assert [q["raw_values"]["sku"] for q in quarantine] == ["SKU-1,BLUE", 'SKU "XL"']
    assert quarantine[0]["raw_line"] == comma_inside


def test_stray_quotes_make_the_line_malformed_and_spaces_around_quotes_are_ignored(run, conserved, header, make_row):
    quote_inside = make_row(1, sku='SKU-5"')
    text_after_quote = make_row(2, sku='"SKU-1"X')
    padded = make_row(3, sku=' \t"SKU-3" ', channel='""')
    long_quoted = make_row(4, sku='"' + "A" * 200_000 + '"')
    result = run({"a.csv": lines(quote_inside, text_after_quote, padded, long_quoted, header=header)})
    curated, quarantine = conserved(result)
    assert [(c["transaction_id"], c["sku"], c["channel"]) for c in curated] == [("TX-0000000003", "SKU-3", None)]
    assert only_reason(quarantine) == [["malformed_row"], ["malformed_row"], ["check_max_length:sku"]]
    assert [q["raw_line"] for q in quarantine[:2]] == [quote_inside, text_after_quote]
    assert len(quarantine[2]["raw_values"]["sku"]) == 200_000


def test_a_filter_on_validity_is_not_pushed_into_the_checks(spark, contract, header, make_row, tmp_path):
    """Pushed below the checks' projections, a filter on `_ok` inlines every check into its condition; the plan
    then grows many times over (and a 5M-row write took 9x as long)."""
    path = tmp_path / "a.csv"
    path.write_text(lines(make_row(1), make_row(2, quantity="-1"), header=header))
    source = clean_transform.read_source(spark, contract, clean_transform.FileHeader(str(path), header.split(",")), 0)
    classified = clean_transform.classify(source, contract)
    filtered = classified.filter(clean_transform.is_valid())

    def plan_size(df):
        return len(df._jdf.queryExecution().optimizedPlan().toString())

    assert plan_size(filtered) < 1.2 * plan_size(classified)
    assert [r["transaction_id"] for r in filtered.collect()] == ["TX-0000000001"]


def test_number_forms_the_cast_would_bend_are_cast_failures(run, conserved, header, make_row):
    result = run(
        {
            "a.csv": lines(
                make_row(1, quantity="+7", unit_price="5.", discount=".5"),
                make_row(2, quantity="1e2"),
                make_row(3, unit_price="1e2"),
                make_row(4, unit_price="\uff11\uff10.00"),  # full-width digits: Java's BigDecimal would read them
                make_row(5, discount="0.5 0"),
                header=header,
            )
        }
    )
    curated, quarantine = conserved(result)
    assert [(c["quantity"], str(c["unit_price"]), str(c["discount"])) for c in curated] == [(7, "5.00", "0.50")]
    assert only_reason(quarantine) == [
        ["cast_failed:quantity"],
        ["cast_failed:unit_price"],
        ["cast_failed:unit_price"],
        ["cast_failed:discount"],
    ]


def test_a_file_read_in_many_splits_loses_no_line_and_keeps_input_order(spark, run, conserved, header, make_row, tmp_path):
    """The header is recognised as the first line of the file's first split only; row order spans splits."""
    rows = [make_row(i) for i in range(1, 600)]
    rows.append(make_row(1, store_id="S009"))  # same key and sold_at as the first row, last in the input: wins
    text = lines(*rows, header=header)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "4096")
    try:
        result = run({"a.csv": text})
        splits = spark.read.text(str(tmp_path / "in" / "a.csv")).rdd.getNumPartitions()
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    curated, quarantine = conserved(result)
    assert splits > 10
    assert result.ok and not quarantine
    assert result.rows_in == 600 and result.rows_out == 599 and result.duplicates_dropped == 1
    assert curated[0]["transaction_id"] == "TX-0000000001" and curated[0]["store_id"] == "S009"


# ------------------------------------------------------------------------------------ issue 16: real exports
def test_quoted_values_with_line_breaks_load_as_one_record(run, conserved, header, make_row):
    """RFC 4180: a quoted value may hold line breaks (a blank line too); the record loads whole, and a stray quote
    that no later line closes within MAX_RECORD_LINES is one malformed line."""
    text = (
        header
        + ",note\n"
        + make_row(1)
        + ',"first line\nsecond, with a comma\n\nand ""quoted"" text"\n'
        + make_row(2)
        + ",plain\n"
        + make_row(3, sku='"SKU-3"')
        + ',"a\nb"\n'
        + make_row(4)
        + ',"never closed\n'
    )
    result = run({"a.csv": text})
    curated, quarantine = conserved(result)
    assert [c["transaction_id"] for c in curated] == ["TX-0000000001", "TX-0000000002", "TX-0000000003"]
    assert result.rows_in == 4 and only_reason(quarantine) == [["malformed_row"]]
    assert quarantine[0]["line_number"] == 9 and quarantine[0]["raw_line"].endswith('"never closed')


def test_a_record_with_line_breaks_is_stitched_across_splits(spark, run, conserved, header, make_row):
    rows = [make_row(i) + ",x" for i in range(1, 300)]
    rows[150] = make_row(151) + ',"' + "\n".join(f"note line {k}" for k in range(40)) + '"'
    rows.append(make_row(300, quantity="zero") + ",x")
    text = header + ",note\n" + "\n".join(rows) + "\n"
    spark.conf.set("spark.sql.files.maxPartitionBytes", "4096")
    try:
        result = run({"a.csv": text}, ratio=0.5)
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    curated, quarantine = conserved(result)
    assert result.rows_in == 300 and result.rows_out == 299
    assert [(q["line_number"], q["reasons"]) for q in quarantine] == [(300 + 40, ["cast_failed:quantity"])]
    assert text.splitlines()[quarantine[0]["line_number"] - 1] == quarantine[0]["raw_line"]


def test_quoted_values_keep_their_spaces_unquoted_values_are_trimmed(run, conserved, header, make_row):
    result = run(
        {
            "a.csv": lines(
                make_row(1, store_id='" S001 "'),
                make_row(2, store_id="  S002  ", sku='"SKU-2"'),
                make_row(3, store_id="  S003 "),
                header=header,
            )
        }
    )
    curated, quarantine = conserved(result)
    assert [(c["transaction_id"], c["store_id"]) for c in curated] == [("TX-0000000002", "S002"), ("TX-0000000003", "S003")]
    assert only_reason(quarantine) == [["check_pattern:store_id"]]
    assert quarantine[0]["raw_values"]["store_id"] == " S001 "


def test_a_quarantined_line_keeps_its_line_number_and_exact_bytes(run, conserved, header, make_row):
    import base64

    bad = make_row(3, sku="SKU-\xff\xfe").encode("latin-1")
    content = lines(make_row(1), "", make_row(2, quantity="x"), header=header).encode() + bad + b"\n"
    result = run({"a.csv": content}, ratio=0.9)
    _, quarantine = conserved(result)
    assert [q["line_number"] for q in quarantine] == [4, 5]
    assert quarantine[0]["raw_line_base64"] is None
    assert base64.b64decode(quarantine[1]["raw_line_base64"]) == bad


def test_each_partition_value_is_one_file_even_when_read_in_many_splits(spark, run, conserved, header, make_row):
    days = [f"2024-05-{d:02d}T10:00:00Z" for d in range(1, 8)]
    text = lines(*[make_row(i, sold_at=days[i % 7]) for i in range(1, 700)], header=header)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "8192")
    try:
        result = run({"a.csv": text})
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    conserved(result)
    files = sorted(p.parent.name for p in Path(result.curated_path).rglob("*.parquet"))
    assert files == [f"sale_date=2024-05-{d:02d}" for d in range(1, 8)]
