"""docker-compose.yml, the Dockerfile and prometheus/ describe the system
`reelgate cluster --media-nodes 3` runs: the same processes, commands,
ports, balancer and settings. Every expectation comes from reelgate.cluster
(with docker service names as addresses), none is copied here."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from reelgate.cli import balancer_topology, build_parser
from reelgate.cluster import Child, Cluster, Ports
from reelgate.config import Settings
from tests.harness.ports import free_port
from tests.harness.services import require_binary

ROOT = Path(__file__).resolve().parents[2]
MEDIA_NODES = 3
INFRASTRUCTURE = {"postgres", "redis", "migrate", "nginx-config", "nginx", "nginx-exporter",
                  "prometheus"}  # fmt: skip


def docker_address(service: str, port: int) -> str:
    """In docker-compose.yml a node is reached by its service name."""
    return f"{service}:{port}"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    settings = Settings(database_url="postgresql://cluster/db", redis_url="redis://cluster:6379/0")
    # Containers reach each other over TCP; unix sockets are for one machine only.
    return Cluster(settings, media_nodes=MEDIA_NODES, ports=Ports(), media_sockets=False)


@pytest.fixture(scope="module")
def nodes(cluster: Cluster) -> list[Child]:
    return cluster.plan()


def reelgate_command(child: Child) -> list[str]:
    """`python -m reelgate.cli ARGS` in the cluster is `reelgate ARGS` in a container."""
    assert child.argv[1:3] == ["-m", "reelgate.cli"]
    return child.argv[3:]


def test_the_same_processes_run(services: dict, nodes: list[Child]) -> None:
    assert set(services) == {child.name for child in nodes} | INFRASTRUCTURE


def test_each_node_runs_the_same_command_from_the_reelgate_image(
    services: dict, nodes: list[Child]
) -> None:
    for child in nodes:
        service = services[child.name]
        assert service["build"] == "." and service["image"] == "reelgate:latest", child.name
        assert service["command"] == reelgate_command(child), child.name
        assert str(child.port) in service["expose"], child.name
        assert service["restart"] == "unless-stopped"


def test_each_node_is_health_checked_on_its_readyz(services: dict, nodes: list[Child]) -> None:
    for child in nodes:
        test = " ".join(services[child.name]["healthcheck"]["test"])
        assert child.ready_url is not None and child.ready_url in test, (child.name, test)


def _environment(service: dict) -> dict[str, str]:
    """The service's settings, `${VARIABLE...}` (set at `docker compose up`) as "VAR"."""
    return {
        key: re.sub(r"\$\{([A-Z_]+)[^}]*\}", r"\1", str(value))
        for key, value in service.get("environment", {}).items()
    }


def test_each_node_gets_the_clusters_settings(
    services: dict, nodes: list[Child], cluster: Cluster
) -> None:
    expected = cluster.node_environment(where=docker_address)
    loopback = cluster.node_environment()
    for child in nodes:
        env = _environment(services[child.name])
        assert set(expected) <= set(env), (child.name, set(expected) - set(env))
        for key, value in expected.items():
            if value != loopback[key] or key == "REELGATE_TRUST_FORWARDED_FOR":
                # an address of another node, or a fixed value: the same here
                assert env[key] == value, (child.name, key)
        assert urlsplit(env["REELGATE_DATABASE_URL"]).hostname == "postgres"
        assert urlsplit(env["REELGATE_REDIS_URL"]).hostname == "redis"
        # Every node agrees on the shared secrets and where media lives.
        for shared in ("REELGATE_SERVICE_KEY", "REELGATE_BILLING_SECRET", "REELGATE_STORAGE_URL"):
            assert env[shared] == _environment(services["entitlements"])[shared], shared
        assert env["REELGATE_HOST"] == "0.0.0.0"  # reachable from the other containers


def _mounts(service: dict) -> dict[str, str]:
    """container path -> "volume[:ro]"."""
    mounts = {}
    for spec in service.get("volumes", []):
        source, target, *mode = spec.split(":")
        mounts[target] = source + (":" + mode[0] if mode else "")
    return mounts


def test_machine_paths_are_volumes_where_they_are_used(
    services: dict, nodes: list[Child], cluster: Cluster
) -> None:
    assert set(cluster.machine_environment()) <= set(_environment(services["entitlements"]))
    key_file = Path(_environment(services["entitlements"])["REELGATE_JWT_PRIVATE_KEY_FILE"])
    assert _mounts(services["entitlements"])[str(key_file.parent)] == "keys"
    storage = urlsplit(_environment(services["catalog"])["REELGATE_STORAGE_URL"]).path
    assert _mounts(services["catalog"])[storage] == "media"
    for child in nodes:
        if child.name.startswith("media-"):
            assert _mounts(services[child.name])[storage] == "media:ro"
            # No signing key on a media node: it verifies with the JWKS.
            assert "keys" not in _mounts(services[child.name]).values()


