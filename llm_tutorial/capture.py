"""Capture what a block emits (warnings, log records, printed text) and the error it is expected
to raise, so a notebook can show them and assert on them instead of leaving stray stderr."""

from __future__ import annotations

import io
import logging
import re
import sys
import warnings
from collections import Counter
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field

from .arguments import check_int

__all__ = ["Captured", "CaughtError", "capture", "expect_error", "short_error"]

DEFAULT_LOGGERS = ("transformers", "accelerate", "bitsandbytes")


@dataclass
class Captured:
    """What a ``capture()`` block emitted: ``warnings`` and ``logs`` as lists of strings, and
    (with ``streams=True``) the text written to ``stdout`` and ``stderr``."""

    warnings: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""

    @property
    def messages(self) -> list[str]:
        """Warnings then log messages."""
        return self.warnings + self.logs

    def _texts(self) -> list[str]:
        return self.messages + [t for t in (self.stdout, self.stderr) if t]

    def contains(self, phrase: str) -> bool:
        """True if any captured message (or captured stdout/stderr text) contains ``phrase``."""
        return self.count(phrase) > 0

    def count(self, phrase: str) -> int:
        """How many captured messages (and stdout/stderr texts) contain ``phrase``."""
        if not isinstance(phrase, str):
            raise TypeError(f"phrase must be a str, not {type(phrase).__name__}")
        return sum(phrase in text for text in self._texts())

    def find(self, phrase: str) -> str:
        """The first captured message (or stdout/stderr text) containing ``phrase``; raises
        ``LookupError`` listing what was captured when there is none."""
        for text in self._texts():
            if phrase in text:
                return text
        raise LookupError(f"nothing captured contains {phrase!r}; captured:\n{self}")

    def _lines(self, collapse: bool) -> list[str]:
        if collapse:
            lines = _collapse("warning", self.warnings) + _collapse("log", self.logs)
        else:
            lines = [f"warning: {m}" for m in self.warnings] + [f"log: {m}" for m in self.logs]
        return lines + [f"{name}: {text.rstrip()}" for name, text in (("stdout", self.stdout),
                                                                     ("stderr", self.stderr)) if text]

    def summary(self) -> str:
        """Like ``str()``, but each distinct message once, with ``(xN)`` when it was repeated.

        >>> print(Captured(logs=["cast to float16", "cast to float16"]).summary())
        log: cast to float16  (x2)
        """
        return "\n".join(self._lines(collapse=True)) or "(nothing captured)"

    def __str__(self) -> str:
        return "\n".join(self._lines(collapse=False)) or "(nothing captured)"


def _collapse(prefix: str, messages: list[str]) -> list[str]:
    """One line per distinct message, in first-seen order, with ``(xN)`` for repeats."""
    counts = Counter(messages)
    return [f"{prefix}: {m}" + (f"  (x{counts[m]})" if counts[m] > 1 else "") for m in counts]


@dataclass
class CaughtError(Captured):
    """What an ``expect_error()`` block raised (``error``), plus everything it emitted before."""

    error: BaseException | None = None
    origin: str = ""

    @property
    def type_name(self) -> str:
        """The exception's class name, e.g. ``'RuntimeError'``."""
        return type(self.error).__name__ if self.error is not None else ""

    @property
    def message(self) -> str:
        """The exception's message (``str(error)``)."""
        return str(self.error) if self.error is not None else ""

    def short(self, width: int = 160) -> str:
        """``Type: first line of the message``, cut to ``width`` characters."""
        return short_error(self.error, width) if self.error is not None else "(no error)"

    def __str__(self) -> str:
        emitted = self._lines(collapse=True)
        return "\n".join([self.short(), *emitted])


def short_error(error: BaseException, width: int = 160) -> str:
    """A one-line form of an exception: its type name and the first non-empty line of its
    message, cut to ``width`` characters (an ellipsis marks the cut).

    >>> short_error(ValueError("bad value\\nmore detail"))
    'ValueError: bad value'
    >>> short_error(AttributeError())
    'AttributeError: (empty message)'
    """
    if not isinstance(error, BaseException):
        raise TypeError(f"error must be an exception, not {type(error).__name__}")
    check_int(width, "width", low=20)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0] if lines else '(empty message)'}"
    return text if len(text) <= width else text[: width - 1] + "…"


