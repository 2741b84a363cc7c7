"""Tests of src.progress: log lines when stderr is not a terminal, a tqdm bar when it is (no sleeping)."""
from __future__ import annotations

import io
import logging

import pytest
from tqdm import tqdm

from src.progress import LogProgress, progress


class FakeClock:
    """A clock that moves only when told: each call returns the current time, then adds ``step``."""

    def __init__(self, step: float = 1.0) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def logged(caplog) -> pytest.LogCaptureFixture:
    """Captures INFO and above from the ``rfood`` logger; ``logged.messages`` lists the lines so far."""
    caplog.set_level(logging.INFO, logger="rfood")
    return caplog


def test_every_step_logged_with_counts_and_final_100_percent(logged):
    bar = progress(range(4), "epoch 1/2", interval_s=0, stream=io.StringIO(), clock=FakeClock())
    assert isinstance(bar, LogProgress)
    for _ in bar:
        bar.set_postfix(loss=0.123456)
    lines = logged.messages
    assert len(lines) == 4  # one per step; the final count is not repeated on close
    assert lines[0].startswith("epoch 1/2: 1/4 (25%) 1.00 it/s, elapsed 00:01, eta 00:03")
    assert lines[-1].startswith("epoch 1/2: 4/4 (100%) ") and "eta" not in lines[-1]
    assert lines[-1].endswith("loss=0.1235")


def test_large_interval_logs_only_the_final_line(logged):
    for _ in progress(range(50), "val", interval_s=3600, stream=io.StringIO(), clock=FakeClock()):
        pass
    assert len(logged.messages) == 1 and logged.messages[0].startswith("val: 50/50 (100%)")


def test_lines_follow_the_interval(logged):
    bar = progress(None, "scoring", total=100, unit="sample", interval_s=10, stream=io.StringIO(),
                   clock=FakeClock(step=4.0))  # start at 4 s; each update reads the clock once
    for _ in range(10):
        bar.update(10)  # seen at 8, 12, 16, ... s: a line once 10 s have passed since the last one
    bar.close()
    lines = logged.messages
    assert [line.split(" ")[1] for line in lines] == ["30/100", "60/100", "90/100", "100/100"]
    assert "sample/s" in lines[0]


def test_update_counts_samples_with_si_units(logged):
    clock = FakeClock(step=0.5)
    with progress(None, "stream", unit="sample", unit_scale=True, interval_s=1e9, stream=io.StringIO(),
                  clock=clock) as bar:
        bar.update(1_500_000)
        bar.update(500_000)
    assert logged.messages == ["stream: 2.00M sample 1.33M sample/s, elapsed 00:01"]


def test_disabled_logs_and_shows_nothing(logged):
    stream = io.StringIO()
    bar = progress(range(3), "rank 1", enabled=False, interval_s=0, stream=stream)
    assert list(bar) == [0, 1, 2]
    bar.set_postfix(loss=1.0)
    bar.update(5)
    bar.close()
    assert logged.messages == [] and stream.getvalue() == ""


def test_terminal_gets_a_tqdm_bar_and_no_log(logged):
    terminal = Terminal()
    bar = progress(range(3), "epoch 1/1", interval_s=0, stream=terminal)
    assert isinstance(bar, tqdm) and not bar.disable and not bar.leave
    for _ in bar:
        bar.set_postfix(loss=0.5)
    assert "epoch 1/1" in terminal.getvalue() and logged.messages == []


def test_leaving_a_loop_early_still_logs_the_count_reached(logged):
    for index in progress(range(100), "train", interval_s=3600, stream=io.StringIO(), clock=FakeClock()):
        if index == 9:
            break
    lines = logged.messages
    assert len(lines) == 1 and lines[0].startswith("train: 9/100 (9%)")  # the 10th step did not finish


def test_without_final_line_a_short_loop_logs_nothing(logged):
    for _ in progress(range(50), "epoch 1/9", interval_s=3600, stream=io.StringIO(), clock=FakeClock(),
                      final_line=False):
        pass
    assert logged.messages == []
