"""The balancer config renders from a node list and passes `nginx -t`."""

from __future__ import annotations

import pytest

from reelgate.balancer import Topology, check_config, render, write_config


def topology(tmp_path, **overrides) -> Topology:
    values = dict(
        listen="127.0.0.1:18080",
        media=["127.0.0.1:18101", "127.0.0.1:18102", "127.0.0.1:18103"],
        catalog="127.0.0.1:18001",
        entitlements="127.0.0.1:18002",
        run_dir=tmp_path / "nginx",
        status_listen="127.0.0.1:18089",
    )
    values.update(overrides)
    return Topology(**values)


@pytest.mark.parametrize("balance", ["least_conn", "hash"])
def test_rendered_config_passes_nginx_t(tmp_path, balance):
    path = write_config(topology(tmp_path, balance=balance))
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_every_media_node_is_in_the_pool(tmp_path):
    text = render(topology(tmp_path))
    for port in (18101, 18102, 18103):
        assert f"server 127.0.0.1:{port} max_fails=1" in text


def test_access_log_never_contains_the_query_string(tmp_path):
    text = render(topology(tmp_path))
    log_format = text[text.index("log_format") : text.index("access_log")]
    for leaky in ("$request ", '$request"', "$args", "$query_string", "$request_uri", "$http_referer"):
        assert leaky not in log_format


def test_unknown_balance_mode_is_refused(tmp_path):
    with pytest.raises(ValueError):
        render(topology(tmp_path, balance="random"))
