"""Child processes to kill: started ahead, told when to go, read line by line, SIGKILLed.

A child is a fresh interpreter (``python -c``), never a fork of the test process, so it
holds no connection, lock or thread of the test's. It imports and prepares everything,
prints ``ready`` and waits for one line on stdin; :class:`Spawner` starts the next child
while the test checks the database the last one left, so the import time is hidden.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.reliability._workload import READY

REPO = Path(__file__).resolve().parents[2]
LINE_TIMEOUT = 120.0
"""Seconds a child may stay silent before the test gives up on it (a hung child is a
failure, not a wait until pytest's own timeout)."""


class Child:
    """One child process with line-oriented stdout and stderr kept in a file."""

    def __init__(self, code: str, args: Sequence[str]) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._buffer = b""
        self._eof = False
        self.killed = False

    def readline(self, timeout: float = LINE_TIMEOUT) -> str | None:
        """The next line without its newline, or None at end of output."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            if self._eof:
                rest, self._buffer = self._buffer, b""
                return rest.decode() if rest else None
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError(
                    f"child {self.proc.pid} said nothing for {timeout:g}s; stderr:\n{self.stderr()}"
                )
            readable, _, _ = select.select([self.proc.stdout], [], [], left)
            if readable:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if chunk:
                    self._buffer += chunk
                else:
                    self._eof = True
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def wait_ready(self) -> None:
        line = self.readline()
        if line != READY:
            self.proc.wait()
            raise AssertionError(
                f"child {self.proc.pid} did not start (said {line!r}); stderr:\n{self.stderr()}"
            )

    def go(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())
        self.proc.stdin.flush()

    def kill(self) -> bool:
        """SIGKILL the child; True when it was still running (the kill landed)."""
        running = self.proc.poll() is None
        if running:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.killed = True
        self.proc.wait()
        return running and self.proc.returncode == -signal.SIGKILL

    def rest(self) -> list[str]:
        """Every line still to be read, up to the end of output."""
        lines = []
        while (line := self.readline()) is not None:
            lines.append(line)
        return lines

    def finish(self) -> int:
        """Wait for a child that was not killed; its exit status."""
        self.proc.wait(timeout=LINE_TIMEOUT)
        return self.proc.returncode

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-4000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self._stderr.close()


class Spawner:
    """Hands out ready children, starting the next one as soon as one is taken."""

    def __init__(self, code: str, args: Sequence[str]) -> None:
        self.code = code
        self.args = list(args)
        self._next: Child | None = None
        self._all: list[Child] = []
        self.waited = 0.0
        """Seconds spent waiting for children to be ready."""

    def _start(self) -> Child:
        child = Child(self.code, self.args)
        self._all.append(child)
        return child

    def take(self, *, spare: bool = True) -> Child:
        child = self._next or self._start()
        self._next = self._start() if spare else None
        started = time.perf_counter()
        child.wait_ready()
        self.waited += time.perf_counter() - started
        return child

    def close(self) -> None:
        for child in self._all:
            child.close()
