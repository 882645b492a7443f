"""Live progress on the terminal (rich); a plain line every few seconds when not a terminal."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table

from floodgate.loadtest.sampler import Sample

PLAIN_EVERY = 10  # samples between lines when the output is not a terminal


class Progress:
    """Shows the newest sample; use as a context manager around the run."""

    def __init__(self, duration: float, console: Console | None = None) -> None:
        self.duration = duration
        self.console = console or Console()
        self._live = Live(console=self.console, auto_refresh=False, transient=False)
        self._count = 0

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            self._live.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.console.is_terminal:
            self._live.stop()

    def show(self, sample: Sample, phase: str) -> None:
        """Render one sample."""
        self._count += 1
        if self.console.is_terminal:
            self._live.update(self.table(sample, phase), refresh=True)
        elif self._count % PLAIN_EVERY == 0:
            self.console.print(self.line(sample, phase), highlight=False)

    def line(self, sample: Sample, phase: str) -> str:
        """One plain line."""
        q = sample.queues
        return (
            f"[{sample.t:6.1f}s {phase}] accepted {sum(sample.accepted.values())}"
            f"  delivered {sample.delivered}  queued {sample.total_queued} (high {q['high']},"
            f" normal {q['normal']}, low {q['low']})  dead {sample.dead}"
            f"  429s {sample.telegram.get('429', 0)}"
        )

    def table(self, sample: Sample, phase: str) -> Table:
        """The live view."""
        left = max(0.0, self.duration - sample.t)
        table = Table(
            title=f"floodgate loadtest · {phase}", title_justify="left", show_header=False
        )
        table.add_column("")
        table.add_column("", justify="right")
        a, q = sample.accepted, sample.queues
        rows = [
            ("elapsed / traffic left", f"{sample.t:.0f} s / {left:.0f} s"),
            (
                "accepted high / normal / low",
                f"{a.get('high', 0)} / {a.get('normal', 0)} / {a.get('low', 0)}",
            ),
            ("delivered (Telegram received)", str(sample.delivered)),
            ("queued high / normal / low", f"{q['high']} / {q['normal']} / {q['low']}"),
            ("deferred / retry / parked", f"{q['deferred']} / {q['retry']} / {q['parked']}"),
            ("total queued / dead", f"{sample.total_queued} / {sample.dead}"),
            ("Telegram 429s", str(sample.telegram.get("429", 0))),
        ]
        busiest = sorted(sample.cpu.items(), key=lambda kv: -kv[1])[:4]
        rows.append(("CPU", ", ".join(f"{n} {c:.0f}%" for n, c in busiest)))
        for name, value in rows:
            table.add_row(name, value)
        return table
