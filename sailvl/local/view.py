"""What a person sees while `sailvl run` works: a progress bar per resource (steps or records, the key figure,
elapsed time), and at the end a table. Without a terminal (CI, a log file) it prints each change of phase."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from sailvl.local.base import Live

if TYPE_CHECKING:
    from sailvl.local.base import ResourceRun


class LiveView:
    def __init__(self, live: Mapping[tuple[str, str], Live], order: Sequence[tuple[str, str]]) -> None:
        self.live, self.order = live, order
        self.console = Console(stderr=True)
        self.interactive = self.console.is_terminal
        self.progress = Progress(
            TextColumn("{task.fields[label]:<36}"),
            TextColumn("{task.fields[phase]:<10}"),
            BarColumn(),
            TextColumn("{task.fields[count]:>14}"),
            TextColumn("{task.fields[figure]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.interactive,
        )
        self.tasks: dict[tuple[str, str], TaskID] = {}
        self.phases: dict[tuple[str, str], str] = {}

    def __enter__(self) -> LiveView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.update()
        self.progress.__exit__(None, None, None)

    async def refresh_forever(self) -> None:
        while True:
            self.update()
            await asyncio.sleep(0.5)

    def update(self) -> None:
        for key in self.order:
            live = self.live.get(key)
            if live is None:
                continue
            if self.phases.get(key) != live.phase:
                self.phases[key] = live.phase
                if not self.interactive:
                    stamp = time.strftime("%H:%M:%S")
                    detail = f" ({live.message.splitlines()[0]})" if live.message else ""
                    print(f"{stamp} {key[0]}/{key[1]}: {live.phase}{detail}", file=self.console.file, flush=True)
            if not self.interactive:
                continue
            fields = {
                "label": f"{key[0]}/{key[1]}",
                "phase": live.phase,
                "count": f"{live.done:.0f}/{live.total:.0f}"
                if live.total
                else (f"{live.done:.0f}" if live.done else ""),
                "figure": live.figure,
            }
            if key not in self.tasks:
                self.tasks[key] = self.progress.add_task("", total=live.total, **fields)  # type: ignore[arg-type]
            self.progress.update(self.tasks[key], completed=live.done, total=live.total, **fields)  # type: ignore[arg-type]

    def summary(self, runs: Mapping[tuple[str, str], ResourceRun]) -> None:
        table = Table(title="sailvl run")
        for column in ("NAME", "KIND", "PHASE", "KEY FIGURE", "TIME"):
            table.add_column(column)
        for key, run in runs.items():
            seconds = run.local.seconds
            table.add_row(
                key[1], key[0], run.status.phase or "Pending", run.live.figure, f"{seconds:.0f}s" if seconds else ""
            )
        self.console.print(table)
