"""A suite's output: its figures in order, the problems it found, and one PASS/FAIL line."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

MAX_PROBLEMS_SHOWN = 25


class Report:
    def __init__(self, name: str) -> None:
        self.name = name
        self.command = " ".join(["python -m", f"suites.{name}", *sys.argv[1:]])
        self.figures: list[tuple[str, Any]] = []
        self.problems: list[str] = []
        self.started = time.monotonic()

    def figure(self, label: str, value: Any) -> None:
        self.figures.append((label, value))

    def check(self, ok: bool, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
        return ok

    def extend(self, problems: list[str]) -> None:
        self.problems.extend(problems)

    def note(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {text}", flush=True)

    def keep_or_remove(self, workdir: Path, *, keep: bool = False) -> None:
        """Remove the run's work directory, or keep it and say where when asked or when it found problems."""
        if keep or self.problems:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    def finish(self) -> int:
        """Print the problems and the verdict; the exit code (0 on PASS)."""
        elapsed = time.monotonic() - self.started
        print(f"\n{self.name}: {self.command}  ({elapsed:.0f} s)")
        for label, value in self.figures:
            print(f"  {label:<44} {value}")
        for problem in self.problems[:MAX_PROBLEMS_SHOWN]:
            print(f"  problem: {problem}")
        if len(self.problems) > MAX_PROBLEMS_SHOWN:
            print(f"  ... and {len(self.problems) - MAX_PROBLEMS_SHOWN} more problems")
        verdict = "FAIL" if self.problems else "PASS"
        print(f"{self.name}: {verdict}", flush=True)
        return 1 if self.problems else 0
