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


def test_each_configuration_rewrites_only_the_media_pool(tmp_path: Path) -> None:
    sockets = [f"unix:/run/media-{i}.sock" for i in range(scaling.MEDIA_NODES)]
    ports = [9000 + i for i in range(scaling.MEDIA_NODES)]
    text = render(Topology(listen="127.0.0.1:8080", media=sockets, catalog="127.0.0.1:1",
                           entitlements="127.0.0.1:2", run_dir=tmp_path, mime_types="/x"))  # fmt: skip
    for nodes in range(1, scaling.MEDIA_NODES + 1):
        cut = scaling.with_pool(text, scaling.pool_of(scaling.balancer_name(nodes)), ports)
        assert [a for a in sockets if a in cut] == sockets[:nodes]
        assert "keepalive 64;" in cut and "server 127.0.0.1:1 " in cut  # the rest untouched
        assert "proxy_buffer_size 64k;" in cut
    tcp = scaling.with_pool(text, scaling.pool_of(scaling.TCP), ports)
    assert not any(a in tcp for a in sockets)
    assert all(f"server 127.0.0.1:{port} max_fails=1" in tcp for port in ports)
    assert "proxy_buffer_size 64k;" in tcp
    before = scaling.with_pool(text, scaling.pool_of(scaling.BEFORE), ports)
    assert all(f"server 127.0.0.1:{port} max_fails=1" in before for port in ports)
    assert "proxy_buffer_size 64k;" not in before and "proxy_buffers 4 64k;" not in before
    assert "proxy_buffering off;" in before


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
    assert (width, height) == (1000, 500)
