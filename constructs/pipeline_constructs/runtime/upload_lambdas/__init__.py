"""The small Lambdas that turn upload events into Airflow runs (this folder is their one asset)."""
