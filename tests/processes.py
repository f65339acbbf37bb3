"""Real `munit` processes started side by side: each spends seconds importing torch on one core,
so two independent ones take the time of one on the project's two-core machines."""

from __future__ import annotations

import subprocess


def run_together(*commands: dict, timeout: float = 120) -> list[subprocess.CompletedProcess]:
    """Start every command at once (each a dict of `subprocess.Popen` arguments, plus `input`:
    bytes or text for its stdin), then wait for all of them, as `subprocess.run` waits for one."""
    started = []
    try:
        for command in commands:
            options = {k: v for k, v in command.items() if k != "input"}
            started.append((subprocess.Popen(**options), command.get("input")))
        done = []
        for proc, data in started:
            out, err = proc.communicate(data, timeout=timeout)
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        return done
    finally:
        for proc, _ in started:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
