"""The upload ledger's table as the construct defines it, created in moto for the tests that write or read it."""

from __future__ import annotations

from typing import Any

from pipeline_constructs.runtime.upload_ledger import PARTITION_KEY, SORT_KEY, STATE_INDEX

LEDGER_TABLE = "upload-ledger"


def create_ledger_table(dynamodb: Any, name: str = LEDGER_TABLE) -> str:
    """The table with the construct's keys and state index (on demand), in moto; returns its name."""
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": SORT_KEY, "AttributeType": "S"},
            {"AttributeName": "state", "AttributeType": "S"},
            {"AttributeName": "updated_at", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}, {"AttributeName": SORT_KEY, "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": STATE_INDEX,
                "KeySchema": [{"AttributeName": "state", "KeyType": "HASH"}, {"AttributeName": "updated_at", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    return name
