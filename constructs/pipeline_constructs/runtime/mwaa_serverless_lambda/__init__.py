"""The MWAA Serverless form's Lambda code (this folder is the Lambda asset; handlers `handler.start` and `handler.report_failure`)."""
