"""The lock files of the project's three virtualenvs: write them (`make lock`) and check that they are current.

Each virtualenv installs from a lock that pins every package, transitive ones included, with the sha256 of each of
its files, so `pip install --require-hashes` gets the same bytes on any day (a floating transitive pin once broke
the suite: botocore 1.44.18 sends an Athena request that moto 5.2.5 does not route). uv writes the locks
(`uv pip compile --generate-hashes`: it resolves for another Python version, for every platform at once, and honours
a constraints file, which the Airflow lock needs); uv itself is pinned in the dev lock.

Each lock's header records a sha256 over its inputs (the top-level requirements, every file they include with -r or
-c, the pyproject.toml of an editable path) and over the uv command that wrote it. `check` recomputes it: a lock
whose inputs changed since `make lock` fails with a message that says to run it. Content hashes, not file times:
a fresh git clone gives every file the same time.

Stdlib only: the Makefile runs it with the machine's python3 before any virtualenv exists.

    python3 scripts/lock.py check [LOCK ...]        # every lock when none is named; exit 1 when one is stale
    python3 scripts/lock.py compile --uv PATH       # `make lock`: rewrite every lock, keeping the versions it can
    python3 scripts/lock.py compile --uv PATH --upgrade   # `make lock-upgrade`: the newest versions the inputs allow
    python3 scripts/lock.py requirement NAME LOCK   # one package's entry of a lock (the Makefile installs uv from it)
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIGEST_LINE = "# inputs-sha256: "
INPUTS_LINE = "# inputs: "
COMMAND_LINE = "# command: "
# What uv may write that names an index or a local folder: never kept in a lock.
INDEX_OPTION = re.compile(r"^\s*(--index-url|--extra-index-url|-i |--find-links|-f |--trusted-host|--no-index)")


@dataclass(frozen=True)
class Lock:
    """One virtualenv's lock: where it lives, what it is compiled from, with which uv options."""

    path: str
    venv: str
    requirements: str
    options: tuple[str, ...]
    constraints: tuple[str, ...] = ()

    def command(self) -> list[str]:
        args = ["uv", "pip", "compile", self.requirements]
        for constraint in self.constraints:
            args += ["-c", constraint]
        return [*args, *self.options]


# The editable library (`-e ./constructs` in requirements.txt) cannot be hash-checked: its own dependencies are in the
# dev lock, and the Makefile installs it afterwards with --no-deps. `--universal`: one lock for every platform, with
# markers where a platform or Python version needs another package. `--no-strip-extras`: pip's --require-hashes wants a
# pin for each `package[extra]` a dependency asks for (sqlalchemy[asyncio] for Airflow).
LOCKS = (
    Lock(
        path="locks/dev.txt",
        venv=".venv",
        requirements="requirements-dev.txt",
        options=(
            "--python-version",
            "3.11",
            "--universal",
            "--generate-hashes",
            "--no-strip-extras",
            "--no-emit-package",
            "retail-pipeline-constructs",
        ),
    ),
    Lock(
        path="locks/checkov.txt",
        venv=".venv-checkov",
        requirements="requirements-checkov.txt",
        options=("--python-version", "3.11", "--universal", "--generate-hashes", "--no-strip-extras"),
    ),
    # Airflow on Python 3.12 as on MWAA, inside MWAA's constraints for the version the MWAA construct deploys.
    Lock(
        path="locks/airflow.txt",
        venv=".venv-airflow",
        requirements="tests/airflow/requirements.txt",
        constraints=("tests/airflow/constraints-3.3.1-python3.12.txt",),
        options=("--python-version", "3.12", "--universal", "--generate-hashes", "--no-strip-extras"),
    ),
)


class StaleLock(Exception):
    pass


def _included(requirements: Path, root: Path, seen: list[Path]) -> None:
    """`requirements` and every file it pulls in: -r/-c files, and the pyproject.toml of an editable or local path."""
    if requirements in seen:
        return
    seen.append(requirements)
    for raw in requirements.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line.startswith("#") or not line:
            continue
        option = re.match(r"^(-r|--requirement|-c|--constraint)\s*=?\s*(\S+)$", line)
        if option:
            _included((requirements.parent / option.group(2)).resolve(), root, seen)
            continue
        editable = re.match(r"^(?:-e|--editable)\s+(\S+)$", line)
        local = editable.group(1) if editable else (line if line.startswith(("./", "../")) else None)
        if local:
            project = (root / local).resolve()  # pip and uv read a requirements file's local paths from the working directory
            for name in ("pyproject.toml", "setup.py", "setup.cfg"):
                if (project / name).is_file() and project / name not in seen:
                    seen.append(project / name)


def inputs(lock: Lock, root: Path = ROOT) -> list[str]:
    """The files a lock is compiled from, relative to the repository, in a stable order."""
    seen: list[Path] = []
    for top in (lock.requirements, *lock.constraints):
        _included((root / top).resolve(), root, seen)
    return [path.relative_to(root.resolve()).as_posix() for path in seen]


