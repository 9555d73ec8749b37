"""Processes on this machine, read from Linux ``/proc``: what the station's no-orphans
tests and ``benchmarks/station_crash.py`` look for after a kill or a normal end."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str  # "Z" zombie, "X" dead, else running or sleeping
    cmdline: str
    cwd: str

    @property
    def live(self) -> bool:
        return self.state not in ("Z", "X")


def processes() -> list[Proc]:
    """Every process this user may read (those that vanish meanwhile are skipped)."""
    out: list[Proc] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        base = Path("/proc") / name
        try:
            fields = (base / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (base / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        try:
            cwd = os.readlink(base / "cwd")
        except OSError:
            cwd = ""
        out.append(Proc(int(name), int(fields[1]), fields[0], cmd.strip(), cwd))
    return out


def children(pid: int) -> dict[int, str]:
    """Live processes whose parent is ``pid``: pid → command line."""
    return {p.pid: p.cmdline for p in processes() if p.ppid == pid and p.live}


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``."""
    by_parent: dict[int, list[int]] = {}
    for p in processes():
        by_parent.setdefault(p.ppid, []).append(p.pid)
    out: set[int] = set()
    todo = [pid]
    while todo:
        for c in by_parent.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    return any(p.pid == pid and p.live for p in processes())


def mentioning(text: str) -> list[str]:
    """Live processes (other than this one) whose command line names ``text`` or whose
    working folder lies inside it."""
    me = os.getpid()
    return [f"{p.pid}: {p.cmdline[:200]}" for p in processes()
            if p.pid != me and p.live and (text in p.cmdline or p.cwd.startswith(text))]