def _check_loggers(loggers) -> tuple[str, ...]:
    if isinstance(loggers, str):
        return (loggers,)
    if not isinstance(loggers, (tuple, list)) or not all(isinstance(n, str) for n in loggers):
        raise TypeError(f"loggers must be a logger name or a tuple of names, not {loggers!r}")
    return tuple(loggers)


def _check_level(level) -> int:
    if isinstance(level, str):
        value = logging.getLevelName(level.upper())
        if not isinstance(value, int):
            raise ValueError(f"level must be a logging level such as 'WARNING' or logging.INFO, not {level!r}")
        return value
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f"level must be an int or a level name, not {type(level).__name__}")
    return level


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]):
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


@contextmanager
def _capturing(result: Captured, loggers: tuple[str, ...], level: int, streams: bool):
    """Fill ``result`` with what the block emits; restore every logger, filter and stream after,
    also when the block raises."""
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
    out, err = io.StringIO(), io.StringIO()
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if streams:
                sys.stdout.flush()
                sys.stderr.flush()
                with redirect_stdout(out), redirect_stderr(err):
                    yield result
            else:
                yield result
    finally:
        result.warnings.extend(str(w.message) for w in caught)
        result.stdout += out.getvalue()
        result.stderr += err.getvalue()
        for h, old_level in silenced:
            h.setLevel(old_level)
        for logger, propagate, old_level in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate
            logger.setLevel(old_level)


@contextmanager
def capture(loggers: str | tuple[str, ...] = DEFAULT_LOGGERS, level: int | str = logging.WARNING, *,
            streams: bool = False):
    """Collect Python warnings and log records (of ``loggers``, at ``level`` and above) raised
    inside the block instead of printing them. Every warning is recorded, even one that was
    already shown earlier in the process. With ``streams=True`` the text the block writes to
    ``sys.stdout`` / ``sys.stderr`` is captured too (Python-level writes, e.g. ``print``; not
    text that C code writes straight to the file descriptors).

    >>> import warnings
    >>> with capture() as got:
    ...     warnings.warn("old spelling")
    >>> got.warnings
    ['old spelling']
    >>> with capture(streams=True) as got:
    ...     print("hello")
    >>> got.stdout
    'hello\\n'
    """
    loggers, level = _check_loggers(loggers), _check_level(level)
    result = Captured()
    with _capturing(result, loggers, level, bool(streams)):
        yield result


def _origin(error: BaseException) -> str:
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return ""
    module = tb.tb_frame.f_globals.get("__name__", "?")
    return f"{module}.{tb.tb_frame.f_code.co_name}"


@contextmanager
def expect_error(*exceptions: type[BaseException], match: str | None = None,
                 loggers: str | tuple[str, ...] = DEFAULT_LOGGERS, level: int | str = logging.WARNING,
                 streams: bool = False):
    """Run a block that must raise one of ``exceptions`` (default: any ``Exception``), keep the
    error instead of stopping the notebook, and capture what the block emitted before it (as
    ``capture`` does). ``match`` is a regular expression that must be found in the message.

    The block raising nothing, or a message that does not match, is an ``AssertionError``; an
    exception of another type propagates unchanged. The traceback is dropped (so the frames of a
    failed forward pass do not keep tensors alive); ``origin`` names the function that raised.

    >>> with expect_error(ZeroDivisionError, match="division") as err:
    ...     1 / 0
    >>> print(err)
    ZeroDivisionError: division by zero
    """
    types = exceptions or (Exception,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise TypeError(f"exceptions must be exception classes, not {t!r}")
    if match is not None and not isinstance(match, str):
        raise TypeError(f"match must be a regular expression string or None, not {type(match).__name__}")
    loggers, level = _check_loggers(loggers), _check_level(level)
    names = " or ".join(t.__name__ for t in types)
    result = CaughtError()
    with _capturing(result, loggers, level, bool(streams)):
        try:
            yield result
        except types as error:
            result.origin = _origin(error)
            result.error = error.with_traceback(None)
    if result.error is None:
        raise AssertionError(f"expected the block to raise {names}, but it raised nothing")
    if match is not None and re.search(match, result.message) is None:
        raise AssertionError(
            f"expected {names} matching {match!r}, but the message was: {result.message!r}"
        ) from result.error
