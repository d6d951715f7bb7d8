"""The cross-CPU check: the numbers the notebooks print move less between CPU profiles than the
tolerances of ``llm_tutorial.stable`` allow.

Each profile runs in a fresh process with PyTorch (ATen), MKL and oneDNN limited to other
instruction sets (``scripts/cpu_profiles.py``): AVX2, AVX-512 without AMX, ATen's no-SIMD
``default`` (the nearest thing here to an ARM laptop) and MKL's COMPATIBLE path. Because every
printed number keeps half a tolerance from where its text changes (checked by ``lt.fmt`` while
nbval runs) and every compared choice keeps half of ``GAP``, this one cheap test stands in for
re-running every notebook on every kind of CPU.
"""

import platform
import sys
from pathlib import Path

import pytest

from llm_tutorial import stable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import cpu_profiles  # noqa: E402

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                                reason="the instruction-set limits apply to x86-64 only")


@pytest.fixture(scope="module")
def numbers():
    """Every profile's numbers, computed side by side (one forked process and one thread each)."""
    return cpu_profiles.run_all([p for p in cpu_profiles.PROFILES if cpu_profiles.runnable(p)])


@pytest.fixture(scope="module")
def native(numbers):
    return numbers["native"]


@pytest.mark.parametrize("profile", [p for p in cpu_profiles.PROFILES if p != "native"])
def test_drift_between_cpu_profiles_is_within_half_the_tolerances(numbers, native, profile):
    if profile not in numbers:
        pytest.skip(f"this CPU cannot run the {profile} profile (ATen capability "
                    f"{native['capability']}: a profile only lowers what the CPU has)")
    drift = cpu_profiles.drift(numbers[profile], native)
    half = stable.checking() or 0.5  # what the test suite proves for each printed number
    assert drift["logits_abs"] <= half * stable.ATOL_LOGIT, drift
    assert drift["logprobs_abs"] <= half * stable.ATOL_LOGIT, drift
    assert drift["probs_rel"] <= half * stable.RTOL_PROB, drift
    assert drift["perplexity_rel"] <= half * stable.RTOL, drift
    assert drift["entropy_rel"] <= half * stable.RTOL, drift
    assert 2 * drift["logits_abs"] <= half * stable.GAP, drift  # a gap is a difference of two logits
    assert drift["same_top10"] and drift["same_greedy"], drift


def test_a_profile_this_cpu_cannot_run_is_known():
    assert not cpu_profiles.runnable("avx512", "AVX2") and not cpu_profiles.runnable("avx2", "DEFAULT")
    assert cpu_profiles.runnable("avx512", "AVX512") and cpu_profiles.runnable("default", "DEFAULT")
    assert not cpu_profiles.runnable("avx2", "NEON")


def test_the_profiles_really_change_the_kernels(numbers, native):
    assert numbers["default"]["capability"] == "DEFAULT" and numbers["avx2"]["capability"] == "AVX2"
    assert native["greedy_gap"] >= stable.GAP
    # the limits took effect in the forked processes: ATen's (default) and MKL's (mkl-compatible)
    # other kernels round differently from native
    assert cpu_profiles.drift(numbers["default"], native)["logits_abs"] > 0
    assert cpu_profiles.drift(numbers["mkl-compatible"], native)["logits_abs"] > 0
