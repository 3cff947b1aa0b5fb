"""Where a run is loaded: Athena (Iceberg MERGE) or Redshift Serverless (COPY + MERGE), with their load SQL."""
