"""Every physical line accounted for, and no wait without a bound (issue 22), under the settings Glue runs.

Each corpus test runs at two sizes: a few lines (one split), and enough lines for several splits. The larger size
is run twice, in Glue's one 128 MB split and in 4 KB splits, and must give the same rows and quarantine both ways:
the split size is the one setting the suite changes, and this shows the result does not depend on it.

Each checks the line accounting against the file itself: lines_read is the file's physical line count, every line
is the header (or a blank line), a curated row's, or a quarantine record's, and the quarantine records' line ranges are
disjoint and add up to lines_quarantined.
"""

from __future__ import annotations

import re
import time

import pytest

from pipeline_constructs.contract import DatasetContract
from pipeline_constructs.runtime import clean_transform, spark_settings
from pipeline_constructs.runtime.clean_transform import CleanResult, CleanStepTimedOut, run_clean

pytestmark = pytest.mark.spark


def three_columns(name: str, header: str, types: str) -> DatasetContract:
    """A contract of three columns (`header` names them, `types` types them; the first is the key, the date the
    partition, the string may be null)."""
    columns = [
        {"name": column, "type": kind, "nullable": kind == "string"}
        for column, kind in zip(header.split(","), types.split(","), strict=True)
    ]
    day = next(c["name"] for c in columns if c["type"] == "date")
    return DatasetContract.from_dict(
        {
            "name": name,
            "columns": columns,
            "natural_key": [columns[0]["name"]],
            "partition": {"name": "day", "type": "date", "expression": day},
        }
    )


#: The issue's export: an id, a date and a comment that every line quotes.
COMMENTS_HEADER = "comment_id,commented_on,comment"
COMMENTS = three_columns("comments", COMMENTS_HEADER, "int,date,string")
#: The issue's two-line file: a note whose quoted body holds a line break.
NOTES_HEADER = "note_id,body,noted_on"
NOTES = three_columns("notes", NOTES_HEADER, "int,string,date")

SMALL_SPLITS = str(4 * 1024)
#: The two sizes of each corpus test, in data lines ("splits" is also read in SMALL_SPLITS, see `clean_at`).
SIZES = {"few": 40, "splits": 1200}


def physical_lines(content: str) -> list[str]:
    """The file's lines as Hadoop's line reader splits them (\\n, \\r\\n or \\r; a last line without a break counts)."""
    parts = re.split(r"\r\n|\r|\n", content)
    return parts[:-1] if parts[-1] == "" else parts


def comment(n: int) -> str:
    return f'{n},2024-05-{n % 28 + 1:02d},"comment {n}, fine"'


def truncated(n: int) -> str:
    return f'{n},2024-05-{n % 28 + 1:02d},"comment {n}, trunc'


@pytest.fixture
def clean(spark, tmp_path, conserved):
    """clean(contract, content, ratio=1.0, splits=None) -> (result, curated rows, quarantine records), after checking
    the line accounting against `content`. `splits` sets spark.sql.files.maxPartitionBytes for this run only."""
    runs = iter(range(1000))

    def _clean(contract, content: str, ratio: float = 1.0, splits: str | None = None):
        run_dir = tmp_path / f"run{next(runs)}"
        path = run_dir / "in" / "upload.csv"
        path.parent.mkdir(parents=True)
        path.write_bytes(content.encode("utf-8"))
        previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
        if splits:
            spark.conf.set("spark.sql.files.maxPartitionBytes", splits)
        try:
            result = run_clean(
                spark,
                contract,
                [str(path)],
                run_id="r1",
                curated_root=str(run_dir / "curated"),
                quarantine_root=str(run_dir / "quarantine"),
                max_quarantine_ratio=ratio,
            )
            read_in = spark.read.text(str(path)).rdd.getNumPartitions()
        finally:
            spark.conf.set("spark.sql.files.maxPartitionBytes", previous)
        if splits:
            assert read_in > 3, f"the file was read in {read_in} splits: too few to test the splits"
        curated, quarantine = conserved(result)  # both equations, and the counts against the files written
        assert_lines_accounted(result, content, quarantine)
        return result, curated, quarantine

    return _clean


