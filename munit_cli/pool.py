"""Worker processes for per-file work, and how a run and its workers answer signals.

- SIGINT and SIGTERM stop the run in the parent only, as `Interrupted` (exit 130 / 143), after
  the caller has written down what is finished.
- Workers ignore both (they are born with them blocked) and die with their parent, even when
  the parent is killed with SIGKILL and cannot stop them: on Linux the kernel kills them
  (PR_SET_PDEATHSIG), and everywhere a watcher thread exits a worker whose parent is gone.
  Orphaned workers would otherwise keep the caller's pipes open, and a script that ran the
  command would never return.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from munit_cli.errors import Interrupted

# Starting worker processes costs about as much as decoding this many images.
MIN_PARALLEL_JOBS = 32
# More workers than this only costs memory: each holds its own interpreter and decoders.
MAX_WORKERS = 256
_PR_SET_PDEATHSIG = 1
_PARENT_POLL_S = 0.5

Job = TypeVar("Job")
Out = TypeVar("Out")


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_jobs(fn: Callable[[Job], Out], jobs: list[Job], workers: int) -> Iterator[Out]:
    """fn(job) for every job, results in order: in this process for a few jobs or one worker,
    else in `workers` spawned processes (never more than there are jobs)."""
    workers = min(workers, len(jobs))
    if workers <= 1 or len(jobs) < MIN_PARALLEL_JOBS:
        yield from map(fn, jobs)
        return
    # spawn, not fork: the parent may hold threads (torch, rich) that a forked child would inherit locked.
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        with _stop_signals_blocked():  # map() starts the workers: they inherit the mask
            results = pool.map(fn, jobs, chunksize=max(1, min(16, len(jobs) // (8 * workers))))
        yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _die_with_parent(parent: int) -> None:
    """Worker initializer: exit as soon as the process that started the pool is gone."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may have died before prctl took effect; the thread covers that and other systems.
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_S)
    os._exit(1)


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """Ctrl-C (and a SIGTERM sent to the process group) reaches every worker, even one still
    importing modules; only the parent should react: it stops the pool after the jobs in flight
    and records what is done. So workers are born with both signals blocked for good, and the
    parent gets any that arrived meanwhile as soon as the mask is restored."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _Terminated(KeyboardInterrupt):
    """SIGTERM raised where the program is, like Ctrl-C's KeyboardInterrupt, so both stop a run
    through the same cleanup."""


@contextlib.contextmanager
def stop_on_signals(message: str) -> Iterator[None]:
    """SIGINT and SIGTERM stop the block as Interrupted (exit 130 / 143) with
    "SIGNAME: `message`"; a KeyboardInterrupt raised inside counts as SIGINT."""

    def terminate(signum, frame):
        raise _Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
        installed = True
    except ValueError:  # not the main thread: signals are the caller's business
        installed = False
    try:
        yield
    except KeyboardInterrupt as exc:
        signum = signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT
        raise Interrupted(f"{signal.Signals(signum).name}: {message}", signum) from None
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous)
