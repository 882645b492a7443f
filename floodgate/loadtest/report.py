"""``report.html``: one self-contained page (inline CSS and SVG, nothing fetched) and
``summary.json``."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import orjson

from floodgate.loadtest import plots
from floodgate.loadtest.series import (
    PRIORITIES,
    answer_latencies,
    backlog,
    busiest_bot,
    latency_window,
    latency_windows,
    per_second,
)
from floodgate.loadtest.summary import Run

PLOT_IDS = ("throughput", "busiest-bot", "latency", "queues", "resources", "answers")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1120px;
color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.sub{color:#666;margin-bottom:16px}
table{border-collapse:collapse;margin:8px 0}td,th{padding:4px 12px;border-bottom:1px solid #ddd;
text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}
.pass{color:#fff;background:#2e7d32;font-weight:600;border-radius:3px;padding:1px 8px}
.fail{color:#fff;background:#c62828;font-weight:600;border-radius:3px;padding:1px 8px}
.grid{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}
figure{margin:12px 0 20px}figure svg{width:100%;height:auto}
figcaption{color:#555;font-size:12.5px;margin-top:2px}
"""


def _badge(ok: bool) -> str:
    return f'<span class="{"pass" if ok else "fail"}">{"PASS" if ok else "FAIL"}</span>'


def _table(head: list[str], rows: list[list[Any]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def verdict_table(summary: dict[str, Any]) -> str:
    """Lost, duplicates, 429s and the queue's stability, each passed or failed."""
    v, q = summary["verdicts"], summary["queue"]
    back = q["back_to_steady_s_after_burst"]
    drained = f"back to steady {back} s after the burst" if back is not None else "did not drain"
    rows = [
        ["lost", summary["lost"], _badge(v["nothing_lost"])],
        ["duplicates", summary["duplicates"], _badge(v["no_duplicates"])],
        ["HTTP 429 from Telegram", summary["http_429"], _badge(v["no_429"])],
        [
            "queue stable",
            f"peak {q['burst_peak_depth']}, {drained}, {q['final_depth']} left at the end"
            + (", growing at steady load" if q["growing_at_steady_load"] else ""),
            _badge(v["queue_stable"]),
        ],
    ]
    return _table(["verdict", "measured", ""], rows)


def figures_table(summary: dict[str, Any]) -> str:
    """The headline figures."""
    answers = summary["mention_answers"]
    rows = [
        ["accepted by ingest", summary["submitted"]],
        ["delivered (Telegram received)", summary["delivered"]],
        ["dead-lettered", summary["dead"]],
        ["throughput, first request to last delivery", f"{summary['throughput_per_s']} msg/s"],
        ["best second", f"{summary['peak_throughput_per_s']:g} msg/s"],
        ["peak queue depth", summary["peak_queue_depth"]["total"]],
        ["users' messages to the bots", summary["users_said"]],
        ["sends over a limit (sandbox)", summary["telegram_answers"].get("limit_violations", 0)],
        ["mentions answered", f"{answers['n']} of {answers['asked']}"],
        ["answer latency p50 / p99", f"{answers['p50']} / {answers['p99']} s"],
    ]
    return _table(["figure", "value"], rows)


def latency_table(summary: dict[str, Any]) -> str:
    """Latency percentiles by priority."""
    lat = summary["latency_s"]
    rows = [
        [p, lat[p]["n"], lat[p]["p50"], lat[p]["p90"], lat[p]["p99"], lat[p]["max"]]
        for p in PRIORITIES
    ]
    return _table(["priority", "delivered", "p50 s", "p90 s", "p99 s", "max s"], rows)


def process_table(summary: dict[str, Any]) -> str:
    """CPU and memory by process."""
    rows = [
        [html.escape(n), p["cpu_percent_mean"], p["cpu_percent_peak"], p["rss_mb_peak"]]
        for n, p in summary["processes"].items()
    ]
    return _table(["process", "CPU mean %", "CPU peak %", "RSS peak MB"], rows)


def _figure(plot_id: str, svg: str, caption: str) -> str:
    return (
        f'<figure id="plot-{plot_id}">{svg}<figcaption>{html.escape(caption)}</figcaption></figure>'
    )


CAPTIONS = {
    "throughput": "Messages Telegram received in each second, by the priority floodgate gave them.",
    "busiest-bot": "In each second, the deliveries of the bot that had the most; floodgate must "
    "stay at or under the dashed line.",
    "latency": "p50 (solid) and p99 (dashed) in windows of {window} s, by the time Telegram "
    "received the messages.",
    "queues": "From GET /queue/stats every second: the send queues by priority, messages "
    "deferred to their chat's window, retries, and messages parked behind an earlier one of "
    "their chat.",
    "resources": "From /proc every second for the processes this run started, and Redis's INFO "
    "(a shared Redis counts every client's work).",
    "answers": "Each dot is one user's message that mentioned a bot or replied to it, at the "
    "time the user wrote it, and how long the application's answer (high priority) took to "
    "reach the chat; the shaded area is the low-priority backlog.",
}


def plot_sections(run: Run) -> list[str]:
    """Every plot of the report, in order, as ``<figure>`` elements."""
    seconds = int(max([run.duration, *[d.t for d in run.done], *[s.t for s in run.samples]])) + 1
    marks = plots.Marks(run.plan.broadcast_at, run.plan.burst_at, run.duration)
    limit = float(run.config["bot_rate"])
    mids, lat = latency_windows(run.done, seconds)
    answers = answer_latencies(run.ledger, run.done, run.started_wall)
    low = backlog(run.ledger, run.done, run.started_wall, seconds)
    svgs = {
        "throughput": plots.throughput_plot(per_second(run.done, seconds), limit, marks),
        "busiest-bot": plots.busiest_bot_plot(busiest_bot(run.done, seconds), limit, marks),
        "latency": plots.latency_plot(mids, lat, marks),
        "queues": plots.queue_plot(run.samples, marks),
        "resources": plots.resources_plot(run.samples, marks),
        "answers": plots.answers_plot(answers, low, marks),
    }
    window = latency_window(seconds)
    return [_figure(i, svgs[i], CAPTIONS[i].format(window=window)) for i in PLOT_IDS]


def render(run: Run, summary: dict[str, Any]) -> str:
    """The whole page."""
    c = summary["config"]
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.started_wall))
    sub = (
        f"{when} · {c['bots']} bots, {c['users']} users, {c['duration_s']:g} s of traffic · "
        f"pipeline: {html.escape(c['backend'])}, {c['senders']} sender(s) · seed {c['seed']} · "
        f"sandbox at Telegram's limits ({c['bot_rate']:g}/s per bot, 1/s per private chat, "
        "20/min per group)"
    )
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>floodgate load test {html.escape(when)}</title><style>{CSS}</style></head>"
        f"<body><h1>floodgate load test</h1><div class=sub>{sub}</div>"
        f"<h2>Verdicts</h2>{verdict_table(summary)}"
        f"<div class=grid><div><h2>Figures</h2>{figures_table(summary)}</div>"
        f"<div><h2>Latency by priority</h2>{latency_table(summary)}</div>"
        f"<div><h2>Processes</h2>{process_table(summary)}</div></div>"
        f"<h2>Over time</h2>{''.join(plot_sections(run))}</body></html>"
    )


def write(run: Run, summary: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """Write ``summary.json``, ``report.html`` and the raw ``samples.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    summary_path, report_path = directory / "summary.json", directory / "report.html"
    summary_path.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    (directory / "samples.json").write_bytes(orjson.dumps(run.samples))
    report_path.write_text(render(run, summary), encoding="utf-8")
    return summary_path, report_path