def assert_lines_accounted(result: CleanResult, content: str, quarantine: list[dict]) -> None:
    """The counts against the input itself: every physical line read, each quarantined line in one record only,
    each record's text the file's lines."""
    file_lines = physical_lines(content)
    assert result.lines_read == len(file_lines), result.summary()
    covered: set[int] = set()
    for q in quarantine:
        span = set(range(q["line_number"], q["line_number"] + q["line_count"]))
        assert not span & covered, f"quarantine records overlap at lines {sorted(span & covered)}"
        covered |= span
        assert q["raw_line"] == "\n".join(file_lines[q["line_number"] - 1 : q["line_number"] - 1 + q["line_count"]])
    assert result.lines_skipped >= 1, "the header is a skipped line"


def outcome(curated: list[dict], quarantine: list[dict]) -> tuple:
    """What a run left, comparable across split sizes."""
    rows = sorted(tuple(sorted((k, str(v)) for k, v in row.items())) for row in curated)
    records = sorted((q["line_number"], q["line_count"], tuple(q["reasons"])) for q in quarantine)
    return rows, records


def clean_at(clean, size: str, contract, content: str, ratio: float = 1.0):
    """The run at one size; at "splits" also in SMALL_SPLITS, which must leave the same outcome."""
    result, curated, quarantine = clean(contract, content, ratio=ratio)
    if size == "splits":
        again = clean(contract, content, ratio=ratio, splits=SMALL_SPLITS)
        assert outcome(*again[1:]) == outcome(curated, quarantine)
        assert again[0].summary() | {"curated_path": "", "quarantine_path": ""} == result.summary() | {
            "curated_path": "",
            "quarantine_path": "",
        }
    return result, curated, quarantine


# ------------------------------------------------------------------------------- the two defects of the issue
def test_two_truncated_comments_cost_two_lines_not_the_lines_between_them(clean):
    """The issue's smallest case: 40 lines that quote their last field, lines 5 and 15 lost its closing quote.
    Before: rows_in 30, rows_out 29, one quarantine record holding lines 5 to 15."""
    rows = [truncated(n) if n in (5, 15) else comment(n) for n in range(1, 41)]
    content = "\n".join([COMMENTS_HEADER, *rows]) + "\n"
    result, curated, quarantine = clean(COMMENTS, content)
    assert result.ok, result.errors
    assert (result.rows_in, result.rows_out, result.rows_quarantined) == (40, 38, 2)
    assert (result.lines_read, result.lines_out, result.lines_quarantined) == (41, 38, 2)
    assert sorted(c["comment_id"] for c in curated) == [n for n in range(1, 41) if n not in (5, 15)]
    assert [(q["line_number"], q["line_count"], q["reasons"]) for q in quarantine] == [
        (6, 1, ["malformed_row"]),
        (16, 1, ["malformed_row"]),
    ]
    assert result.quarantine_ratio == pytest.approx(2 / 40)


@pytest.mark.timeout(120)
def test_a_small_file_with_a_quoted_line_break_finishes_under_adaptive_execution(spark, clean):
    """The issue's two-line file. Before: `Observation.get` waited forever with adaptive execution on (Spark 3.5.4,
    SPARK-54620: AQEPropagateEmptyRelation drops the observed metrics of the stage it prunes)."""
    assert spark.conf.get("spark.sql.adaptive.enabled") == "true"
    content = f'{NOTES_HEADER}\n1,"first line\nsecond line",2024-05-01\n'
    started = time.perf_counter()
    result, curated, quarantine = clean(NOTES, content)
    assert time.perf_counter() - started < 90
    assert result.ok and not quarantine
    assert [(c["note_id"], c["body"]) for c in curated] == [(1, "first line\nsecond line")]
    assert (result.lines_read, result.lines_skipped, result.lines_out) == (3, 1, 2)
    assert spark_settings.EMPTY_RELATION_RULE in spark.conf.get(spark_settings.EXCLUDED_RULES_KEY).split(",")


