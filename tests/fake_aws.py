"""moto's in-memory AWS for the tests that call AWS APIs (the fixture is registered in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

#: The region of the tests that run against moto.
FAKE_AWS_REGION = "eu-west-1"


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto for one test, with fake credentials and FAKE_AWS_REGION as the default region, so no client can reach
    (or be billed by) a real account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": FAKE_AWS_REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield
