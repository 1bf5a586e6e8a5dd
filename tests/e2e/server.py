"""``lrserve serve`` as a child process on a free port, for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def lrserve_command() -> list[str]:
    """The installed entry point next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("lrserve")
    if script.exists():
        return [str(script)]
    found = shutil.which("lrserve")
    return [found] if found else [sys.executable, "-m", "lrserve.cli.main"]


class ServerProcess:
    """One ``lrserve serve`` process; ``restart()`` starts a new one on the same port and arguments."""

    def __init__(self, log_dir: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.port = port or free_port()
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"server-{self.port}-{self.starts}.log"

    def start(self, timeout: float = 60) -> ServerProcess:
        self.starts += 1
        self._log = self.log_path.open("wb")
        command = [*lrserve_command(), "serve", "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"lrserve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"lrserve not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._log is not None:
            self._log.close()
        return code

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait: uvicorn finishes requests in flight, then re-raises the signal (exit -15)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc is not None else 0
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.wait()

    def restart(self, timeout: float = 60) -> ServerProcess:
        self.kill()
        return self.start(timeout)

    def __enter__(self) -> ServerProcess:
        running = self.proc is not None and self.proc.poll() is None
        return self if running else self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()
