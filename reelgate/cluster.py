"""`reelgate cluster`: every node as its own process, nginx in front.

The same topology as docker-compose.yml, without Docker: entitlements,
catalog, N media nodes and the worker as child processes of this one, the
balancer rendered from their addresses. It refuses to start, naming what is
missing, without PostgreSQL and Redis URLs or the binaries it needs; waits
until every node is ready; stops everything on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from reelgate.balancer import Topology, check_config, nginx_binary, write_config
from reelgate.config import Settings
from reelgate.tokens import load_or_create_private_key


class ClusterError(RuntimeError):
    pass


@dataclass
class Ports:
    balancer: int = 8080
    catalog: int = 8001
    entitlements: int = 8002
    media_base: int = 8101
    worker: int = 8009
    status: int = 8089


@dataclass
class Child:
    name: str
    argv: list[str]
    ready_url: str | None
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Cluster:
    settings: Settings
    media_nodes: int
    ports: Ports = field(default_factory=Ports)
    balance: str = "least_conn"
    children: list[Child] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.settings.resolved_var_dir / "cluster"

    @property
    def balancer_url(self) -> str:
        return f"http://{self.settings.host}:{self.ports.balancer}"

    def missing(self) -> list[str]:
        problems = []
        if not self.settings.database_url.startswith(("postgres", "postgresql")):
            problems.append("REELGATE_DATABASE_URL must name a PostgreSQL database (postgresql://...)")
        if not self.settings.redis_url.startswith(("redis://", "rediss://", "unix://")):
            problems.append("REELGATE_REDIS_URL must name a Redis server (redis://host:port/db)")
        if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
            problems.append("nginx is not installed (scripts/install-system-deps.sh)")
        for tool in ("ffmpeg", "ffprobe"):
            if shutil.which(tool) is None:
                problems.append(f"{tool} is not installed (scripts/install-system-deps.sh)")
        return problems

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "REELGATE_VAR_DIR": str(self.settings.resolved_var_dir),
                "REELGATE_DATABASE_URL": self.settings.database_url,
                "REELGATE_REDIS_URL": self.settings.redis_url,
                "REELGATE_JWT_PRIVATE_KEY_FILE": str(self.settings.private_key_path),
                "REELGATE_ENTITLEMENTS_URL": f"http://127.0.0.1:{self.ports.entitlements}",
                "REELGATE_CATALOG_URL": f"http://127.0.0.1:{self.ports.catalog}",
                "REELGATE_PUBLIC_URL": self.balancer_url,
                # Behind nginx the client address comes from X-Forwarded-For.
                "REELGATE_TRUST_FORWARDED_FOR": "true",
            }
        )
        return env

    def plan(self) -> list[Child]:
        me = [sys.executable, "-m", "reelgate.cli"]
        logs = self.run_dir / "logs"
        children = [
            Child("entitlements", [*me, "entitlements", "--port", str(self.ports.entitlements)],
                  f"http://127.0.0.1:{self.ports.entitlements}/readyz", logs / "entitlements.log"),
            Child("catalog", [*me, "catalog", "--port", str(self.ports.catalog)],
                  f"http://127.0.0.1:{self.ports.catalog}/readyz", logs / "catalog.log"),
        ]
        for index in range(self.media_nodes):
            port = self.ports.media_base + index
            children.append(
                Child(f"media-{index + 1}", [*me, "media", "--port", str(port)],
                      f"http://127.0.0.1:{port}/readyz", logs / f"media-{index + 1}.log")
            )
        children.append(
            Child("worker", [*me, "worker", "--port", str(self.ports.worker)],
                  f"http://127.0.0.1:{self.ports.worker}/readyz", logs / "worker.log")
        )
        return children

    def topology(self) -> Topology:
        return Topology(
            listen=f"{self.settings.host}:{self.ports.balancer}",
            media=[f"127.0.0.1:{self.ports.media_base + i}" for i in range(self.media_nodes)],
            catalog=f"127.0.0.1:{self.ports.catalog}",
            entitlements=f"127.0.0.1:{self.ports.entitlements}",
            run_dir=self.run_dir / "nginx",
            status_listen=f"127.0.0.1:{self.ports.status}",
            balance=self.balance,
            max_upload=str(self.settings.max_upload_bytes),
        )

    def _spawn(self, child: Child, env: dict[str, str]) -> None:
        child.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = child.log_path.open("ab")
        child.process = subprocess.Popen(
            child.argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        self.children.append(child)

    async def start(self, ready_timeout_s: float = 60.0) -> None:
        problems = self.missing()
        if problems:
            raise ClusterError("cannot start the cluster:\n  - " + "\n  - ".join(problems))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        load_or_create_private_key(self.settings.private_key_path)
        env = self.environment()
        migrate = subprocess.run(
            [sys.executable, "-m", "reelgate.cli", "migrate"], env=env, capture_output=True, text=True
        )
        if migrate.returncode != 0:
            raise ClusterError(f"migrations failed:\n{migrate.stdout}{migrate.stderr}")
        for child in self.plan():
            self._spawn(child, env)
        await self._wait_ready(ready_timeout_s)
        config = write_config(self.topology())
        checked = check_config(config)
        if checked.returncode != 0:
            raise ClusterError(f"nginx rejected its config:\n{checked.stderr}")
        nginx = Child("nginx", [nginx_binary(), "-p", str(config.parent), "-c", str(config)],
                      f"http://{self.settings.host}:{self.ports.balancer}/healthz",
                      self.run_dir / "logs" / "nginx.log")
        self._spawn(nginx, env)
        await self._wait_ready(ready_timeout_s, [nginx])

    async def _wait_ready(self, timeout_s: float, children: list[Child] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        pending = [c for c in (children or self.children) if c.ready_url]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while pending:
                for child in list(pending):
                    assert child.process is not None
                    if child.process.poll() is not None:
                        raise ClusterError(
                            f"{child.name} exited with {child.process.returncode}:\n{child.tail()}"
                        )
                    try:
                        async with http.get(child.ready_url) as response:  # type: ignore[arg-type]
                            if response.status == 200:
                                pending.remove(child)
                    except (aiohttp.ClientError, TimeoutError):
                        pass
                if pending and time.monotonic() > deadline:
                    names = ", ".join(c.name for c in pending)
                    raise ClusterError(f"not ready after {timeout_s:.0f}s: {names}")
                if pending:
                    await asyncio.sleep(0.2)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM everything (nginx first, so no request reaches a stopping node), then wait."""
        for child in reversed(self.children):
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM if child.name != "nginx" else signal.SIGQUIT)
        deadline = time.monotonic() + timeout_s
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        self.children.clear()

    def exited(self) -> Child | None:
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                return child
        return None


async def run_foreground(cluster: Cluster) -> int:
    """Start, print the URL, and stay up until a signal or a child's death."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await cluster.start()
    except ClusterError as exc:
        cluster.stop()
        print(f"reelgate cluster: {exc}", file=sys.stderr)
        return 2
    print(f"Reelgate cluster is up: {cluster.balancer_url}", flush=True)
    print(f"  media nodes: {cluster.media_nodes}, logs: {cluster.run_dir / 'logs'}", flush=True)
    code = 0
    while not stop.is_set():
        dead = cluster.exited()
        if dead is not None:
            print(f"reelgate cluster: {dead.name} exited; stopping\n{dead.tail()}", file=sys.stderr)
            code = 1
            break
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass
    cluster.stop()
    print("Reelgate cluster stopped.", flush=True)
    return code
