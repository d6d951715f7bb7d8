"""Run at interpreter start-up when this folder is on ``PYTHONPATH`` (``scripts/cpu_profiles.py``
(``make test-profile``) puts it there for the profiles without AVX-512: avx2 and default).

Together with the variables that limit PyTorch, MKL and oneDNN to AVX2, it makes bitsandbytes
behave as on a CPU without AVX512-BF16: ``has_avx512bf16()`` answers False, so 4-bit layers
keep their standard layout after a forward pass (notebook 02). Nothing else is changed.
"""
import importlib.abc
import importlib.machinery
import sys


class _NoAvx512Bf16(importlib.abc.MetaPathFinder):
    """Patch ``bitsandbytes.functional.has_avx512bf16`` as soon as that module has run."""

    def find_spec(self, name, path, target=None):
        if name != "bitsandbytes.functional":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.has_avx512bf16 = lambda: False

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _NoAvx512Bf16())
