"""The balancer config renders from a node list and passes `nginx -t`."""

from __future__ import annotations

import json
import re

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


def _block(text: str, opening: str) -> str:
    """The body of the `opening { ... }` block (balanced braces)."""
    start = text.index(opening) + len(opening)
    depth, index = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        index += 1
    return text[start : index - 1]


def test_a_node_503_is_an_answer_not_a_reason_to_fail_over(tmp_path):
    """A media node's 503 (this viewer's access cannot be decided now) must not
    mark the node down: three of them would mark every node down and turn
    everybody's next request into a 502 (found by tests/cluster/test_faults.py)."""
    stream = _block(render(topology(tmp_path)), "location /stream/ {")
    assert "proxy_next_upstream error timeout;" in stream


def test_no_request_line_reaches_the_error_log(tmp_path):
    """nginx writes the request line, query string and token included, into
    per-request error messages: the public server logs only critical ones."""
    text = render(topology(tmp_path))
    server = _block(text, "server {\n        listen 127.0.0.1:18080;")
    assert re.search(r"^\s*error_log \S+ crit;", server, re.MULTILINE)


def test_no_live_node_is_a_problem_json_502(tmp_path):
    text = render(topology(tmp_path))
    assert "error_page 502 @bad_gateway;" in text
    body = re.search(r"location @bad_gateway \{.*?return 502 '(.*?)';", text, re.DOTALL)
    assert body is not None
    problem = json.loads(body.group(1))
    assert problem["status"] == 502 and problem["code"] == "upstream_unavailable"


def test_container_paths_can_be_given(tmp_path):
    text = render(topology(tmp_path, mime_types="/etc/nginx/mime.types", access_log="/dev/stdout",
                           error_log="stderr"))  # fmt: skip
    assert "include /etc/nginx/mime.types;" in text
    assert "access_log /dev/stdout reelgate;" in text and "error_log stderr warn;" in text


def test_balancer_render_writes_what_render_gives(tmp_path, capsys):
    from reelgate.cli import main

    output = tmp_path / "out" / "nginx.conf"
    argv = ["balancer", "render", "--media", "127.0.0.1:18101,127.0.0.1:18102",
            "--media", "127.0.0.1:18103", "--catalog", "127.0.0.1:18001",
            "--entitlements", "127.0.0.1:18002", "--listen", "127.0.0.1:18080",
            "--status-listen", "127.0.0.1:18089", "--run-dir", str(tmp_path / "nginx"),
            "--output", str(output), "--check"]  # fmt: skip
    assert main(argv) == 0
    expected = render(topology(tmp_path, max_upload=str(20 * 1024**3)))
    assert output.read_text() == expected


def test_no_cork_on_sendfile(tmp_path):
    # tcp_nopush delayed every ranged static response sent with sendfile by ~40 ms on
    # Linux 6.x (24 instead of 12,000 64 KiB ranges/s on a connection); a timing cannot
    # be a test here, so the directive is pinned instead (docs/benchmarks.md).
    text = render(topology(tmp_path))
    assert re.search(r"^\s*tcp_nopush off;", text, re.MULTILINE)
    assert "tcp_nopush on" not in text


def test_streams_pass_through_in_64_kib_pieces(tmp_path):
    # Unbuffered proxying reads proxy_buffer_size at a time; the 4 KiB default
    # made nginx the pool's bottleneck (docs/benchmarks.md, "Balancer: 1, 2 and 3
    # media nodes"). The rendered config must also pass `nginx -t` with it.
    text = render(topology(tmp_path))
    stream = text[text.index("location /stream/") :]
    stream = stream[: stream.index("}")]
    assert "proxy_buffering off;" in stream
    assert "proxy_buffer_size 64k;" in stream
    assert check_config(write_config(topology(tmp_path))).returncode == 0
