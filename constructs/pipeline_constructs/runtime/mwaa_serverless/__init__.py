"""The MWAA Serverless workflow definition, written from the MWAA DAG's step description."""
