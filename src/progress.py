"""Progress that shows on a terminal and still reaches a log file when nobody is watching.

``tqdm(..., disable=None)`` hides its bar whenever stderr is not a terminal (nohup, SLURM,
``2>&1 | tee``), so long jobs leave no trace of how far they got. :func:`progress` keeps the tqdm
bar on a terminal and otherwise logs an INFO line through the ``rfood`` logger every
``interval_s`` seconds and once at the end, e.g.::

    epoch 3/100: 120/500 (24%) 15.00 it/s, elapsed 00:08, eta 00:25, loss=0.0123

Both kinds offer what the scripts use of tqdm: iteration, ``update(n)``, ``set_postfix(**kw)``,
``close()`` and ``with``::

    for batch in (bar := progress(loader, "epoch 1/10")):
        bar.set_postfix(loss=loss.item())

    with progress(None, "scoring", total=n_samples, unit="sample", unit_scale=True) as bar:
        bar.update(len(chunk))  # count samples rather than loop steps
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from tqdm import tqdm

log = logging.getLogger("rfood")


def progress(iterable: Iterable | None, desc: str, total: int | None = None, unit: str = "it",
             enabled: bool = True, interval_s: float = 30.0, unit_scale: bool = False,
             stream: IO[str] | None = None, clock: Callable[[], float] = time.monotonic,
             final_line: bool = True) -> tqdm | LogProgress:
    """A tqdm bar (``leave=False``) when ``stream`` (default stderr) is a terminal, else a :class:`LogProgress`.

    ``enabled=False`` (e.g. non-main torchrun processes) shows and logs nothing but still iterates.
    ``total`` defaults to ``len(iterable)`` where it has one. ``unit_scale`` writes counts and
    rates with SI prefixes (1.23M). ``final_line=False`` skips the closing line (for loops whose
    caller logs its own summary, such as a training epoch). ``clock`` (seconds) is only for tests.
    """
    stream = sys.stderr if stream is None else stream
    if not enabled:
        return tqdm(iterable, desc=desc, total=total, disable=True)
    if is_terminal(stream):
        return tqdm(iterable, desc=desc, total=total, unit=unit, unit_scale=unit_scale, leave=False, file=stream)
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    return LogProgress(iterable, desc, total, unit, unit_scale, interval_s, clock, final_line)


def is_terminal(stream: IO[str] | None) -> bool:
    """Whether ``stream`` is an open terminal (tqdm's own test for ``disable=None``)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


class LogProgress:
    """Progress as INFO log lines: at most one every ``interval_s`` seconds, and a last one on :meth:`close`.

    Iterating counts one per item and closes at the end (or when the loop is left early); call
    :meth:`update` to count something else (samples, bytes) and :meth:`close` when done.
    """

    def __init__(self, iterable: Iterable | None, desc: str, total: int | None, unit: str, unit_scale: bool,
                 interval_s: float, clock: Callable[[], float], final_line: bool = True) -> None:
        self.iterable, self.desc, self.total, self.unit = iterable, desc, total, unit
        self.unit_scale, self.interval_s, self.clock = unit_scale, interval_s, clock
        self.n = 0
        self.postfix: dict[str, Any] = {}
        self.start_time = self.last_log_time = clock()
        self.last_logged_n: int | None = None
        self.closed = False
        self.final_line = final_line

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError(f"progress {self.desc!r} was made without an iterable; call update(n) instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more; logs a line when ``interval_s`` has passed since the last one."""
        self.n += n
        now = self.clock()
        if now - self.last_log_time >= self.interval_s:
            self.log_line(now)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        """Values shown at the end of the next line (``loss=0.0123``); same call as tqdm's."""
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def close(self) -> None:
        """Log the final line (unless the last line already showed this count); later calls do nothing."""
        if self.closed:
            return
        self.closed = True
        if self.final_line and self.last_logged_n != self.n:
            self.log_line(self.clock())

    def log_line(self, now: float) -> None:
        log.info("%s", self.describe(now - self.start_time))
        self.last_log_time, self.last_logged_n = now, self.n

    def describe(self, elapsed: float) -> str:
        """``desc: n/total (pct) rate unit/s, elapsed, eta[, postfix]`` for ``elapsed`` seconds."""
        rate = self.n / elapsed if elapsed > 0 else None
        rate_text = "?" if rate is None else self.format_count(rate, "{:.2f}")
        parts = [f"{self.desc}: {self.count_text()} {rate_text} {self.unit}/s",
                 f"elapsed {tqdm.format_interval(elapsed)}"]
        if self.total and self.n < self.total:
            parts.append(f"eta {'?' if not rate else tqdm.format_interval((self.total - self.n) / rate)}")
        parts += [f"{key}={format_value(value)}" for key, value in self.postfix.items()]
        return ", ".join(parts)

    def count_text(self) -> str:
        if self.total is None:
            return f"{self.format_count(self.n)} {self.unit}"
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        return f"{self.format_count(self.n)}/{self.format_count(self.total)}{share}"

    def format_count(self, value: float, plain: str = "{}") -> str:
        return tqdm.format_sizeof(value) if self.unit_scale else plain.format(value)


def format_value(value: Any) -> str:
    """A postfix value: floats to 4 significant digits, anything else as ``str``."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
