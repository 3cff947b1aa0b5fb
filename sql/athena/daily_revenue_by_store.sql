-- Daily revenue by store: the analysis query the project ships, written for Athena (Trino SQL) over the curated
-- retail_sales table. The demo and the tests run this same text on DuckDB over the clean job's Parquet, translated
-- by sqlglot (dialect athena -> duckdb). Add a predicate on sale_date (the partition column) to scan less.
SELECT
    sale_date,
    store_id,
    currency,
    COUNT(*) AS sale_lines,
    SUM(quantity) AS units,
    CAST(SUM(revenue) AS DECIMAL(18, 2)) AS revenue,
    CAST(SUM(revenue) / COUNT(DISTINCT transaction_id) AS DECIMAL(18, 2)) AS avg_line_revenue
FROM retail_sales
GROUP BY sale_date, store_id, currency
ORDER BY sale_date, store_id, currency
