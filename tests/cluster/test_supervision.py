"""How `reelgate cluster` treats a child that ends, on stand-in children
(`sleep`), so every branch is covered in a second or two."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reelgate.cluster import Child, Cluster, describe_exit
from reelgate.config import Settings
from tests.harness._reaper import proc_alive


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    lines: list[str] = []
    cluster = Cluster(Settings(var_dir=tmp_path / "var"), media_nodes=2, log=lines.append)
    cluster.env = dict(os.environ)
    cluster.lines = lines  # type: ignore[attr-defined]
    return cluster


def spawn(cluster: Cluster, name: str, argv: list[str] | None = None) -> Child:
    child = Child(name, argv or ["sleep", "30"], None, cluster.run_dir / "logs" / f"{name}.log", 1)
    cluster._spawn(child, cluster.env)
    return child


def wait_dead(child: Child) -> None:
    assert child.process is not None
    child.process.wait(5)


def record(cluster: Cluster) -> dict:
    return json.loads(cluster.pids_path.read_text())["children"]


def test_a_killed_node_is_restarted_after_a_backoff_while_the_rest_runs(cluster: Cluster) -> None:
    media, other = spawn(cluster, "media-1"), spawn(cluster, "media-2")
    try:
        first_pid = media.pid
        os.kill(first_pid, signal.SIGKILL)  # type: ignore[arg-type]
        wait_dead(media)
        assert cluster.supervise() is None
        assert record(cluster)["media-1"]["state"] == "restarting"
        assert other.running() and record(cluster)["media-2"]["state"] == "running"
        deadline = time.monotonic() + 5
        while media.restarts == 0 and time.monotonic() < deadline:
            cluster.supervise()
            time.sleep(0.05)
        assert media.running() and media.pid != first_pid and media.restarts == 1
        assert record(cluster)["media-1"] == {**record(cluster)["media-1"], "pid": media.pid,
                                              "state": "running", "restarts": 1}  # fmt: skip
        log = "\n".join(cluster.lines)  # type: ignore[attr-defined]
        assert f"media-1 (pid {first_pid}) was killed by SIGKILL; the other media nodes" in log
        assert "restarting it in 1s" in log
    finally:
        cluster.stop()


def test_the_backoff_doubles_while_a_node_keeps_dying(cluster: Cluster) -> None:
    media = spawn(cluster, "media-1", ["false"])
    try:
        delays = []
        for _ in range(3):
            wait_dead(media)
            cluster.supervise()
            assert media.restart_at is not None
            delays.append(round(media.restart_at - time.monotonic()))
            media.restart_at = time.monotonic()  # do not wait it out
            cluster.supervise()
        assert delays == [1, 2, 4]
    finally:
        cluster.stop()


def test_a_node_stopped_on_purpose_stays_stopped(cluster: Cluster) -> None:
    media = spawn(cluster, "media-1", ["true"])
    try:
        wait_dead(media)
        assert cluster.supervise() is None
        assert media.stopped and media.restart_at is None
        time.sleep(1.2)
        cluster.supervise()
        assert not media.running() and record(cluster)["media-1"]["state"] == "stopped"
        assert "exited with status 0; left stopped" in "\n".join(cluster.lines)  # type: ignore[attr-defined]
    finally:
        cluster.stop()


def test_no_restart_leaves_a_dead_node_stopped(cluster: Cluster) -> None:
    cluster.restart = False
    media = spawn(cluster, "media-1", ["false"])
    try:
        wait_dead(media)
        assert cluster.supervise() is None
        assert media.stopped and media.restart_at is None
    finally:
        cluster.stop()


def test_a_dead_balancer_stops_the_cluster(cluster: Cluster) -> None:
    spawn(cluster, "media-1")
    nginx = spawn(cluster, "nginx", ["false"])
    wait_dead(nginx)
    assert cluster.supervise() is nginx
    cluster.stop()
    assert not cluster.pids_path.exists()


def test_children_die_with_the_cluster_process(tmp_path: Path) -> None:
    """Even a SIGKILLed cluster leaves no orphan node behind (PR_SET_PDEATHSIG)."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys, time\n"
        "from reelgate.cluster import Child, Cluster\n"
        "from reelgate.config import Settings\n"
        f"c = Cluster(Settings(var_dir={str(tmp_path / 'var')!r}), media_nodes=1)\n"
        f"c._spawn(Child('media-1', ['sleep', '30'], None, c.run_dir / 'm.log', 1), dict(os.environ))\n"
        "print(c.children[0].pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait(5)
    deadline = time.monotonic() + 5
    while proc_alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not proc_alive(child_pid), "the child outlived the cluster"


def test_exits_are_described_for_operators() -> None:
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(3) == "exited with status 3"


def test_the_cluster_refuses_to_start_naming_what_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELGATE_")}
    env["REELGATE_VAR_DIR"] = str(tmp_path / "var")
    result = subprocess.run(
        [sys.executable, "-m", "reelgate.cli", "cluster"], env=env, capture_output=True,
        text=True, timeout=60, check=False, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert result.returncode == 2
    assert "REELGATE_DATABASE_URL must name a PostgreSQL database" in result.stderr
    assert "REELGATE_REDIS_URL must name a Redis server" in result.stderr
