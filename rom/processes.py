"""A few commands at a time in subprocesses, each with its log file (training several models on
a 2-core machine: one TensorFlow thread trains the paper's network about as fast as two, so
two processes train two models in about the time of one; ``benchmarks/training_speed.py``)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def threads_per_job(jobs: int) -> dict[str, str]:
    """The environment of a process that shares the cores with ``jobs - 1`` others: its share
    of the cores as TensorFlow intra-op threads (unless ``TF_NUM_INTRAOP_THREADS`` is set),
    and TensorFlow's start-up log lines off (unless ``TF_CPP_MIN_LOG_LEVEL`` is set)."""
    env = dict(os.environ)
    env.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_commands(commands: list[tuple[list[str], Path]], jobs: int, env: dict[str, str],
                 started: str | None = None) -> None:
    """Run ``(argv, log_path)`` commands, up to ``jobs`` at once, each one's output (stdout
    and stderr) to its log; ``started`` (a format string with ``{log}``) is printed as each
    starts.

    Raises
    ------
    RuntimeError
        When a command exits non-zero (naming its log); the others still running are
        terminated.
    """
    todo = list(commands)
    running: list[tuple[Path, subprocess.Popen, object]] = []
    try:
        while todo or running:
            while todo and len(running) < jobs:
                argv, log_path = todo.pop(0)
                log_path.parent.mkdir(parents=True, exist_ok=True)
                log = log_path.open("w")
                if started:
                    print(started.format(log=log_path), flush=True)
                running.append((log_path, subprocess.Popen(argv, stdout=log,
                                                           stderr=subprocess.STDOUT, env=env),
                                log))
            time.sleep(0.5)
            for item in [r for r in running if r[1].poll() is not None]:
                running.remove(item)
                item[2].close()
                if item[1].returncode != 0:
                    raise RuntimeError(f"{' '.join(item[1].args[:3])} ... failed (exit "
                                       f"{item[1].returncode}); see {item[0]}")
    finally:
        for _, proc, log in running:
            proc.terminate()
            proc.wait()
            log.close()
