"""Imports run one way: each package imports only its own modules and the layers below it.

Every import counts, also those inside functions (which hide a cycle from Python but not from a reader).
"""

import ast
import pathlib
import sys

import pytest

pytestmark = pytest.mark.fast

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Lowest first. A package may import the packages of lower layers, never one of its own layer or above.
LAYERS = (
    ("contract", "tensorflow_env"),  # names, types, layout and limits; the environment TensorFlow needs
    ("transform", "evaluation", "serving"),  # preprocessing, pure metrics, the exported model as served
    ("trainer_module",),  # the model and its export (loads the export back with serving's code)
    ("tfx_pipeline", "proxy"),  # the pipeline and the API: neither knows the other
    ("cli",),  # the `recsys` command, which composes them all
)
LAYER = {package: n for n, packages in enumerate(LAYERS) for package in packages}


def _source_files(package: str) -> list[pathlib.Path]:
    module = ROOT / f"{package}.py"
    return [module] if module.exists() else sorted((ROOT / package).rglob("*.py"))


def _imported_top_levels(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _violations(package: str) -> list[str]:
    found = []
    for path in _source_files(package):
        for name in sorted(_imported_top_levels(path) & LAYER.keys() - {package}):
            if LAYER[name] >= LAYER[package]:
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(LAYER))
def test_a_package_imports_only_lower_layers(package):
    assert _violations(package) == []


def test_every_package_of_the_project_has_a_layer():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} | {p.stem for p in ROOT.glob("*.py")}
    assert packages - {"setup", "tests", "benchmarks"} == set(LAYER)


@pytest.mark.parametrize("module", LAYERS[0])
def test_the_bottom_layer_imports_only_the_standard_library(module):
    assert _imported_top_levels(ROOT / f"{module}.py") <= set(sys.stdlib_module_names)


def test_the_check_finds_an_upward_import_inside_a_function(tmp_path, monkeypatch):
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "late.py").write_text("def f():\n    from proxy import app\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _violations("serving") == ["serving/late.py imports proxy"]


# What docker/proxy.Dockerfile copies, and what it must not need.
API_IMAGE = ("contract", "tensorflow_env", "serving", "proxy")
NOT_IN_API_IMAGE = {"tensorflow_recommenders", "duckdb", "tfx", "apache_beam", "tensorflow_transform"}


@pytest.mark.parametrize("package", API_IMAGE)
def test_the_api_image_code_needs_no_pipeline_package(package):
    imported = set().union(*map(_imported_top_levels, _source_files(package)))
    assert imported & (NOT_IN_API_IMAGE | set(LAYER) - set(API_IMAGE)) == set()


def test_the_cli_imports_only_the_api_image_code_before_a_command_runs():
    for path in _source_files("cli"):
        top_level = ast.parse(path.read_text()).body
        imported = set().union(*(_imported_top_levels_of(node) for node in top_level))
        assert imported & set(LAYER) <= {*API_IMAGE, "cli"}, path


def _imported_top_levels_of(node) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name.split(".")[0] for alias in node.names}
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return {node.module.split(".")[0]}
    return set()


def test_the_api_image_copies_the_api_code():
    dockerfile = (ROOT / "docker" / "proxy.Dockerfile").read_text()
    for package in (*API_IMAGE, "cli"):
        assert f" {package}" in dockerfile
    for package in set(LAYER) - {*API_IMAGE, "cli"}:
        assert f"COPY {package}" not in dockerfile and f" {package}.py" not in dockerfile
