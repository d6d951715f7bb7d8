"""environment.yml (conda) and pyproject.toml (pip) name the same packages with the same floors."""

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def pip_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + [r for extra in ("dev", "docs") for r in project["optional-dependencies"][extra]]]
    return {r.name.lower(): str(r.specifier) for r in reqs}


def conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    found = {}
    for item in env["dependencies"]:
        if not isinstance(item, str) or item in {"pip"} or item.startswith("python"):
            continue
        name, spec = re.match(r"^([A-Za-z0-9_.-]+)(.*)$", item).groups()
        found[CONDA_NAMES.get(name, name).lower()] = str(Requirement(f"x{spec}").specifier)
    return found


def test_same_packages_and_same_version_bounds():
    assert conda_requirements() == pip_requirements()


def test_constraints_satisfy_the_floors():
    pins = {}
    for line in (ROOT / "requirements/constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version.strip()
    for name, spec in pip_requirements().items():
        if name == "torch":
            assert name not in pins, "torch is installed by scripts/setup.sh, not pinned here"
            continue
        assert name in pins, f"{name} missing from requirements/constraints.txt"
        assert Requirement(f"x{spec}").specifier.contains(pins[name]), (name, spec, pins[name])
