"""The figures behind the README's Guarantees, printed at the end of a test run.

The fault-injection and bad-input tests count what they did through the `reliability` fixture
(`reliability.add("kills", 3)`); a figure is only printed when some test counted it, so a run of a
few tests prints the figures of those tests. Registered by the repository's root conftest.py.
"""

from __future__ import annotations

from collections import Counter

import pytest

# What each counter means, in the order printed.
FIGURES = {
    "kills": "training processes killed with SIGKILL (kill -9) at random moments",
    "kills_in_write": "  of them while a checkpoint file was being written",
    "exact_runs": "killed runs resumed with --resume auto to the end, weights bit-exact to an uninterrupted run",
    "damaged_checkpoints": "damaged newest checkpoints detected (resume fell back to the previous one)",
    "failed_saves": "saves that failed (no space left, file too large) with the previous checkpoint intact",
    "stop_signals": "SIGINT / SIGTERM stops checked for exit code and half-written files",
    "bad_inputs": "bad inputs tried (random and mutated images, style and model files, malicious safetensors)",
    "bad_configs": "config values tried (hypothesis: wrong kinds, out of range, not finite, unknown keys)",
    "forged_training_files": "forged training states and packed-data indexes and shards refused before use",
    "refused_overwrites": "folders --overwrite refused to clear (datasets, unrelated files) with nothing removed",
    "endless_inputs": "inputs that never end answered in bounded time (FIFOs, /dev/zero, endless stdin, links to /)",
    "oversized_images": "valid images too large for the memory budget refused with a message, the rest done",
    "prepare_kills": "munit prepare killed with SIGKILL (kill -9), no worker process left behind",
    "files_checked": "files checked whole after faults (every checkpoint after each kill, prepared images)",
    "unclear_failures": "bad inputs answered with a traceback or without a one-line message",
    "files_lost": "files lost or left half-written",
}
# Always printed when anything was counted: the guarantee is that these stay 0.
MUST_BE_ZERO = ("unclear_failures", "files_lost")

_COUNTS = pytest.StashKey[Counter]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_COUNTS] = Counter()


class Figures:
    def __init__(self, counts: Counter):
        self._counts = counts

    def add(self, name: str, n: int = 1) -> None:
        if name not in FIGURES:
            raise KeyError(f"unknown reliability figure {name!r}")
        self._counts[name] += n


@pytest.fixture(scope="session")
def reliability(pytestconfig: pytest.Config) -> Figures:
    return Figures(pytestconfig.stash[_COUNTS])


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    counts = config.stash.get(_COUNTS, Counter())
    if not counts:
        return
    terminalreporter.section("reliability figures")
    width = max(len(label) for label in FIGURES.values())
    for name, label in FIGURES.items():
        if name in counts or name in MUST_BE_ZERO:
            terminalreporter.write_line(f"{label:<{width}}  {counts[name]}")
