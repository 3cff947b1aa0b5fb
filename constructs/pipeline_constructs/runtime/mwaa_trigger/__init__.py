"""The MWAA trigger Lambda's code (this folder is the Lambda asset; its handler is `handler.handler`)."""
