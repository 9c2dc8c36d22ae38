"""`reelgate cluster`: every node as its own process, nginx in front.

The same topology as docker-compose.yml, without Docker: entitlements,
catalog, N media nodes and the worker as child processes of this one, the
balancer rendered from their addresses. It refuses to start, naming what is
missing, without PostgreSQL and Redis URLs or the binaries it needs; waits
until every node is ready; stops everything on SIGINT/SIGTERM.

Supervision, once the cluster is up (like `Restart=on-failure`):

- a node that dies (killed by a signal, or a non-zero exit) is logged and
  started again after a back-off (1 s, doubling up to 30 s; the back-off
  resets once the node has stayed up for 30 s). Meanwhile nginx sends its
  requests to the other nodes: the cluster keeps serving with what is left;
- a node that exits with status 0 was stopped on purpose (SIGTERM from an
  operator): it is logged and left stopped;
- nginx is the front door: if it exits, the whole cluster stops (exit 1).

Every child's pid and port are kept in `var/cluster/pids.json` (rewritten on
every change) for operators and the fault tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from reelgate.balancer import Topology, check_config, nginx_binary, write_config
from reelgate.config import Settings
from reelgate.tokens import load_or_create_private_key

RESTART_BACKOFF_S = (1.0, 30.0)  # first delay, cap
STABLE_AFTER_S = 30.0  # a node up this long starts its back-off afresh


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


def _reachable_by_all(directory: Path) -> bool:
    """Every directory from / down to `directory` lets others through (o+x)."""
    path = directory.resolve()
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in (path, *path.parents) if p.exists())


def loopback(_service: str, port: int) -> str:
    """Where a node reaches another one in `reelgate cluster`: this machine."""
    return f"127.0.0.1:{port}"


@dataclass
class Child:
    name: str
    argv: list[str]
    ready_url: str | None
    log_path: Path
    port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0  # consecutive deaths without a stable run in between
    restart_at: float | None = None  # monotonic time of the next start, while waiting
    stopped: bool = False  # exited cleanly: left alone
    restarts: int = 0

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def state(self) -> str:
        if self.running():
            return "running"
        if self.restart_at is not None:
            return "restarting"
        return "stopped"


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec hook that makes a child get SIGTERM when the cluster process
    dies, however it dies (Linux `PR_SET_PDEATHSIG`); None elsewhere. Looked
    up here, in the parent: the hook runs between fork and exec, where only
    already-loaded code may run."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


_DIE_WITH_PARENT = _parent_death_signal()


@dataclass
class Cluster:
    settings: Settings
    media_nodes: int
    ports: Ports = field(default_factory=Ports)
    balance: str = "least_conn"
    restart: bool = True
    # nginx reaches the media nodes over unix sockets: they share this machine,
    # and a socket moves stream bytes with less CPU than loopback TCP
    # (docs/benchmarks.md). The nodes still listen on their ports too.
    media_sockets: bool = True
    login_rate: str = "30r/m"  # the balancer's sign-ins per client address
    login_burst: int = 20
    children: list[Child] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict, repr=False)  # the children's, once started
    log: Callable[[str], None] = field(
        default=lambda line: print(f"reelgate cluster: {line}", file=sys.stderr, flush=True)
    )

    @property
    def run_dir(self) -> Path:
        return self.settings.resolved_var_dir / "cluster"

    @property
    def pids_path(self) -> Path:
        return self.run_dir / "pids.json"

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

    def node_environment(self, where: Callable[[str, int], str] = loopback) -> dict[str, str]:
        """The settings every node gets. `where(service, port)` is how nodes
        reach each other: this machine here, the service name in
        docker-compose.yml (whose test derives its expectations from this)."""
        return {
            "REELGATE_DATABASE_URL": self.settings.database_url,
            "REELGATE_REDIS_URL": self.settings.redis_url,
            "REELGATE_ENTITLEMENTS_URL": f"http://{where('entitlements', self.ports.entitlements)}",
            "REELGATE_CATALOG_URL": f"http://{where('catalog', self.ports.catalog)}",
            "REELGATE_PUBLIC_URL": self.balancer_url,
            # Behind nginx the client address comes from X-Forwarded-For.
            "REELGATE_TRUST_FORWARDED_FOR": "true",
        }

    def machine_environment(self) -> dict[str, str]:
        """Paths on this machine, shared by every node because they share a disk."""
        return {
            "REELGATE_VAR_DIR": str(self.settings.resolved_var_dir),
            "REELGATE_JWT_PRIVATE_KEY_FILE": str(self.settings.private_key_path),
        }

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.machine_environment(), **self.node_environment()}

    def plan(self) -> list[Child]:
        me = [sys.executable, "-m", "reelgate.cli"]
        logs = self.run_dir / "logs"

        def node(name: str, command: str, port: int) -> Child:
            argv = [*me, command, "--port", str(port)]
            if command == "media" and self.media_sockets:
                argv += ["--unix-socket", str(self.media_socket(name))]
            return Child(name, argv, f"http://127.0.0.1:{port}/readyz", logs / f"{name}.log", port)

        children = [
            node("entitlements", "entitlements", self.ports.entitlements),
            node("catalog", "catalog", self.ports.catalog),
        ]
        for index in range(self.media_nodes):
            children.append(node(f"media-{index + 1}", "media", self.ports.media_base + index))
        children.append(node("worker", "worker", self.ports.worker))
        return children

    @functools.cached_property
    def socket_dir(self) -> Path:
        """Where the media nodes' sockets live: under the run directory when nginx's
        workers (another user) can reach it and the path fits a socket address (108
        bytes), else a directory of this cluster's own in the temporary directory.
        Decided once: permissions may change while the cluster runs, and the sockets
        must be removed from where they were made."""
        local = self.run_dir / "sockets"
        if len(str(local / "media-00.sock")) < 100 and _reachable_by_all(self.run_dir):
            return local
        tag = hashlib.sha256(str(self.run_dir.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"reelgate-{os.getuid()}-{tag}"

    def media_socket(self, name: str) -> Path:
        return self.socket_dir / f"{name}.sock"

    def _prepare_socket_dir(self) -> None:
        """Create the socket directory, or check that an existing one is ours (in a
        shared /tmp another user could have made it, or a symlink, to catch the sockets)."""
        directory = self.socket_dir
        try:
            directory.mkdir(mode=0o755, parents=True)
        except FileExistsError:
            info = directory.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                raise ClusterError(f"{directory} exists and is not this user's directory") from None
        directory.chmod(0o755)  # nginx's workers must reach the sockets (mkdir obeys umask)

    def topology(self, where: Callable[[str, int], str] = loopback) -> Topology:
        """The balancer's view; `where` as in `node_environment`. Media nodes are
        reached over their sockets when nginx runs here (`loopback`): containers
        (docker-compose) reach each other over TCP."""
        sockets = self.media_sockets and where is loopback
        return Topology(
            listen=f"{self.settings.host}:{self.ports.balancer}",
            media=[f"unix:{self.media_socket(child.name)}" if sockets
                   else where(child.name, child.port) for child in self.plan()
                   if child.name.startswith("media-") and child.port is not None],
            catalog=where("catalog", self.ports.catalog),
            entitlements=where("entitlements", self.ports.entitlements),
            run_dir=self.run_dir / "nginx",
            status_listen=f"127.0.0.1:{self.ports.status}",
            balance=self.balance,
            max_upload=str(self.settings.max_upload_bytes),
            login_rate=self.login_rate,
            login_burst=self.login_burst,
        )

    def _popen(self, child: Child, env: dict[str, str]) -> None:
        child.log_path.parent.mkdir(parents=True, exist_ok=True)
        with child.log_path.open("ab") as log:
            child.process = subprocess.Popen(
                child.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, preexec_fn=_DIE_WITH_PARENT,  # noqa: PLW1509 (see above)
            )
        child.started_at = time.monotonic()
        child.restart_at = None
        child.stopped = False

    def _spawn(self, child: Child, env: dict[str, str]) -> None:
        self._popen(child, env)
        self.children.append(child)
        self.write_pids()

    async def start(self, ready_timeout_s: float = 60.0) -> None:
        problems = self.missing()
        if problems:
            raise ClusterError("cannot start the cluster:\n  - " + "\n  - ".join(problems))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.media_sockets:
            self._prepare_socket_dir()
        load_or_create_private_key(self.settings.private_key_path)
        self.env = env = self.environment()
        migrate = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "reelgate.cli", "migrate"],
            env=env, capture_output=True, text=True, check=False,
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
                      self.run_dir / "logs" / "nginx.log", self.ports.balancer)
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

    def supervise(self) -> Child | None:
        """One round of supervision (see the module doc). Returns the child
        whose death stops the cluster (nginx), else None."""
        now = time.monotonic()
        changed = False
        for child in self.children:
            process = child.process
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._popen(child, self.env)
                    child.restarts += 1
                    self.log(f"{child.name} started again (pid {child.pid}, restart #{child.restarts})")
                    changed = True
                continue
            if process is None or child.stopped or process.poll() is None:
                continue
            code = process.returncode
            changed = True
            if child.name == "nginx":
                self.log(f"nginx {describe_exit(code)}; stopping the cluster\n{child.tail()}")
                self.write_pids()
                return child
            if code == 0 or not self.restart:
                child.stopped = True
                self.log(f"{child.name} (pid {process.pid}) {describe_exit(code)}; left stopped")
                continue
            if now - child.started_at >= STABLE_AFTER_S:
                child.failures = 0
            child.failures += 1
            first, cap = RESTART_BACKOFF_S
            delay = min(cap, first * 2 ** (child.failures - 1))
            child.restart_at = now + delay
            others = "; the other media nodes keep serving" if child.name.startswith("media-") else ""
            self.log(
                f"{child.name} (pid {process.pid}) {describe_exit(code)}{others}; "
                f"restarting it in {delay:.0f}s\n{child.tail(10)}"
            )
        if changed:
            self.write_pids()
        return None

    def write_pids(self) -> None:
        record = {
            "cluster": os.getpid(),
            "balancer": self.balancer_url,
            "children": {
                child.name: {
                    "pid": child.pid if child.running() else None,
                    "port": child.port,
                    "state": child.state(),
                    "restarts": child.restarts,
                    "log": str(child.log_path),
                }
                for child in self.children
            },
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.pids_path.with_name(f".{self.pids_path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, self.pids_path)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM everything (nginx first, so no request reaches a stopping node), then wait."""
        for child in reversed(self.children):
            child.restart_at = None
            if child.running():
                assert child.process is not None
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
        with contextlib.suppress(OSError):
            self.pids_path.unlink()
        if self.media_sockets:
            for sock in self.socket_dir.glob("*.sock"):  # nothing listens on them any more
                with contextlib.suppress(OSError):
                    sock.unlink()
            with contextlib.suppress(OSError):
                self.socket_dir.rmdir()  # only if empty: never anything but ours


async def run_foreground(cluster: Cluster) -> int:
    """Start, print the URL, and stay up (supervising) until a signal or nginx's death."""
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
    print(f"  media nodes: {cluster.media_nodes}, logs: {cluster.run_dir / 'logs'}, "
          f"pids: {cluster.pids_path}", flush=True)
    code = 0
    while not stop.is_set():
        if cluster.supervise() is not None:
            code = 1
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    cluster.stop()
    print("Reelgate cluster stopped.", flush=True)
    return code