def test_nodes_start_after_the_migration(services: dict, nodes: list[Child]) -> None:
    assert services["migrate"]["command"] == ["migrate"]
    for child in nodes:
        if child.name.startswith("media-"):
            continue  # no database; they wait for entitlements and catalog instead
        depends = services[child.name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}


def test_the_balancer_is_rendered_for_the_same_topology(services: dict, cluster: Cluster) -> None:
    command = services["nginx-config"]["command"]
    args = build_parser().parse_args(command)
    assert args.run.__name__ == "cmd_balancer_render"
    rendered = balancer_topology(args, Settings())
    expected = cluster.topology(where=docker_address)
    assert rendered.media == expected.media
    assert (rendered.catalog, rendered.entitlements) == (expected.catalog, expected.entitlements)
    assert rendered.balance == expected.balance
    assert rendered.listen.rsplit(":", 1)[-1] == str(cluster.ports.balancer)
    assert rendered.status_listen.endswith(f"127.0.0.1:{cluster.ports.status}")
    # nginx reads what was written, and publishes the balancer's port.
    nginx = services["nginx"]
    output = Path(args.output)
    assert nginx["command"] == ["nginx", "-c", str(output)]
    volume = _mounts(services["nginx-config"])[str(output.parent)]
    assert _mounts(nginx)[str(output.parent)] == volume + ":ro"
    assert any(p.endswith(f":{cluster.ports.balancer}:{cluster.ports.balancer}")
               for p in nginx["ports"])  # fmt: skip
    assert nginx["depends_on"]["nginx-config"] == {"condition": "service_completed_successfully"}


def test_the_rendered_balancer_config_is_valid_nginx(services: dict, tmp_path: Path) -> None:
    """The compose rendering, with this machine's paths and loopback
    addresses swapped in, passes `nginx -t` (service names do not resolve here)."""
    args = build_parser().parse_args(services["nginx-config"]["command"])
    topology = balancer_topology(args, Settings())
    media = [f"127.0.0.1:{address.rsplit(':', 1)[1]}" for address in topology.media]
    local = build_parser().parse_args([
        "balancer", "render", "--media", ",".join(media), "--catalog", "127.0.0.1:8001",
        "--entitlements", "127.0.0.1:8002", "--listen", f"127.0.0.1:{free_port()}",
        "--status-listen", f"127.0.0.1:{free_port()}", "--run-dir", str(tmp_path),
        "--access-log", args.access_log, "--error-log", args.error_log,
        "--output", str(tmp_path / "nginx.conf"), "--check",
    ])  # fmt: skip
    assert local.run(local, Settings()) == 0


def test_prometheus_scrapes_every_node_and_the_balancer(
    services: dict, nodes: list[Child], cluster: Cluster
) -> None:
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    exporter = services["nginx-exporter"]
    assert exporter["network_mode"] == "service:nginx"
    scrape_uri = next(a for a in exporter["command"] if a.startswith("--nginx.scrape-uri="))
    assert urlsplit(scrape_uri.split("=", 1)[1]).port == cluster.ports.status
    nodes_targets = {docker_address(child.name, child.port) for child in nodes if child.port}
    assert targets == nodes_targets | {"nginx:9113"}
    mounts = _mounts(services["prometheus"])
    assert mounts["/etc/prometheus"] == "./prometheus:ro"


def test_promtool_accepts_the_prometheus_config() -> None:
    promtool = require_binary("promtool")  # fails, never skips, when missing
    result = subprocess.run(
        [promtool, "check", "config", str(ROOT / "prometheus" / "prometheus.yml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_the_image_is_the_project_on_python_311_slim_as_a_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [
        line.split(None, 1) for line in dockerfile.splitlines()
        if line and not line.startswith((" ", "#"))
    ]  # fmt: skip
    keywords = [parts[0] for parts in instructions]
    assert instructions[0] == ["FROM", "python:3.11-slim"]
    assert re.search(r"apt-get install [^\n]*\bffmpeg\b", dockerfile)
    assert re.search(r"pip install -c constraints\.txt", dockerfile)
    user = [parts[1] for parts in instructions if parts[0] == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    assert ["ENTRYPOINT", '["reelgate"]'] in instructions