@pytest.mark.timeout(180)
def test_without_the_fix_the_wait_is_bounded_and_names_the_step(spark, tmp_path, monkeypatch):
    """The safety net: with the empty-relation rule back in play, the same file hangs Spark's wait for the observed
    counts; the run fails within METRICS_WAIT_SECONDS with an error that names the step, and returns."""
    monkeypatch.setattr(spark_settings, "excluded_rules", lambda current: "")
    monkeypatch.setattr(clean_transform, "METRICS_WAIT_SECONDS", 15)
    path = tmp_path / "upload.csv"
    path.write_text(f'{NOTES_HEADER}\n1,"first line\nsecond line",2024-05-01\n')
    started = time.perf_counter()
    try:
        result = run_clean(spark, NOTES, [str(path)], run_id="r1", curated_root=f"{tmp_path}/c", quarantine_root=f"{tmp_path}/q")
    finally:
        spark.conf.set(spark_settings.EXCLUDED_RULES_KEY, spark_settings.EMPTY_RELATION_RULE)
    assert time.perf_counter() - started < 120
    assert not result.ok
    assert len(result.errors) == 1 and "curated" in result.errors[0] and "did not arrive" in result.errors[0], result.errors


def test_a_stage_that_does_not_end_is_cancelled_at_its_bound_and_named(spark):
    timings: dict[str, float] = {}
    steps = clean_transform._Steps(spark, bound_seconds=3, timings=timings)
    started = time.perf_counter()
    with pytest.raises(CleanStepTimedOut, match="quarantine"):
        with steps.step("quarantine"):
            spark.sparkContext.parallelize([1, 2], 2).map(lambda x: time.sleep(600) or x).collect()
    assert time.perf_counter() - started < 60 and timings["quarantine"] >= 3
    assert spark.range(3).count() == 3, "the session goes on after the cancelled step"


def test_the_step_bound_grows_with_the_input():
    small, large = clean_transform.default_step_bound(1_000), clean_transform.default_step_bound(10 * 1024**3)
    assert small == pytest.approx(clean_transform.STEP_BOUND_BASE_SECONDS, abs=0.01)
    assert large == pytest.approx(small + 10 * 1024**3 / clean_transform.STEP_BOUND_BYTES_PER_SECOND)


# ----------------------------------------------------------------------------- the corpus, at two sizes each
@pytest.mark.parametrize("size", SIZES)
def test_unclosed_quotes_where_every_line_quotes_a_field(clean, size):
    """Each truncated comment is one malformed line; the good lines after it are read as if it were not there."""
    n = SIZES[size]
    bad = {5, 15} if size == "few" else set(range(7, n, 97))
    rows = [truncated(i) if i in bad else comment(i) for i in range(1, n + 1)]
    result, curated, quarantine = clean_at(clean, size, COMMENTS, "\n".join([COMMENTS_HEADER, *rows]) + "\n")
    assert sorted(c["comment_id"] for c in curated) == [i for i in range(1, n + 1) if i not in bad]
    assert [(q["line_number"], q["line_count"], q["reasons"]) for q in quarantine] == [(i + 1, 1, ["malformed_row"]) for i in sorted(bad)]
    assert result.lines_quarantined == len(bad) and result.lines_out == n - len(bad)


