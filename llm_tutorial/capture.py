"""Capture warnings and log records from a block, so a notebook can show and assert them."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Captured:
    """What a ``capture()`` block emitted: ``warnings`` and ``logs`` as lists of strings."""

    warnings: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    @property
    def messages(self) -> list[str]:
        """Warnings then log messages."""
        return self.warnings + self.logs

    def contains(self, phrase: str) -> bool:
        """True if any captured message contains ``phrase``."""
        return any(phrase in m for m in self.messages)

    def __str__(self) -> str:
        lines = [f"warning: {m}" for m in self.warnings] + [f"log: {m}" for m in self.logs]
        return "\n".join(lines) or "(nothing captured)"


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]):
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


@contextmanager
def capture(loggers: tuple[str, ...] = ("transformers", "accelerate", "bitsandbytes"),
            level: int = logging.WARNING):
    """Collect Python warnings and log records (of ``loggers``, at ``level`` and above) raised
    inside the block instead of printing them. Every warning is recorded, even one that was
    already shown earlier in the process.

    >>> import warnings
    >>> with capture() as got:
    ...     warnings.warn("old spelling")
    >>> got.warnings
    ['old spelling']
    """
    result = Captured()
    handler = _ListHandler(result.logs)
    handler.setLevel(level)
    saved = []
    for name in loggers:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, logger.level))
        logger.addHandler(handler)
        logger.propagate = False
        if logger.level == logging.NOTSET or logger.level > level:
            logger.setLevel(level)
    # transformers keeps its own handler on its root logger; silence it while we capture
    hf_root = logging.getLogger("transformers")
    silenced = [(h, h.level) for h in hf_root.handlers if h is not handler]
    for h, _ in silenced:
        h.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield result
        result.warnings.extend(str(w.message) for w in caught)
    finally:
        for h, old_level in silenced:
            h.setLevel(old_level)
        for logger, propagate, old_level in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate
            logger.setLevel(old_level)
