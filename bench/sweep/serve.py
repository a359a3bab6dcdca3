"""One side of an A/B job as a long-lived process: `segbench sweep … --serve` takes cells on stdin, one
request a line, runs each as `segbench sweep` would (its own child process, its record, its resume), and
answers on stdout.

Why: an A/B night runs each cell on each side many times, and a fresh `segbench sweep` per run paid ~15 s
of Python, torch and transformers imports, the forkserver's preload and a new Ray instance for a cell
whose steady window is 5 s (28.7 s wall for one actors cell here, 13 s of it the cell). A server pays
them once a night per side, so the same budget holds about twice the rounds. Each cell is still forked
from the preloaded forkserver into a process of its own (bench.sweep.executor), so a crash or a hang
ends that cell alone, and every side still measures with its own tree's code.

The protocol is JSON lines. A request: {"settings": {sweep key: [value], …}, "repeats": k}; the server
applies them as the command line's overrides would and runs the sweep (which resumes: each request
adds a repeat). Its answers are the lines that start with PREFIX: {"ready": true} once Ray is up, then
{"exit": 0 | 1 | 2, "error": …} per request. Anything else on its stdout is not an answer. The parent
(`SideServer`) bounds every line it reads and every wait; a tree too old to serve (typer refuses the
option with exit 2 before "ready") is run one `segbench sweep` per cell, as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from bench.errors import ConfigError
from bench.sweep.executor import SweepInterrupted, kill_tree, run_sweep, shared_ray
from bench.sweep.spec import SWEPT, SweepSpec

PREFIX = "segbench-serve "
MAX_LINE = 64 * 1024  # a request or an answer is a few hundred bytes
START_TIMEOUT_S = 600.0  # imports and Ray's start take ~15 s here; a server silent for 10 min is stuck
CLOSE_TIMEOUT_S = 60.0  # after stdin closes: Ray's shutdown


def serve(spec: SweepSpec, results: Path, requests: IO[str], answers: IO[str], ray_address: str | None = None) -> int:
    """Answer requests until stdin closes, every cell on one Ray instance (started here unless
    `ray_address`); the exit code: 0, or 130/143 when a signal stopped it."""
    import strategies

    needs_ray = any(strategies.get(name).uses_ray for name in spec.strategies)
    try:
        with shared_ray(needs_ray, ray_address) as address:
            _answer(answers, {"ready": True})
            for line in iter(lambda: requests.readline(MAX_LINE), ""):
                _answer(answers, _one(spec, results, line, address))
    except SweepInterrupted as stop:
        return stop.exit_code
    return 0


def _one(spec: SweepSpec, results: Path, line: str, address: str | None) -> dict:
    try:
        request = json.loads(line)
        settings, repeats = request["settings"], request["repeats"]
        if not isinstance(settings, dict) or set(settings) - set(SWEPT) or not isinstance(repeats, int):
            raise ValueError("settings must map sweep keys to lists, repeats must be a whole number")
        cell = spec.with_overrides(**settings, repeats=repeats)
        cell = SweepSpec.from_dict(cell.to_dict(), "serve request")  # validated as the command line's overrides
    except (ValueError, KeyError, TypeError, ConfigError) as err:
        return {"exit": 2, "error": f"bad request: {err}"[:2000]}
    outcome = run_sweep(cell, results, ray_address=address)
    return {"exit": 1 if outcome.failed else 0}


def _answer(answers: IO[str], message: dict) -> None:
    answers.write(PREFIX + json.dumps(message) + "\n")
    answers.flush()


class ServerGone(Exception):
    """The server ended, or sent no answer in time (`timed_out`; it was killed); `code`: its exit code."""

    def __init__(self, why: str, code: int | None = None, timed_out: bool = False) -> None:
        super().__init__(why)
        self.code, self.timed_out = code, timed_out


class SideServer:
    """The parent's end: a `segbench sweep ARGS --serve` in `tree` with `env`, started by `start`."""

    def __init__(self, sweep_args: list[str], tree: Path, folder: Path, env: dict[str, str] | None = None) -> None:
        self.command = [sys.executable, "-m", "bench", "sweep", *sweep_args, "--serve", "--results", str(folder),
                        "--quiet"]
        self.tree, self.env = tree, {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    def start(self, timeout_s: float = START_TIMEOUT_S) -> bool:
        """Start it and wait up to `timeout_s` for "ready": True; False when the tree cannot serve (it ended
        before ready with exit code 2, typer's answer to an option it lacks). ServerGone when it ended
        otherwise or hung."""
        self.process = subprocess.Popen(self.command, cwd=self.tree, env=self.env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()
        try:
            self._wait_answer(timeout_s)
        except ServerGone as gone:
            if gone.code == 2:
                return False
            raise
        return True

    def run(self, settings: dict[str, list], repeats: int, timeout_s: float) -> int:
        """One request: the sweep's exit code for it (0, 1 a cell failed and is recorded, 2 refused).
        ServerGone when the server ended or gave no answer within `timeout_s` (it is then killed)."""
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps({"settings": settings, "repeats": repeats}) + "\n")
            self.process.stdin.flush()
        except OSError:
            raise ServerGone("it had ended", self.process.wait()) from None
        answer = self._wait_answer(timeout_s)
        if answer.get("error"):
            print(f"segbench ab: {answer['error']}", file=sys.stderr)
        code = answer.get("exit")
        return code if isinstance(code, int) else 2

    def close(self) -> None:
        """Close its stdin (it shuts its Ray down and ends), and kill it if it has not ended in time."""
        if self.process is None:
            return
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            kill_tree(self.process.pid)
            self.process.wait()

    def _read(self, stdout: IO[str]) -> None:
        """Its stdout, line by line (bounded), to the queue; what is not an answer goes on to stderr."""
        for line in iter(lambda: stdout.readline(MAX_LINE), ""):
            if line.startswith(PREFIX):
                self._lines.put(line[len(PREFIX):])
            else:
                sys.stderr.write(line)
        self._lines.put(None)  # it ended

    def _wait_answer(self, timeout_s: float) -> dict:
        """The next answer, waiting on the reader's queue (no polling) up to `timeout_s`."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                kill_tree(self.process.pid)
                raise ServerGone(f"gave no answer within {timeout_s:g} s and was killed", self.process.wait(),
                                 timed_out=True) from None
            if line is None:
                self._lines.put(None)  # every later wait sees the end too
                raise ServerGone(f"ended with exit code {self.process.wait()}", self.process.returncode)
            with contextlib.suppress(ValueError):
                answer = json.loads(line)
                if isinstance(answer, dict):
                    return answer
