"""The offline bundle's recipe (scripts/bundle.py). Building and setting up from a real bundle takes
minutes and half a GB: that is `make bundle` then `make bundle-check` (no network, a new folder)."""

import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import bundle  # noqa: E402


def test_platform_tag_names_os_machine_and_python():
    tag = bundle.platform_tag()
    system, machine, python = tag.split("-")
    assert system in {"linux", "macos", "windows"} and machine
    assert python == f"py{sys.version_info[0]}{sys.version_info[1]}"


def test_wheelhouse_holds_what_setup_installs():
    names = {Requirement(r).name.lower() for r in bundle.requirements()}
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert '".[dev,docs]"' in setup  # the extras the wheelhouse covers are the ones setup installs
    for needed in ("torch", "transformers", "jupyterlab", "nbval", "pytest", "sphinx", "myst-nb", "uv", "pip",
                   "setuptools"):
        assert needed in names, needed
    # the settings are read from setup.sh, so the bundle and a networked set-up agree
    assert f"TORCH_SPEC:-{bundle.setup_setting('TORCH_SPEC')}" in setup
    assert f"EMBEDDED_WHEEL={bundle.setup_setting('EMBEDDED_WHEEL')}" in setup
    assert bundle.setup_setting("uv").startswith("uv==")


def test_setup_script_uses_no_index(tmp_path):
    script = bundle.SETUP_OFFLINE.replace("@PYVERSION@", "3.11").replace("@TORCH_SPEC@", "torch==2.13.0")
    assert "PIP_NO_INDEX=1" in script and "no-index = true" in script and "UV_OFFLINE=1" in script
    path = tmp_path / "setup-offline.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0  # it parses


def test_setup_script_refuses_another_python(tmp_path):
    other = "3.1" if sys.version_info[:2] != (3, 1) else "3.2"  # a version no one has
    script = bundle.SETUP_OFFLINE.replace("@PYVERSION@", other).replace("@TORCH_SPEC@", "torch==2.13.0")
    path = tmp_path / "setup-offline.sh"
    path.write_text(script)
    result = subprocess.run(["bash", str(path), "--no-lab"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert result.returncode == 1
    assert f"this bundle's wheels are for Python {other}" in result.stderr
    assert not (tmp_path / "uv-offline.toml").exists()  # it stopped before doing anything


def test_check_refuses_a_missing_archive(tmp_path, capsys):
    assert bundle.check(tmp_path / "none.tar") == 2
    assert "run `make bundle` first" in capsys.readouterr().err