def digest(lock: Lock, root: Path = ROOT) -> str:
    """sha256 over the uv command and the content of each input (line endings normalised)."""
    sha = hashlib.sha256()
    sha.update(shlex.join(lock.command()).encode() + b"\0")
    for name in inputs(lock, root):
        sha.update(name.encode() + b"\0")
        sha.update((root / name).read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return sha.hexdigest()


def header(lock: Lock, root: Path = ROOT) -> str:
    return "\n".join(
        [
            f"# The lock of {lock.venv}: generated by `make lock` (scripts/lock.py), do not edit by hand.",
            "# Every package, transitive ones included, pinned with the sha256 of each of its files; the Makefile installs",
            "# it with `pip install --require-hashes`. Change the inputs below, then run `make lock` and review the diff.",
            f"{COMMAND_LINE}{shlex.join(lock.command())}",
            f"{INPUTS_LINE}{' '.join(inputs(lock, root))}",
            f"{DIGEST_LINE}{digest(lock, root)}",
            "",
        ]
    )


def recorded_digest(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(DIGEST_LINE):
            return line[len(DIGEST_LINE) :].strip()
    return None


def check(lock: Lock, root: Path = ROOT) -> None:
    """Raise StaleLock, with the message a user sees, when the lock is missing or older than its inputs."""
    path = root / lock.path
    if not path.is_file():
        raise StaleLock(f"{lock.path} is missing: run `make lock` and commit the lock files.")
    if recorded_digest(path.read_text()) != digest(lock, root):
        raise StaleLock(
            f"{lock.path} is out of date: its inputs ({', '.join(inputs(lock, root))}) changed since `make lock` wrote it.\n"
            f"Run `make lock` to regenerate the lock files, review the diff and commit it."
        )


def entries(text: str) -> list[str]:
    """The requirement entries of a lock: one string per package, its continuation lines joined, comments dropped."""
    found: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        current += " " + line.rstrip("\\").strip() if current else line.rstrip("\\").strip()
        if not line.endswith("\\"):
            found.append(current)
            current = ""
    if current:
        found.append(current)
    return found


def requirement(name: str, text: str) -> str:
    """One package's entry of a lock, as a requirements line with its hashes."""
    wanted = re.sub(r"[-_.]+", "-", name).lower()
    for entry in entries(text):
        match = re.match(r"^([A-Za-z0-9._-]+)==", entry)
        if match and re.sub(r"[-_.]+", "-", match.group(1)).lower() == wanted:
            return entry
    raise KeyError(f"{name} is not in the lock")


def compile_lock(lock: Lock, uv: str, *, upgrade: bool = False, root: Path = ROOT) -> None:
    """Rewrite one lock. uv keeps the versions the current lock has wherever the inputs still allow them (a bump moves
    only what it must); `upgrade` takes the newest versions the inputs allow instead."""
    command = [uv, *lock.command()[1:]]
    target = root / lock.path
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "lock.txt"
        if target.is_file() and not upgrade:
            output.write_text(target.read_text())  # uv reads an existing output file as its preferences
        extra = ["--upgrade"] if upgrade else []
        run = subprocess.run([*command, *extra, "--no-header", "--quiet", "-o", str(output)], cwd=root, check=False)
        if run.returncode != 0:
            raise SystemExit(f"uv pip compile for {lock.path} failed ({run.returncode})")
        body = [line for line in output.read_text().splitlines() if not INDEX_OPTION.match(line)]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header(lock, root) + "\n".join(body).strip("\n") + "\n")
    print(f"wrote {lock.path} ({len(entries(target.read_text()))} packages)")


def _locks(paths: list[str]) -> list[Lock]:
    by_path = {lock.path: lock for lock in LOCKS}
    unknown = [p for p in paths if p not in by_path]
    if unknown:
        raise SystemExit(f"unknown lock {unknown}; known: {sorted(by_path)}")
    return [by_path[p] for p in paths] if paths else list(LOCKS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    check_parser = sub.add_parser("check", help="exit 1 when a lock is older than its inputs")
    check_parser.add_argument("locks", nargs="*")
    compile_parser = sub.add_parser("compile", help="rewrite the locks from their inputs with uv")
    compile_parser.add_argument("--uv", required=True)
    compile_parser.add_argument("--upgrade", action="store_true", help="the newest versions the inputs allow")
    compile_parser.add_argument("locks", nargs="*")
    requirement_parser = sub.add_parser("requirement", help="print one package's entry of a lock")
    requirement_parser.add_argument("name")
    requirement_parser.add_argument("lock")
    args = parser.parse_args(argv)

    if args.action == "check":
        stale = []
        for lock in _locks(args.locks):
            try:
                check(lock)
            except StaleLock as error:
                stale.append(str(error))
        if stale:
            print("\n".join(stale), file=sys.stderr)
            return 1
        return 0
    if args.action == "compile":
        for lock in _locks(args.locks):
            compile_lock(lock, args.uv, upgrade=args.upgrade)
        return 0
    try:
        print(requirement(args.name, (ROOT / args.lock).read_text()))
    except (KeyError, FileNotFoundError) as error:
        print(f"{args.name} is not pinned in {args.lock}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
