"""Start, watch and stop the stack's background processes.

Each component runs in its own session (process group), so stopping it also
stops what it spawned: MLflow's uvicorn and job workers, MLServer's inference
workers.  A recorded pid is only acted on if the process still has the start
time we recorded: a pid reused by an unrelated program is never killed.
"""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import psutil


class StartupError(RuntimeError):
    """A component did not come up; the message carries the end of its log."""


@dataclass
class ManagedProcess:
    name: str
    pid: int
    create_time: float
    url: str
    log: str
    ports: Dict[str, int] = field(default_factory=dict)
    info: Dict[str, str] = field(default_factory=dict)

    def process(self) -> Optional[psutil.Process]:
        """The live process, or None if it is gone (or the pid now belongs to another)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 0.5:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def is_running(self) -> bool:
        return self.process() is not None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after ``timeout``."""
        proc = self.process()
        if proc is None:
            return
        members = [proc] + _children(proc)
        _signal_group(self.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(members, timeout=timeout)
        if alive:
            _signal_group(self.pid, signal.SIGKILL)
            for member in alive:
                try:
                    member.kill()
                except psutil.Error:
                    pass
            psutil.wait_procs(alive, timeout=5)

    def to_dict(self) -> Dict:
        return asdict(self)


def _children(proc: psutil.Process) -> List[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def spawn(name: str, command: List[str], *, log: Path, env: Dict[str, str], cwd: Path,
          url: str, ports: Dict[str, int], info: Optional[Dict[str, str]] = None) -> ManagedProcess:
    """Start ``command`` detached from this terminal, output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n--- mlplatform: starting {name} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                  .encode())
        out.flush()
        child = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=str(cwd), start_new_session=True,
        )
    create_time = psutil.Process(child.pid).create_time()
    return ManagedProcess(name, child.pid, create_time, url, str(log), dict(ports), info or {})


def port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on ``port`` (checked the way a server will bind it)."""
    bind_host = "" if host in ("0.0.0.0", "::") else host
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind_host, port))
        except OSError:
            return False
    return True


_HANDED_OUT: set = set()
_TEST_PORT_RANGE = (20000, 32000)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now and not handed out before by this process (tests, benchmarks).

    Ports come from below the kernel's ephemeral range (32768+ on Linux), so an
    outgoing connection cannot take one between this call and the server's
    bind, and never the same port twice per process: asking the OS for
    "port 0" several times in a row may return one port twice, which once
    gave MLflow and MLServer's gRPC the same port in CI.
    """
    for _ in range(1000):
        port = random.randint(*_TEST_PORT_RANGE)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port found in {_TEST_PORT_RANGE} on {host}")


def log_tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until(check: Callable[[], bool], process: ManagedProcess, *, timeout: float,
               what: str) -> None:
    """Poll ``check`` until it holds; fail early if the process dies, late if it hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not process.is_running():
            raise StartupError(
                f"{process.name} exited before {what}; end of {process.log}:\n{log_tail(process.log)}"
            )
        time.sleep(0.5)
    process.stop()
    raise StartupError(
        f"{process.name} was not {what} after {timeout:.0f}s; end of {process.log}:\n"
        f"{log_tail(process.log)}"
    )
