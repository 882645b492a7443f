"""The report's plots, drawn with matplotlib's object API into inline SVG (no pyplot state)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib import rcParams
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from floodgate.loadtest.sampler import Sample
from floodgate.loadtest.series import PRIORITIES

COLORS = {"high": "#d62728", "normal": "#1f77b4", "low": "#2ca02c"}
QUEUE_COLORS = {"deferred": "#9467bd", "retry": "#ff7f0e", "parked": "#8c564b", "ingest": "#17becf"}
WIDE = (11.0, 3.6)
MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Marks:
    """Moments drawn on every time axis: the broadcast, the burst, the end of the traffic."""

    broadcast_at: float
    burst_at: float
    end_at: float


def _figure(size: tuple[float, float] = WIDE) -> Figure:
    rcParams["svg.fonttype"] = "none"  # text stays text: smaller, searchable
    rcParams["font.size"] = 9
    return Figure(figsize=size, layout="constrained")


def to_svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element for inline use."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _time_axis(ax: Axes, marks: Marks, title: str, ylabel: str) -> None:
    ax.set_title(title, loc="left", fontweight="bold")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.set_xlim(left=0)
    for at, label in (
        (marks.broadcast_at, "broadcast starts"),
        (marks.burst_at, "burst"),
        (marks.end_at, "traffic ends"),
    ):
        ax.axvline(at, color="#777777", linestyle=":", linewidth=1)
        ax.annotate(
            label,
            (at, 1),
            xycoords=("data", "axes fraction"),
            xytext=(-3, -4),
            textcoords="offset points",
            rotation=90,
            ha="right",
            va="top",
            fontsize=7.5,
            color="#555555",
        )


def _legend(fig: Figure, *axes: Axes) -> None:
    """One row under the plot, so it never hides data and every plot is as wide."""
    handles: list[Any] = []
    labels: list[str] = []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        for handle, label in zip(h, lab, strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=min(len(labels), 9),
        frameon=False,
    )


def throughput_plot(series: dict[str, list[int]], bot_limit: float, marks: Marks) -> str:
    """Deliveries per second, stacked by priority."""
    fig = _figure()
    ax = fig.subplots()
    xs = list(range(len(series["high"])))
    ax.stackplot(
        xs,
        *[series[p] for p in PRIORITIES],
        labels=list(PRIORITIES),
        colors=[COLORS[p] for p in PRIORITIES],
        alpha=0.85,
        step="post",
    )
    _time_axis(ax, marks, "Deliveries per second by priority (all bots)", "messages / s")
    ax.set_ylim(bottom=0)
    _legend(fig, ax)
    return to_svg(fig)


def busiest_bot_plot(busiest: list[int], bot_limit: float, marks: Marks) -> str:
    """The busiest bot's deliveries in each second against Telegram's limit per bot."""
    fig = _figure()
    ax = fig.subplots()
    ax.step(range(len(busiest)), busiest, where="post", color="#1f77b4", label="busiest bot")
    ax.axhline(bot_limit, color="#d62728", linestyle="--", label=f"Telegram limit {bot_limit:g}/s")
    _time_axis(
        ax, marks, "Busiest bot's deliveries per second vs Telegram's limit per bot", "messages / s"
    )
    ax.set_ylim(0, max([bot_limit, *busiest]) * 1.25)
    _legend(fig, ax)
    return to_svg(fig)


def latency_plot(
    mids: Sequence[float], lat: dict[str, dict[str, list[float]]], marks: Marks
) -> str:
    """p50 and p99 latency over time by priority."""
    fig = _figure()
    ax = fig.subplots()
    for p in PRIORITIES:
        ax.plot(mids, lat[p]["p50"], color=COLORS[p], marker=".", label=f"{p} p50")
        ax.plot(mids, lat[p]["p99"], color=COLORS[p], linestyle="--", label=f"{p} p99")
    _time_axis(
        ax, marks, "Latency by priority (request to ingest → Telegram received it)", "seconds"
    )
    ax.set_ylim(bottom=0)
    _legend(fig, ax)
    return to_svg(fig)


def queue_plot(samples: list[Sample], marks: Marks) -> str:
    """Depth of every queue over time."""
    fig = _figure()
    ax = fig.subplots()
    ts = [s.t for s in samples]
    ax.plot(ts, [s.total_queued for s in samples], color="black", linewidth=2, label="total")
    for name, color in {**COLORS, **QUEUE_COLORS}.items():
        ys = [s.queues[name] for s in samples]
        if any(ys):
            ax.plot(ts, ys, color=color, linewidth=1.2, label=name)
    _time_axis(ax, marks, "Queue depth (accepted, not yet sent or dead)", "messages")
    ax.set_ylim(bottom=0)
    _legend(fig, ax)
    return to_svg(fig)


def resources_plot(samples: list[Sample], marks: Marks) -> str:
    """CPU (% of one core) and RSS (MB) of every process, side by side."""
    fig = _figure((11.0, 4.2))
    cpu_ax, mem_ax = fig.subplots(1, 2)
    names = sorted({n for s in samples for n in s.rss})
    for name in names:
        cpu = [(s.t, s.cpu[name]) for s in samples if name in s.cpu]
        mem = [(s.t, s.rss[name] / MB) for s in samples if name in s.rss]
        if cpu:
            cpu_ax.plot(*zip(*cpu, strict=True), label=name)
        if mem:
            mem_ax.plot(*zip(*mem, strict=True), label=name)
    _time_axis(cpu_ax, marks, "CPU by process", "% of one core")
    _time_axis(mem_ax, marks, "Memory by process (RSS)", "MB")
    cpu_ax.set_ylim(bottom=0)
    mem_ax.set_ylim(bottom=0)
    _legend(fig, mem_ax)
    return to_svg(fig)


def answers_plot(answers: list[tuple[float, float]], low_backlog: list[int], marks: Marks) -> str:
    """How long a mention waited for its answer, against the low-priority backlog."""
    fig = _figure()
    ax = fig.subplots()
    backlog = ax.twinx()
    backlog.fill_between(
        range(len(low_backlog)),
        low_backlog,
        step="post",
        color=COLORS["low"],
        alpha=0.25,
        label="broadcast backlog: low priority accepted, not yet delivered",
    )
    backlog.set_ylabel("low-priority messages queued")
    backlog.set_ylim(bottom=0)
    xs, ys = zip(*answers, strict=True) if answers else ((), ())
    ax.scatter(xs, ys, s=10, color=COLORS["high"], label="answer to a mention or reply", zorder=3)
    _time_axis(
        ax,
        marks,
        "Answer to a mention vs the broadcast backlog",
        "seconds from the user's message to the answer",
    )
    ax.set_ylim(0, max([1.0, *[y for y in ys if not math.isnan(y)]]) * 1.2)
    ax.set_zorder(backlog.get_zorder() + 1)
    ax.patch.set_visible(False)
    _legend(fig, ax, backlog)
    return to_svg(fig)
