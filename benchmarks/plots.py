"""PNG plots of benchmark and load-test results, for docs/benchmarks.md.

    .venv/bin/python -m benchmarks.plots scaling RESULTS.json OUT.png
        # the JSON of `python -m benchmarks.scaling --json RESULTS.json`
    .venv/bin/python -m benchmarks.plots loadtest HISTORY.csv OUT.png [--summary S.json]
        # loadtests/reports/loadtest_stats_history.csv and loadtest_summary.json
        # after `make loadtest` (which asks locust for its full CSV history)

matplotlib draws off-screen (the Agg backend): no display needed.
"""

from __future__ import annotations

import argparse
import csv
import json
import textwrap
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the backend

TTFB = "TTFB"  # locust request type of the loadtest's time-to-first-byte samples


def scaling(results_path: Path, out: Path) -> None:
    """Bars of MB/s per configuration (median, whiskers from the slowest to the fastest
    round), each labelled with its ratio to nginx serving directly."""
    data = json.loads(results_path.read_text())
    results = data["results"]
    names = list(results)
    medians = [results[n]["mbps"] for n in names]
    lows = [m - min(results[n]["mbps_rounds"]) for n, m in zip(names, medians, strict=True)]
    highs = [max(results[n]["mbps_rounds"]) - m for n, m in zip(names, medians, strict=True)]
    figure, axes = plt.subplots(figsize=(10, 5), dpi=100)
    colors = [bar_color(name, index) for index, name in enumerate(names)]
    labels = [textwrap.fill(name, 16) for name in names]
    bars = axes.bar(labels, medians, yerr=[lows, highs], capsize=6, color=colors)
    for bar, name in zip(bars, names, strict=True):
        axes.text(
            bar.get_x() + bar.get_width() / 2, bar.get_height() / 2,
            f"{results[name]['mbps']:.0f}\nMB/s\n\n{results[name]['x_direct']:.2f}x",
            ha="center", va="center", color="white", fontsize=10, fontweight="bold",
        )  # fmt: skip
    args = data.get("args", {})
    threads = args.get("threads", 1)
    axes.set_ylabel("MB/s (median of rounds; whiskers: min-max)")
    axes.set_title(
        f"Random {args.get('range_kib', '?')} KiB ranges, {args.get('connections', '?')} "
        f"connections, wrk with {threads} thread{'s' if threads != 1 else ''}: "
        "through the balancer vs nginx direct"
    )
    axes.tick_params(axis="x", labelsize=8)
    machine = data.get("machine", {})
    figure.text(0.01, 0.01, f"{machine.get('cpus', '?')} CPUs, {machine.get('cpu', '')}; "
                f"{len(results[names[0]]['mbps_rounds'])} rounds; x = ratio to nginx direct "
                "in the same round (median)", fontsize=7, color="#555")  # fmt: skip
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(out)
    plt.close(figure)


def bar_color(name: str, index: int) -> str:
    if index == 0:
        return "#7f7f7f"  # the baseline
    return "#c46a2b" if "before" in name or "TCP" in name else "#1f77b4"


def loadtest(
    history: Path, out: Path, summary_path: Path | None = None
) -> dict[str, list[tuple[float, float]]]:
    """Users, requests and failures per second, and the time to first byte of /stream
    (p50 and p95 over locust's rolling window), over the run. Returns the plotted series."""
    with history.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise SystemExit(f"{history}: empty history")
    start = int(rows[0]["Timestamp"])
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        t = (int(row["Timestamp"]) - start) / 60
        if row["Name"] == "Aggregated":
            series["users"].append((t, float(row["User Count"])))
            series["requests/s"].append((t, float(row["Requests/s"])))
            series["failures/s"].append((t, float(row["Failures/s"])))
        elif row["Type"] == TTFB and row["95%"] not in ("N/A", ""):
            series["ttfb p50"].append((t, float(row["50%"])))
            series["ttfb p95"].append((t, float(row["95%"])))
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(9, 8), dpi=100, sharex=True)
    plot(top, series["users"], "users", "#2ca02c")
    top.set_ylabel("users")
    plot(middle, series["requests/s"], "locust events/s (HTTP + stream samples)", "#1f77b4")
    plot(middle, series["failures/s"], "failures/s", "#d62728")
    middle.set_ylabel("per second")
    middle.legend(loc="upper left")
    plot(bottom, series["ttfb p50"], "p50", "#9467bd")
    plot(bottom, series["ttfb p95"], "p95", "#ff7f0e")
    bottom.set_ylabel("TTFB /stream, ms")
    bottom.set_xlabel("minutes")
    bottom.legend(loc="upper left")
    if summary_path is not None:
        top.set_title(summary_title(json.loads(summary_path.read_text())))
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return dict(series)


def summary_title(summary: dict) -> str:
    ttfb = summary.get("ttfb_ms", {})
    return (
        f"{summary.get('requests', '?')} requests, {summary.get('failures', '?')} failed, "
        f"{summary.get('exceptions', '?')} exceptions; TTFB p95 {ttfb.get('p95', '?')} ms; "
        f"{summary.get('throughput', {}).get('aggregate_mbit_s', '?')} Mbit/s"
    )


def plot(axes, points: list[tuple[float, float]], label: str, color: str) -> None:  # type: ignore[no-untyped-def]
    if points:
        xs, ys = zip(*points, strict=True)
        axes.plot(xs, ys, label=label, color=color, linewidth=1.2)
    axes.grid(alpha=0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    kinds = parser.add_subparsers(dest="kind", required=True)
    for name, source in (("scaling", "RESULTS_JSON"), ("loadtest", "HISTORY_CSV")):
        sub = kinds.add_parser(name)
        sub.add_argument("source", type=Path, metavar=source)
        sub.add_argument("out", type=Path, metavar="OUT_PNG")
        if name == "loadtest":
            sub.add_argument("--summary", type=Path, help="loadtest_summary.json, for the title")
    args = parser.parse_args()
    if args.kind == "scaling":
        scaling(args.source, args.out)
    else:
        loadtest(args.source, args.out, args.summary)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