@pytest.mark.parametrize("size", SIZES)
def test_stray_quotes_inside_unquoted_fields(clean, size):
    """A quote inside an unquoted field (`5" screen`) makes its line malformed, and only its line, even when two
    such lines would pair up into an even number of quotes."""
    n = SIZES[size]
    bad = {3, 9} if size == "few" else set(range(3, n, 61))
    rows = [f'{i},2024-05-01,{i}" screen' if i in bad else f"{i},2024-05-01,plain {i}" for i in range(1, n + 1)]
    result, curated, quarantine = clean_at(clean, size, COMMENTS, "\n".join([COMMENTS_HEADER, *rows]) + "\n")
    assert len(curated) == n - len(bad)
    assert [(q["line_number"], q["line_count"], q["reasons"]) for q in quarantine] == [(i + 1, 1, ["malformed_row"]) for i in sorted(bad)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("last_break", [True, False], ids=["last-line-ends", "no-last-line-break"])
def test_quoted_line_breaks_in_the_first_middle_and_last_record(clean, size, last_break):
    n = SIZES[size]
    broken = {1, n // 2, n}
    rows = [
        f'{i},"note {i}\nits second line\n\nand a fourth",2024-05-01' if i in broken else f"{i},note {i},2024-05-01"
        for i in range(1, n + 1)
    ]
    content = "\n".join([NOTES_HEADER, *rows]) + ("\n" if last_break else "")
    result, curated, quarantine = clean_at(clean, size, NOTES, content)
    assert result.ok and not quarantine
    bodies = {c["note_id"]: c["body"] for c in curated}
    assert sorted(bodies) == list(range(1, n + 1))
    assert {i: bodies[i] for i in broken} == {i: f"note {i}\nits second line\n\nand a fourth" for i in broken}
    assert result.lines_out == n + 3 * len(broken) and result.lines_skipped == 1


@pytest.mark.parametrize("size", SIZES)
def test_a_last_line_without_a_line_break(clean, size):
    """Good or bad, the last line counts once, and a last line that opens a quote and never closes it is one
    malformed line."""
    n = SIZES[size]
    good = "\n".join([COMMENTS_HEADER, *[comment(i) for i in range(1, n + 1)]])
    result, curated, quarantine = clean_at(clean, size, COMMENTS, good)
    assert len(curated) == n and not quarantine and result.lines_read == n + 1
    unclosed = "\n".join([COMMENTS_HEADER, *[comment(i) for i in range(1, n)], truncated(n)])
    result, curated, quarantine = clean_at(clean, size, COMMENTS, unclosed)
    assert len(curated) == n - 1 and [(q["line_number"], q["line_count"]) for q in quarantine] == [(n + 1, 1)]


@pytest.mark.parametrize("size", SIZES)
def test_a_broken_record_between_truncated_lines(clean, size):
    """A record that does span lines still loads whole when a truncated line comes before it: the truncated line
    opens no record (its lines do not parse as one of the contract's width), the record after it does."""
    n = SIZES[size]
    rows = [comment(i) for i in range(1, n + 1)]
    rows[2] = truncated(3)
    rows[4] = '5,2024-05-06,"a comment\nover two lines"'
    result, curated, quarantine = clean_at(clean, size, COMMENTS, "\n".join([COMMENTS_HEADER, *rows]) + "\n")
    assert [(q["line_number"], q["line_count"]) for q in quarantine] == [(4, 1)]
    assert {c["comment_id"]: c["comment"] for c in curated}[5] == "a comment\nover two lines"
    assert len(curated) == n - 1 and result.lines_out == n


# ------------------------------------------------------------------------------------ ratios and conservation
def test_the_quarantine_ratio_counts_lines_so_one_long_record_cannot_hide_them(clean):
    """One record of 41 lines that fails a check among 100 good lines: 1% of the records, 29% of the lines."""
    rows = [f"{i},note {i},2024-05-01" for i in range(1, 101)]
    rows.append('101,"' + "\n".join(f"line {k}" for k in range(41)) + '",2024-13-01')
    result, curated, quarantine = clean(NOTES, "\n".join([NOTES_HEADER, *rows]) + "\n", ratio=0.05)
    assert [(q["line_count"], q["reasons"]) for q in quarantine] == [(41, ["cast_failed:noted_on"])]
    assert result.quarantine_ratio == pytest.approx(41 / 141)
    assert not result.ok and "41 of 141 data lines quarantined (1 of 101 records)" in result.errors[0]


def test_a_run_whose_lines_do_not_add_up_fails_and_says_which_count():
    result = CleanResult(dataset="d", run_id="r", rows_in=3, rows_out=3, lines_read=5, lines_skipped=1, lines_out=3)
    assert result.rows_conserved and not result.lines_conserved and not result.conservation_ok
    assert result.conservation_errors() == [
        "conservation failed: lines_read 5 != lines_skipped 1 + lines_out 3 + lines_quarantined 0 + lines_deduplicated 0"
    ]


def test_duplicates_are_counted_in_lines_too(clean):
    rows = ['1,"first\nversion",2024-05-01', "2,other,2024-05-01", '1,"second\nversion",2024-05-01']
    result, curated, _ = clean(NOTES, "\n".join([NOTES_HEADER, *rows]) + "\n")
    assert result.duplicates_dropped == 1 and result.lines_deduplicated == 2
    assert {c["note_id"]: c["body"] for c in curated}[1] == "second\nversion"
