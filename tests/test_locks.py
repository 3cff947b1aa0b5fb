"""The lock files (locks/*.txt): current with their inputs, every package pinned with hashes, the top-level pins kept.

`make` refuses to install from a stale lock (scripts/lock.py check); these tests fail the suite for the same reason,
so a requirements change committed without `make lock` cannot pass CI.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts import lock as locks

ROOT = Path(__file__).resolve().parent.parent
LOCKS = {lock.path: lock for lock in locks.LOCKS}
ENTRY = re.compile(
    r"^(?P<name>[A-Za-z0-9._-]+)(\[[^\]]*\])?==(?P<version>[^\s;]+)(?P<marker>\s*;.*?)?(?P<hashes>(\s+--hash=sha256:[0-9a-f]{64})+)$"
)


def _pins(lock: locks.Lock) -> dict[str, set[str]]:
    """Each package of a lock with its versions (one per marker fork)."""
    pins: dict[str, set[str]] = {}
    for entry in locks.entries((ROOT / lock.path).read_text()):
        match = ENTRY.match(entry)
        assert match, entry
        pins.setdefault(canonicalize_name(match["name"]), set()).add(match["version"])
    return pins


def _exact_pins(path: Path) -> dict[str, str]:
    """The `name==version` lines of a requirements or constraints file."""
    found = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        (spec, *more) = list(requirement.specifier) or [None]
        if spec is not None and spec.operator == "==" and not more:
            found[canonicalize_name(requirement.name)] = spec.version
    return found


@pytest.mark.parametrize("path", sorted(LOCKS))
def test_lock_is_current_with_its_inputs(path: str) -> None:
    locks.check(LOCKS[path])  # raises StaleLock: "... run `make lock` ..."


@pytest.mark.parametrize("path", sorted(LOCKS))
def test_every_entry_is_pinned_with_hashes_and_names_no_index_or_local_path(path: str) -> None:
    text = (ROOT / path).read_text()
    entries = locks.entries(text)
    assert len(entries) > 20
    for entry in entries:
        assert ENTRY.match(entry), f"{path}: not `name==version --hash=sha256:...`: {entry[:200]}"
    for line in text.splitlines():
        assert not locks.INDEX_OPTION.match(line), line
        assert not re.search(r"(file:|://|^\s*-e\s|(^|\s)/(tmp|work|home|root|opt|usr)/)", line), line


@pytest.mark.parametrize("path", sorted(LOCKS))
def test_lock_keeps_every_exact_pin_of_its_top_level_requirements(path: str) -> None:
    lock = LOCKS[path]
    pins = _pins(lock)
    for name in locks.inputs(lock):
        if not name.endswith(".txt") or name in lock.constraints:
            continue
        for package, version in _exact_pins(ROOT / name).items():
            assert pins.get(package) == {version}, f"{path}: {package} is {pins.get(package)}, {name} pins {version}"


def test_dev_lock_has_the_botocore_that_moto_routes_and_the_librarys_dependencies() -> None:
    pins = _pins(LOCKS["locks/dev.txt"])
    assert pins["boto3"] == {"1.44.8"} and pins["botocore"] == {"1.44.8"}
    for dependency in ("aws-cdk-lib", "constructs", "pyyaml", "cdk-nag", "pyspark", "uv", "pip", "setuptools"):
        assert dependency in pins, dependency
    assert "retail-pipeline-constructs" not in pins  # installed editable with --no-deps after the lock


def test_airflow_lock_stays_inside_mwaas_constraints() -> None:
    lock = LOCKS["locks/airflow.txt"]
    (constraints,) = lock.constraints
    allowed = _exact_pins(ROOT / constraints)
    pins = _pins(lock)
    outside = {name: (versions, allowed[name]) for name, versions in pins.items() if name in allowed and versions != {allowed[name]}}
    assert outside == {}
    assert pins["apache-airflow"] == {"3.3.1"} and pins["apache-airflow-providers-amazon"] == {"9.34.0"}


def test_a_changed_input_makes_the_check_say_run_make_lock(tmp_path: Path) -> None:
    lock = LOCKS["locks/checkov.txt"]
    for name in [lock.path, *locks.inputs(lock)]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    locks.check(lock, tmp_path)
    with (tmp_path / lock.requirements).open("a") as requirements:
        requirements.write("pyyaml==6.0.4\n")
    with pytest.raises(
        locks.StaleLock, match=r"locks/checkov.txt is out of date: its inputs \(requirements-checkov.txt\) changed.*\n.*`make lock`"
    ):
        locks.check(lock, tmp_path)
