"""Packaging: what `sam build` produces for each function (BuildMethod: makefile).

`sam build` runs `make build-<LogicalId>` with ARTIFACTS_DIR set; these tests run the same
Makefile targets into a temporary ARTIFACTS_DIR (the sam CLI itself is not needed) and then
import each handler in a clean interpreter (`python -I -S`: no site-packages, no PYTHONPATH)
whose sys.path holds only the function directory plus what the Lambda python runtime provides
(boto3, botocore and their dependencies - linked here from this environment).

The build installs the functions' requirements with pip for the Lambda platform, so it needs
the package index (or pip's cache) like `sam build` does.
"""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cfnmodel import ROOT

FUNCTIONS = {
    "OnboardingFunction": "onboarding",
    "RelayFunction": "relay",
    "CanaryFunction": "onboarding",  # the scheduled canary ships the onboarding package
}
# What the python3.13 Lambda runtime puts on sys.path besides the function directory.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
NOT_IN_A_FUNCTION = {
    "tests",
    "docs",
    "bench",
    "bin",
    "template.yaml",
    "management.yaml",
    "Makefile",
    "pyproject.toml",
    "README.md",
    ".venv",
}


def build(project: Path, function: str, artifacts: Path) -> None:
    subprocess.run(
        ["make", "--no-print-directory", "-s", f"build-{function}"],
        cwd=project,
        env={
            "PATH": "/usr/bin:/bin:/usr/local/bin",
            "ARTIFACTS_DIR": str(artifacts),
            "PYTHON": sys.executable,
            "HOME": str(artifacts.parent),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        },
        check=True,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def lambda_runtime(tmp_path_factory) -> Path:
    """A directory standing in for the runtime's own site-packages (boto3 and friends)."""
    runtime = tmp_path_factory.mktemp("lambda-runtime")
    for name in RUNTIME_PROVIDED:
        origin = Path(importlib.util.find_spec(name).origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (runtime / source.name).symlink_to(source)
    return runtime


def clean_import(artifacts: Path, runtime: Path, code: str) -> subprocess.CompletedProcess:
    prelude = f"import sys; sys.path[:0] = [{str(artifacts)!r}, {str(runtime)!r}]\n"
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", prelude + code],
        cwd=artifacts.parent,  # not the project root: its packages must not be importable
        env={"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    directories = {}
    for function in FUNCTIONS:
        artifacts = tmp_path_factory.mktemp("build") / function
        build(ROOT, function, artifacts)
        directories[function] = artifacts
    return directories


@pytest.mark.parametrize(("function", "package"), FUNCTIONS.items())
def test_function_directory_holds_its_package_and_runtime_dependencies_only(
    built, function, package
):
    artifacts = built[function]
    entries = {entry.name for entry in artifacts.iterdir()}
    other = ({"onboarding", "relay"} - {package}).pop()

    assert package in entries
    assert other not in entries
    assert not entries & NOT_IN_A_FUNCTION
    assert not entries & set(RUNTIME_PROVIDED)  # the runtime provides them
    assert "aws_lambda_powertools" in entries
    assert not entries & {"aws_xray_sdk", "wrapt"}  # no Tracer: nothing would import them
    if package == "onboarding":
        assert "jinja2" in entries  # the reports

    source = {
        p.relative_to(ROOT / package)
        for p in (ROOT / package).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name != "requirements.txt"
    }
    packaged = {
        p.relative_to(artifacts / package) for p in (artifacts / package).rglob("*") if p.is_file()
    }
    assert packaged == source
    size = sum(p.stat().st_size for p in artifacts.rglob("*") if p.is_file())
    assert size < 15 * 1024 * 1024, f"{function}: {size / 1e6:.1f} MB slows every cold start"


@pytest.mark.parametrize(("function", "package"), FUNCTIONS.items())
def test_handler_imports_as_configured_in_a_clean_interpreter(
    built, lambda_runtime, sam_template, function, package
):
    handler = sam_template["Resources"][function]["Properties"]["Handler"]
    module, _, attribute = handler.rpartition(".")
    # a Handler naming a module that is not there is exactly what this test exists to catch
    assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), f"{function}: no {module}"
    result = clean_import(
        built[function],
        lambda_runtime,
        f"import importlib\nm = importlib.import_module({module!r})\n"
        f"assert callable(getattr(m, {attribute!r}))\nprint(m.__file__)\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(built[function]))


def test_the_clean_interpreter_sees_the_function_directory_and_nothing_else(
    tmp_path, lambda_runtime
):
    # The harness itself, independent of the real handlers: a project copy whose onboarding
    # package holds a probe handler that needs exactly the declared dependencies.
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "Makefile", project)
    for package in set(FUNCTIONS.values()):
        (project / package).mkdir()
        shutil.copy(ROOT / package / "requirements.txt", project / package)
        (project / package / "__init__.py").write_text("")
    (project / "onboarding" / "handler.py").write_text(
        "import boto3\nimport jinja2\nfrom aws_lambda_powertools import Logger, Metrics\n"
        "logger = Logger(service='probe')  # powertools vendored, botocore the runtime's\n\n"
        "def lambda_handler(event, context):\n    return event\n"
    )
    artifacts = tmp_path / "OnboardingFunction"
    build(project, "OnboardingFunction", artifacts)

    imported = clean_import(
        artifacts, lambda_runtime, "from onboarding.handler import lambda_handler"
    )
    assert imported.returncode == 0, imported.stderr
    for foreign in ("relay", "pytest", "moto", "cfnlint"):
        result = clean_import(artifacts, lambda_runtime, f"import {foreign}")
        assert "ModuleNotFoundError" in result.stderr, foreign
