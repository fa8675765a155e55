"""setup.cfg declares what the code imports.

A package imported by ``ahtwist/`` but not declared works on a developer's
machine (something else pulled it in) and breaks on a clean install; so does
a test or benchmark whose import is missing from its extra.
"""

import ast
import configparser
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: distribution name (lower-case) -> the top-level module it provides
IMPORT_NAMES = {
    "twisted": "twisted",
    "pyopenssl": "OpenSSL",
    "zope.interface": "zope",
    "python-multipart": "python_multipart",
    "service-identity": "service_identity",
}


def requirements(section: str, key: str) -> set[str]:
    """The top-level module names of one requirement list in setup.cfg."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    names = set()
    for line in config[section][key].splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        dist = re.split(r"[\s\[<>=!~;]", line)[0].lower()
        names.add(IMPORT_NAMES.get(dist, dist.replace("-", "_")))
    return names


def third_party_imports(folder: str) -> dict[str, str]:
    """Top-level modules imported under ``folder`` that are neither the
    standard library nor the repository's own code -> one place importing it."""
    first_party = {"ahtwist", "tests", "bench"}
    for path in (ROOT / folder).rglob("*.py"):
        first_party.add(path.stem)
        first_party.update(part for part in path.relative_to(ROOT).parts[:-1])
    found: dict[str, str] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in first_party or top == "__future__":
                    continue
                found.setdefault(top, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def undeclared(folder: str, declared: set[str]) -> list[str]:
    return sorted(
        f"{module} ({where})"
        for module, where in third_party_imports(folder).items()
        if module not in declared
    )


def test_the_package_declares_every_import():
    installed = requirements("options", "install_requires")
    assert undeclared("ahtwist", installed) == []


def test_the_test_extra_covers_the_tests():
    declared = requirements("options", "install_requires") | requirements(
        "options.extras_require", "test"
    )
    assert undeclared("tests", declared) == []


def test_the_bench_extra_covers_the_benchmarks():
    declared = requirements("options", "install_requires") | requirements(
        "options.extras_require", "bench"
    )
    assert undeclared("bench", declared) == []
    # what only the benchmarks need is in the bench extra, not the package
    assert {"klein", "psutil"} <= requirements("options.extras_require", "bench")


def test_the_package_ships_its_type_information():
    """PEP 561: ``py.typed`` is in the package and in its package data."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["options.package_data"]["ahtwist"].split() == ["py.typed"]
    assert (ROOT / "ahtwist" / "py.typed").is_file()


def test_every_package_of_the_source_tree_is_packaged():
    """A subpackage missing from ``packages`` imports from the checkout and
    fails from a wheel."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}
    found = {
        ".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "ahtwist").rglob("__init__.py")
    }
    assert found - listed == set()
