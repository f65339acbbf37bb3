"""A warm Python that forks `munit` commands on request, for tests that start many short processes.

Importing torch and munit costs seconds per process; a kill -9 schedule needs dozens of processes.
The zygote imports everything once (without starting any thread, so forking is safe) and forks a
child per command: each child is a real process running the real command line from `main`, so a
signal sent to it is a real signal, and kill -9 is a real kill -9.

Run as a script it serves JSON lines on stdin/stdout: a request {"argv", "cwd", "log"} (and
optionally "max_file_bytes", the child's RLIMIT_FSIZE) is answered {"pid"} at once and {"status"}
when the child ends (its exit code, or -N for death by signal N).
`Zygote` is the test side of that conversation.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path


def serve() -> None:
    import torch
    import torchvision.utils  # noqa: F401 - the sample grids import it on first use

    from munit_cli import cli, infer, prepare, train  # noqa: F401

    torch.set_num_threads(1)
    for line in iter(sys.stdin.readline, ""):
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        _reply({"pid": pid})
        _reply({"status": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])})


def _reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _child(request: dict) -> None:
    code = 70
    try:
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        sys.stdin = open(os.devnull)  # the zygote's buffered requests are not the child's input
        os.chdir(request["cwd"])
        if request.get("max_file_bytes") is not None:  # writes past it fail with EFBIG (Python ignores SIGXFSZ)
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (request["max_file_bytes"],) * 2)
        from munit_cli.cli import app

        app(args=request["argv"], prog_name="munit")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class Zygote:
    """The test side: `start(argv, cwd, log)` gives the child's pid; `wait(timeout)` its status."""

    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self._buffer = b""
        self.running: int | None = None

    def start(self, argv: list[str], cwd: Path, log: Path, max_file_bytes: int | None = None) -> int:
        assert self.running is None, "one child at a time"
        request = {"argv": argv, "cwd": str(cwd), "log": str(log), "max_file_bytes": max_file_bytes}
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        self.running = self._message(timeout=120)["pid"]
        return self.running

    def wait(self, timeout: float) -> int | None:
        """The running child's status, or None if it is still running after `timeout` seconds."""
        message = self._message(timeout)
        if message is None:
            return None
        self.running = None
        return message["status"]

    def run(self, argv: list[str], cwd: Path, log: Path, timeout: float = 300, max_file_bytes: int | None = None):
        self.start(argv, cwd, log, max_file_bytes)
        status = self.wait(timeout)
        if status is None:
            os.kill(self.running, 9)
            self.wait(60)
            raise TimeoutError(f"munit {' '.join(argv)} ran longer than {timeout} s")
        return status

    def _message(self, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = max(0.0, deadline - time.monotonic())
            if not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"the zygote died ({self.proc.wait()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def stop(self) -> None:
        """Kill the running child, if any (a failed test must not leave one for the next)."""
        if self.running is not None:
            os.kill(self.running, 9)
            self.wait(60)

    def close(self) -> None:
        self.stop()
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


if __name__ == "__main__":
    serve()
