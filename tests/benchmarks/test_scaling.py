"""The scaling benchmark's pure parts: the balancer's pool rewrite and the results'
summary and plot (the measurement itself runs by hand: `make bench`)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from benchmarks import plots, scaling
from reelgate.balancer import Topology, render


def run(mbps: float) -> dict[str, float]:
    return {"rps": mbps, "mbps": mbps, "p50_ms": 1.0, "p99_ms": 2.0, "cpu_us": 10.0,
            "cpu_ms_per_gb": 100.0, "requests": 100.0, "errors": 0.0}  # fmt: skip


def test_each_balancer_run_is_compared_with_the_direct_run_of_its_round() -> None:
    direct = [run(1000), run(500), run(800)]
    balancer = [run(900), run(500), run(400)]
    summary = scaling.summarize(balancer, direct)
    assert summary["x_direct"] == pytest.approx(0.9)  # median of 0.9, 1.0, 0.5
    assert (summary["x_direct_min"], summary["x_direct_max"]) == (0.5, 1.0)
    assert summary["mbps"] == 500 and summary["mbps_rounds"] == [900, 500, 400]


def test_the_pool_is_cut_to_the_first_n_media_nodes(tmp_path: Path) -> None:
    media = [f"127.0.0.1:{9000 + i}" for i in range(scaling.MEDIA_NODES)]
    text = render(Topology(listen="127.0.0.1:8080", media=media, catalog="127.0.0.1:1",
                           entitlements="127.0.0.1:2", run_dir=tmp_path, mime_types="/x"))  # fmt: skip
    for nodes in range(1, scaling.MEDIA_NODES + 1):
        cut = scaling.with_media_nodes(text, nodes)
        assert [a for a in media if a in cut] == media[:nodes]
        assert "keepalive 64;" in cut and "server 127.0.0.1:1 " in cut  # the rest untouched


def test_the_scaling_plot_is_a_png_of_the_results(tmp_path: Path) -> None:
    direct = [run(1000), run(900)]
    results = {scaling.DIRECT: scaling.summarize(direct, direct)}
    for nodes in (1, 2, 3):
        results[scaling.balancer_name(nodes)] = scaling.summarize(
            [run(600 + nodes * 50), run(650)], direct
        )
    source = tmp_path / "results.json"
    source.write_text(scaling.results_document(results, {"range_kib": 1024, "connections": 32}))
    out = tmp_path / "scaling.png"
    plots.scaling(source, out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (800, 450)
