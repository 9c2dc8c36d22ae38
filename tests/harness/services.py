"""Throw-away PostgreSQL and Redis servers for the test-suite.

Ground rules (see also ``scripts/install-system-deps.sh``):

* Every service is a *real* server reached over a real TCP connection on
  127.0.0.1, started by the harness on a free port.  Services someone started
  by hand (this machine runs PostgreSQL on 5432 and Redis on 6379) are never
  used unless explicitly requested through the override variables below.
* A missing binary raises ``RuntimeError`` ("<name> not found: run
  scripts/install-system-deps.sh"); nothing here ever calls ``pytest.skip``.
* PostgreSQL refuses to run as root: when we are root, ``initdb``, ``pg_ctl``
  and ``postgres`` run as the ``postgres`` system user (setuid in the child,
  the same thing ``runuser -u postgres --`` does, without PAM overhead).
* Every started process is stopped at interpreter exit (``atexit``) and by the
  fixtures' finalizers.  If the pytest process dies without running them
  (SIGKILL, SIGTERM, OOM...), a small watchdog process -- holding the read end
  of a pipe whose write end only pytest has -- sees EOF and kills what is left.
  As a last resort, the start of every session sweeps runtime directories left
  by dead owners (pid-file based, see ``_reaper.py``).

Override variables
------------------
``REELGATE_TEST_DATABASE_URL``
    URL of an existing PostgreSQL server, e.g.
    ``postgresql://user:secret@db.internal:5432/postgres`` (``+asyncpg`` is
    accepted).  No local server is started; the database in the URL (default
    ``postgres``) is the maintenance database used for CREATE/DROP DATABASE.
    Every database the harness creates gets a unique name
    (``reelgate_test_<pid>_<hex>``) and is dropped at ``stop()``.  ``pause``,
    ``resume`` and ``restart`` raise ``RuntimeError`` on such a server.
``REELGATE_TEST_REDIS_URL``
    URL of an existing Redis server.  Isolation is by *database number*: the
    number in the URL path is used (``redis://host:6379/15``), and **15 when the
    URL has none** -- the harness FLUSHDBs that database at start, before every
    test using ``redis_url`` and at the end, so point it at a database nobody
    else uses.  ``pause``/``resume``/``kill`` raise ``RuntimeError``.
``REELGATE_TEST_RUNTIME_DIR``
    Where runtime directories (data directories, sockets, logs) are created.
    Default: /dev/shm if it is a tmpfs with >= 1 GiB free (much faster initdb),
    else ``$TMPDIR`` or /tmp; when root and the directory is not traversable by
    the postgres user, /tmp.
``REELGATE_PG_BINDIR``
    PostgreSQL server binaries (default: the highest
    ``/usr/lib/postgresql/<ver>/bin`` that has ``initdb``).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import glob
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _reaper
from .ports import free_port, port_is_free

__all__ = [
    "PortInUseError",
    "PostgresServer",
    "RedisServer",
    "cleanup_all",
    "free_port",
    "pg_bindir",
    "require_binary",
    "runtime_root",
    "unique_name",
]

INSTALL_HINT = "run scripts/install-system-deps.sh"
DATABASE_URL_ENV = "REELGATE_TEST_DATABASE_URL"
REDIS_URL_ENV = "REELGATE_TEST_REDIS_URL"
DEFAULT_EXTERNAL_REDIS_DB = 15

_EXTRA_BIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin")
_PG_SERVER_TOOLS = {"initdb", "pg_ctl", "postgres", "postmaster", "pg_controldata", "pg_resetwal"}


# ============================================================================ binaries


def _version_key(path: str) -> tuple[int, ...]:
    ver = Path(path).parent.parent.name  # /usr/lib/postgresql/<ver>/bin/initdb
    try:
        return tuple(int(p) for p in ver.split("."))
    except ValueError:
        return (-1,)


def pg_bindir() -> Path:
    """Directory of the PostgreSQL server binaries (highest version installed)."""
    env = os.environ.get("REELGATE_PG_BINDIR")
    if env:
        if not (Path(env) / "initdb").is_file():
            raise RuntimeError(f"initdb not found in REELGATE_PG_BINDIR={env}: {INSTALL_HINT}")
        return Path(env)
    found = [p for p in glob.glob("/usr/lib/postgresql/*/bin/initdb") if os.access(p, os.X_OK)]
    found = [p for p in found if os.access(str(Path(p).with_name("postgres")), os.X_OK)]
    if not found:
        raise RuntimeError(
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb): "
            + INSTALL_HINT
        )
    return Path(max(found, key=_version_key)).parent


def require_binary(name: str) -> str:
    """Absolute path of executable ``name``; RuntimeError if it is not installed.

    PostgreSQL server tools (initdb, pg_ctl, postgres, ...) are looked up in
    :func:`pg_bindir` only.  Other names are looked up on ``$PATH`` and then in
    the sbin/bin directories (nginx lives in /usr/sbin, often not on a non-root
    PATH).  Never skips: a missing component must make the test fail.
    """
    if name in _PG_SERVER_TOOLS:
        try:
            path = pg_bindir() / name
        except RuntimeError:
            raise RuntimeError(f"{name} not found: {INSTALL_HINT}") from None
        if os.access(path, os.X_OK):
            return str(path)
        raise RuntimeError(f"{name} not found: {INSTALL_HINT}")
    found = shutil.which(name)
    if found is None:
        found = shutil.which(name, path=os.pathsep.join(_EXTRA_BIN_DIRS))
    if found is None:
        raise RuntimeError(f"{name} not found: {INSTALL_HINT}")
    return os.path.abspath(found)


# ============================================================================ runtime root / cleanup


def _is_root() -> bool:
    return os.geteuid() == 0


def _others_can_traverse(path: Path) -> bool:
    p = path.resolve()
    for d in [p, *p.parents]:
        try:
            st = d.stat()
        except OSError:
            return False
        if not st.st_mode & stat.S_IXOTH:
            return False
    return True


_state_lock = threading.RLock()
_root: Path | None = None
_root_pid: int | None = None
_watchdog: subprocess.Popen | None = None
_watchdog_wfd: int | None = None
_live: dict[int, Any] = {}
_atexit_registered = False


_SHM = Path("/dev/shm")
_SHM_MIN_FREE = 1 << 30  # Docker's default 64 MiB /dev/shm is too small: use /tmp there


def _shm_usable() -> bool:
    try:
        st = os.statvfs(_SHM)
    except OSError:
        return False
    return (
        _SHM.is_dir()
        and os.access(_SHM, os.W_OK | os.X_OK)
        and st.f_bavail * st.f_frsize >= _SHM_MIN_FREE
        and _others_can_traverse(_SHM)
    )


def runtime_base() -> Path:
    """Directory in which runtime roots are created.

    ``$REELGATE_TEST_RUNTIME_DIR`` if set; otherwise /dev/shm when it is a
    tmpfs with >= 1 GiB free (initdb and data-directory copies are I/O bound:
    on this VM's disk they take 3-4x longer under load), else ``$TMPDIR``//tmp.
    When root, a base the postgres user cannot traverse is replaced by /tmp.
    """
    env = os.environ.get("REELGATE_TEST_RUNTIME_DIR")
    if env:
        base = Path(env)
    elif _shm_usable():
        base = _SHM
    else:
        base = Path(tempfile.gettempdir())
    if _is_root() and not _others_can_traverse(base):
        base = Path("/tmp")
    return base


def runtime_root() -> Path:
    """This process' runtime directory (created on first use).

    First use also sweeps stale runtime directories of dead processes and
    starts the watchdog.
    """
    global _root, _root_pid, _atexit_registered
    with _state_lock:
        if _root is not None and _root_pid == os.getpid() and _root.is_dir():
            return _root
        base = runtime_base()
        base.mkdir(parents=True, exist_ok=True)
        for b in dict.fromkeys([str(base), "/tmp", str(_SHM), tempfile.gettempdir()]):
            try:
                if os.path.isdir(b):
                    _reaper.sweep(b)
            except Exception:  # noqa: BLE001, S110 - clean-up of *old* runs must not break this one
                pass
        root = Path(tempfile.mkdtemp(prefix=f"{_reaper.ROOT_PREFIX}{os.getpid()}-", dir=base))
        os.chmod(root, 0o755)
        (root / "services").mkdir(mode=0o755)
        _write_json(root / "owner.json", _reaper.owner_record())
        _root, _root_pid = root, os.getpid()
        _start_watchdog(root)
        if not _atexit_registered:
            atexit.register(cleanup_all)
            _atexit_registered = True
        return root


def _start_watchdog(root: Path) -> None:
    global _watchdog, _watchdog_wfd
    r, w = os.pipe()  # both ends are non-inheritable; only r is passed (as stdin)
    try:
        _watchdog = subprocess.Popen(
            [sys.executable, "-I", str(Path(_reaper.__file__).resolve()), "watch", str(root)],
            stdin=r,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,  # survives Ctrl-C / kill of pytest's process group
            close_fds=True,
        )
    except OSError:
        os.close(w)
        _watchdog_wfd = None
    else:
        _watchdog_wfd = w
    finally:
        os.close(r)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _register(name: str, entry: dict) -> Path:
    path = runtime_root() / "services" / f"{name}.json"
    _write_json(path, entry)
    return path


def _track(obj: Any) -> None:
    with _state_lock:
        _live[id(obj)] = obj


def _untrack(obj: Any) -> None:
    with _state_lock:
        _live.pop(id(obj), None)


def cleanup_all() -> None:
    """Stop every service this process started and delete its runtime root.

    Registered with ``atexit``; safe to call more than once.
    """
    global _root, _watchdog, _watchdog_wfd
    with _state_lock:
        if _root_pid is not None and _root_pid != os.getpid():
            return  # forked child: the parent owns these services
        objs = list(_live.values())[::-1]
    for obj in objs:
        try:
            obj.stop()
        except Exception as exc:  # noqa: BLE001 - best effort at exit
            print(f"reelgate harness: failed to stop {obj!r}: {exc}", file=sys.stderr)
    with _state_lock:
        if _root is not None:
            _reaper.clean_root(str(_root))
            _root = None
        if _watchdog_wfd is not None:
            try:
                os.close(_watchdog_wfd)
            except OSError:
                pass
            _watchdog_wfd = None
        if _watchdog is not None:
            try:
                _watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                _watchdog.kill()
            _watchdog = None


def unique_name(prefix: str = "reelgate_test") -> str:
    """A fresh identifier usable as database name: ``<prefix>_<pid>_<hex>``."""
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}".lower()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read()[-16384:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])


def _tcp_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _run_sync(fn: Callable[[], Any]) -> Any:
    """Run ``asyncio.run(fn())`` in a worker thread: works with or without a running loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex:
        return ex.submit(lambda: asyncio.run(fn())).result()


# ============================================================================ PostgreSQL


def _pg_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "running as root but there is no 'postgres' system user (PostgreSQL refuses to run "
            f"as root): {INSTALL_HINT}"
        ) from None


class PortInUseError(RuntimeError):
    """The chosen port was taken (e.g. by a concurrently running test session)."""


def _port_clash(log: str) -> bool:
    return "Address already in use" in log or "could not bind" in log


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresServer:
    """A PostgreSQL server: one started by the harness, or an external one.

    Use :meth:`start` (own throw-away cluster), :meth:`external` (existing
    server) or :meth:`from_env` (external when ``REELGATE_TEST_DATABASE_URL``
    is set, own cluster otherwise).
    """

    def __init__(self, url: Any, *, external: bool) -> None:
        from sqlalchemy.engine import make_url

        self._url = make_url(url) if isinstance(url, str) else url
        self.external = external
        self.admin_db: str = self._url.database or "postgres"
        self.host: str = self._url.host or "127.0.0.1"
        self.port: int = int(self._url.port or 5432)
        self._created: set[str] = set()
        self._stopped = False
        # own-cluster state
        self.bindir: Path | None = None
        self.dir: Path | None = None
        self.datadir: Path | None = None
        self.sockdir: Path | None = None
        self.logfile: Path | None = None
        self._entry_name: str | None = None

    # ------------------------------------------------------------------ constructors

    @classmethod
    def start(
        cls, base_dir: Path | str | None = None, *, port: int | None = None
    ) -> PostgresServer:
        """initdb + start a fresh cluster on a free port (or ``port``); wait until ready.

        The instance directory is created under ``base_dir`` when given (and,
        when we are root, traversable by the postgres user), otherwise under
        this process' runtime root (/dev/shm or /tmp, see ``runtime_base``).
        """
        from sqlalchemy.engine import URL

        bindir = pg_bindir()
        root = runtime_root()
        parent = root
        if base_dir is not None:
            bd = Path(base_dir)
            bd.mkdir(parents=True, exist_ok=True)
            if not _is_root() or _others_can_traverse(bd):
                parent = bd
        explicit_port = port is not None
        port = port or free_port()
        inst = Path(tempfile.mkdtemp(prefix="pg-", dir=parent))
        os.chmod(inst, 0o755)
        srv = cls(
            URL.create("postgresql", username="postgres", host="127.0.0.1", port=port),
            external=False,
        )
        srv.bindir, srv.dir = bindir, inst
        srv.datadir, srv.sockdir, srv.logfile = inst / "data", inst / "sock", inst / "postgres.log"
        srv._entry_name = inst.name
        _register(
            srv._entry_name,
            {
                "kind": "postgres",
                "expect": "postgres",
                "pidfile": str(srv.datadir / "postmaster.pid"),
                "dir": str(inst),
            },
        )
        _track(srv)
        try:
            srv.sockdir.mkdir(mode=0o755)
            if _is_root():
                acct = _pg_account()
                for p in (inst, srv.sockdir):
                    os.chown(p, acct.pw_uid, acct.pw_gid)
            srv._initdb()
            for attempt in range(5):
                try:
                    srv._pg_start()
                    break
                except PortInUseError:
                    if explicit_port or attempt == 4:
                        raise
                    srv.port = free_port()
                    srv._url = srv._url.set(port=srv.port)
        except BaseException:
            srv.stop()
            raise
        return srv

    @classmethod
    def external(cls, url: str) -> PostgresServer:
        """Use an existing server (see module doc); verifies it answers ``SELECT 1``."""
        srv = cls(url, external=True)
        try:
            srv.execute("SELECT 1")
        except Exception as exc:
            raise RuntimeError(
                f"cannot connect to {DATABASE_URL_ENV} server {srv.describe()}: {exc}"
            ) from exc
        _track(srv)
        return srv

    @classmethod
    def from_env(cls, base_dir: Path | str | None = None) -> PostgresServer:
        url = os.environ.get(DATABASE_URL_ENV)
        if url:
            return cls.external(url)
        return cls.start(base_dir)

    # ------------------------------------------------------------------ URLs

    def dsn(self, dbname: str | None = None, *, driver: str | None = "asyncpg") -> str:
        """SQLAlchemy URL of ``dbname`` (default: the maintenance database).

        ``postgresql+asyncpg://postgres@127.0.0.1:PORT/dbname`` for an own
        cluster; ``driver=None`` gives a plain libpq/asyncpg URI.
        """
        drivername = f"postgresql+{driver}" if driver else "postgresql"
        return self._url.set(
            drivername=drivername, database=dbname or self.admin_db
        ).render_as_string(hide_password=False)

    def libpq_dsn(self, dbname: str | None = None) -> str:
        """``postgresql://...`` URI, for ``asyncpg.connect`` / ``psql``."""
        return self.dsn(dbname, driver=None)

    @property
    def admin_dsn(self) -> str:
        return self.dsn(self.admin_db)

    def describe(self) -> str:
        return self._url.set(drivername="postgresql").render_as_string(hide_password=True)

    def __repr__(self) -> str:
        kind = "external" if self.external else f"own, dir={self.dir}"
        return f"<PostgresServer {self.host}:{self.port} ({kind})>"

    # ------------------------------------------------------------------ SQL helpers

    def execute(self, sql: str, dbname: str | None = None) -> list[tuple]:
        """Run one statement (autocommit) over a real connection; returns rows."""
        import asyncpg

        dsn = self.libpq_dsn(dbname)

        async def go() -> list[tuple]:
            conn = await asyncpg.connect(dsn, timeout=15)
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()

        return _run_sync(go)

    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """CREATE DATABASE ``name`` (a unique name when omitted); returns the name."""
        name = name or unique_name()
        sql = f"CREATE DATABASE {_quote_ident(name)}"
        if template:
            sql += f" TEMPLATE {_quote_ident(template)}"
        self.execute(sql)
        self._created.add(name)
        return name

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS ``name`` WITH (FORCE) (terminates its sessions)."""
        self.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
        self._created.discard(name)

    def database_exists(self, name: str) -> bool:
        rows = self.execute(
            f"SELECT 1 FROM pg_database WHERE datname = '{name.replace(chr(39), chr(39) * 2)}'"
        )
        return bool(rows)

    # ------------------------------------------------------------------ process control

    def _pg_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_MESSAGES"] = "C"
        if _is_root():
            acct = _pg_account()
            env.update(HOME=acct.pw_dir, USER="postgres", LOGNAME="postgres")
        return env

    def _run_pg(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        kw: dict[str, Any] = {}
        if _is_root():
            acct = _pg_account()
            kw.update(user=acct.pw_uid, group=acct.pw_gid, extra_groups=[])
        return subprocess.run(
            args,
            check=False,
            cwd="/",  # the postgres user may not be able to read our cwd
            env=self._pg_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            start_new_session=True,  # Ctrl-C in the terminal must not hit postgres
            **kw,
        )

    def _initdb(self) -> None:
        assert self.bindir and self.datadir
        template = runtime_root() / f"pg-template-{self.bindir.parent.name}"
        if not template.is_dir():
            # First cluster in this process: initdb once into a template, copy after.
            tmp_template = Path(tempfile.mkdtemp(prefix=".pg-template-", dir=runtime_root()))
            os.chmod(tmp_template, 0o700)
            if _is_root():
                acct = _pg_account()
                os.chown(tmp_template, acct.pw_uid, acct.pw_gid)
            cmd = [
                str(self.bindir / "initdb"), "-D", str(tmp_template), "-A", "trust", "-U", "postgres",
                "--no-sync", "-E", "UTF8", "--locale=C", "--no-instructions",
            ]  # fmt: skip
            res = self._run_pg(cmd)
            if res.returncode != 0:
                shutil.rmtree(tmp_template, ignore_errors=True)
                raise RuntimeError(f"initdb failed (exit {res.returncode}):\n{res.stdout}")
            try:
                os.rename(tmp_template, template)
            except OSError:  # another thread won the race
                shutil.rmtree(tmp_template, ignore_errors=True)
        # cp -a keeps owner and the 0700 mode that postgres insists on
        res = subprocess.run(
            ["cp", "-a", str(template), str(self.datadir)],
            check=False,
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise RuntimeError(f"copying the initdb template failed: {res.stderr}")

    def _pg_start(self) -> None:
        assert self.bindir and self.datadir and self.sockdir and self.logfile
        if not port_is_free(self.port):
            raise PortInUseError(f"cannot start PostgreSQL: port {self.port} is in use")
        opts = " ".join(
            [
                f"-p {self.port}",
                f"-k {shlex.quote(str(self.sockdir))}",
                "-c listen_addresses=127.0.0.1",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        cmd = [
            str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
            "-w", "-t", "60", "-o", opts, "start",
        ]  # fmt: skip
        res = self._run_pg(cmd)
        if res.returncode != 0:
            log = _tail(self.logfile)
            exc = PortInUseError if _port_clash(log) else RuntimeError
            raise exc(
                f"pg_ctl start failed (exit {res.returncode}) on port {self.port}:\n{res.stdout}\n"
                f"--- {self.logfile} ---\n{log}"
            )
        deadline = time.monotonic() + 15
        while not _tcp_open(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL on port {self.port} does not accept TCP connections:\n{_tail(self.logfile)}"
                )
            time.sleep(0.01)

    def _pidfile_pid(self) -> int | None:
        if self.datadir is None:
            return None
        try:
            return int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    @property
    def pid(self) -> int | None:
        """Postmaster pid (own cluster, while running)."""
        pid = self._pidfile_pid()
        return pid if pid and _reaper.proc_alive(pid) else None

    def is_running(self) -> bool:
        if self.external:
            return not self._stopped
        return self.pid is not None

    def _require_own(self, what: str) -> None:
        if self.external:
            raise RuntimeError(
                f"cannot {what} the external PostgreSQL server given by {DATABASE_URL_ENV}"
            )
        if self._stopped:
            raise RuntimeError(f"cannot {what}: this PostgresServer was stopped")

    def pause(self, mode: str = "fast") -> None:
        """Stop the server but keep its data and port (``mode``: smart/fast/immediate).

        ``immediate`` simulates a crash (recovery runs on :meth:`resume`).
        """
        self._require_own("pause")
        if self.pid is None:
            return
        assert self.bindir and self.datadir
        res = self._run_pg(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-m",
                mode,
                "-w",
                "-t",
                "60",
                "stop",
            ]
        )
        if res.returncode != 0 and self.pid is not None:
            raise RuntimeError(f"pg_ctl stop failed (exit {res.returncode}):\n{res.stdout}")

    def resume(self) -> None:
        """Start again on the same port with the same data."""
        self._require_own("resume")
        if self.pid is None:
            self._pg_start()

    def restart(self, mode: str = "fast", down_for: float = 0.0) -> None:
        """:meth:`pause`, wait ``down_for`` seconds, :meth:`resume`."""
        self.pause(mode)
        if down_for:
            time.sleep(down_for)
        self.resume()

    def kill(self) -> None:
        """Crash the server (``pg_ctl stop -m immediate``); :meth:`resume` brings it back."""
        self.pause("immediate")

    def stop(self) -> None:
        """Shut down and delete the cluster (own) / drop created databases (external).

        Idempotent.
        """
        if self._stopped:
            return
        try:
            if self.external:
                errors = []
                for name in sorted(self._created):
                    try:
                        self.drop_database(name)
                    except Exception as exc:  # noqa: BLE001 - collect, report all
                        errors.append(f"{name}: {exc}")
                if errors:
                    raise RuntimeError("could not drop test databases: " + "; ".join(errors))
                return
            if self.pid is not None and self.bindir and self.datadir:
                try:
                    self._run_pg(
                        [
                            str(self.bindir / "pg_ctl"),
                            "-D",
                            str(self.datadir),
                            "-m",
                            "fast",
                            "-w",
                            "-t",
                            "30",
                            "stop",
                        ],
                        timeout=60,
                    )
                except subprocess.TimeoutExpired:
                    pass
            # kills the postmaster if still there (pid file), removes the directory
            _reaper.kill_entry(
                {"kind": "postgres", "expect": "postgres",
                 "pidfile": str(self.datadir / "postmaster.pid") if self.datadir else None,
                 "dir": str(self.dir) if self.dir else None}
            )  # fmt: skip
            if self._entry_name and _root is not None:
                try:
                    (_root / "services" / f"{self._entry_name}.json").unlink()
                except OSError:
                    pass
        finally:
            self._stopped = True
            _untrack(self)


# ============================================================================ Redis


def _redis_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _redis_server_pid(host: str, port: int, timeout: float = 2.0) -> int | None:
    """``process_id`` from INFO server (raw RESP, no client library needed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"INFO server\r\n")
            buf = b""
            while b"\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    return None
                buf += chunk
            head, _, body = buf.partition(b"\r\n")
            if not head.startswith(b"$"):
                return None
            need = int(head[1:])
            while len(body) < need:
                chunk = s.recv(4096)
                if not chunk:
                    return None
                body += chunk
    except (OSError, ValueError):
        return None
    for line in body[:need].decode("latin-1").splitlines():
        if line.startswith("process_id:"):
            return int(line.split(":", 1)[1])
    return None


class RedisServer:
    """A Redis server: one started by the harness (``redis-server`` child) or an external one."""

    def __init__(
        self, *, host: str, port: int, db: int, external: bool, url: str | None = None
    ) -> None:
        self.host, self.port, self.db, self.external = host, port, db, external
        self._url = url
        self.dir: Path | None = None
        self.logfile: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._binary: str = ""
        self._entry_name: str | None = None
        self._stopped = False

    # ------------------------------------------------------------------ constructors

    @classmethod
    def start(cls, base_dir: Path | str | None = None, *, port: int | None = None) -> RedisServer:
        """Start ``redis-server`` (no persistence) on a free port; wait for PING."""
        binary = require_binary("redis-server")
        parent = Path(base_dir) if base_dir is not None else runtime_root()
        runtime_root()  # registry + watchdog even when base_dir is given
        parent.mkdir(parents=True, exist_ok=True)
        srv = cls(host="127.0.0.1", port=port or free_port(), db=0, external=False)
        srv.dir = Path(tempfile.mkdtemp(prefix="redis-", dir=parent))
        srv.logfile = srv.dir / "redis.log"
        srv._binary = binary
        srv._entry_name = srv.dir.name
        _track(srv)
        try:
            for attempt in range(5):
                try:
                    srv._spawn()
                    break
                except PortInUseError:
                    if port is not None or attempt == 4:
                        raise
                    srv.port = free_port()
        except BaseException:
            srv.stop()
            raise
        return srv

    @classmethod
    def external(cls, url: str) -> RedisServer:
        """Use an existing server; isolation by db number (default 15), flushed now and at stop."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        path = parts.path.strip("/")
        db = int(path) if path.isdigit() else DEFAULT_EXTERNAL_REDIS_DB
        url = urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))
        srv = cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=db,
            external=True,
            url=url,
        )
        try:
            srv.flush()
        except Exception as exc:
            raise RuntimeError(
                f"cannot use {REDIS_URL_ENV} server {srv.host}:{srv.port}/{db}: {exc}"
            ) from exc
        _track(srv)
        return srv

    @classmethod
    def from_env(cls, base_dir: Path | str | None = None) -> RedisServer:
        url = os.environ.get(REDIS_URL_ENV)
        if url:
            return cls.external(url)
        return cls.start(base_dir)

    # ------------------------------------------------------------------ info

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` (own) or the override URL with its db number."""
        if self._url:
            return self._url
        return f"redis://{self.host}:{self.port}/{self.db}"

    @property
    def pid(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc.pid
        return None

    def is_running(self) -> bool:
        if self.external:
            return not self._stopped
        return self.pid is not None

    def __repr__(self) -> str:
        kind = "external" if self.external else f"own, dir={self.dir}"
        return f"<RedisServer {self.host}:{self.port}/{self.db} ({kind})>"

    def flush(self) -> None:
        """FLUSHDB on :attr:`url`'s database."""
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=10, socket_connect_timeout=10)
        try:
            client.flushdb()
        finally:
            client.close()

    # ------------------------------------------------------------------ process control

    def _spawn(self) -> None:
        assert self.dir and self.logfile
        if not port_is_free(self.port):
            raise PortInUseError(f"cannot start redis-server: port {self.port} is in use")
        cmd = [
            self._binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no",
        ]  # fmt: skip
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=str(self.dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal must not hit redis
            )
        _register(
            self._entry_name or self.dir.name,
            {"kind": "redis", "expect": "redis-server", "pid": self.proc.pid, "dir": str(self.dir)},
        )
        deadline = time.monotonic() + 15
        while not (_redis_ping(self.host, self.port) and self._answering_is_ours()):
            if self.proc.poll() is not None:
                log = _tail(self.logfile)
                exc = PortInUseError if _port_clash(log) else RuntimeError
                raise exc(
                    f"redis-server exited with {self.proc.returncode} on port {self.port}:\n{log}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server on port {self.port} does not answer PING:\n{_tail(self.logfile)}"
                )
            time.sleep(0.005)

    def _answering_is_ours(self) -> bool:
        # a concurrently started foreign redis could hold the port for a moment
        assert self.proc is not None
        return _redis_server_pid(self.host, self.port) == self.proc.pid

    def _require_own(self, what: str) -> None:
        if self.external:
            raise RuntimeError(f"cannot {what} the external Redis server given by {REDIS_URL_ENV}")
        if self._stopped:
            raise RuntimeError(f"cannot {what}: this RedisServer was stopped")

    def _terminate(self, sig: int, timeout: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.send_signal(sig)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        except ProcessLookupError:
            pass

    def pause(self) -> None:
        """Stop redis-server (SIGTERM) keeping port and directory; see :meth:`resume`."""
        self._require_own("pause")
        self._terminate(signal.SIGTERM, 5)

    def resume(self) -> None:
        """Start redis-server again on the SAME port (data is not persisted)."""
        self._require_own("resume")
        if self.pid is None:
            self._spawn()

    def kill(self) -> None:
        """SIGKILL redis-server (simulated crash); :meth:`resume` restarts it."""
        self._require_own("kill")
        self._terminate(signal.SIGKILL, 5)

    def restart(self, down_for: float = 0.0) -> None:
        self.pause()
        if down_for:
            time.sleep(down_for)
        self.resume()

    def stop(self) -> None:
        """Stop and remove the directory (own) / FLUSHDB (external). Idempotent."""
        if self._stopped:
            return
        try:
            if self.external:
                self.flush()
                return
            self._terminate(signal.SIGTERM, 5)
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
            if self._entry_name and _root is not None:
                try:
                    (_root / "services" / f"{self._entry_name}.json").unlink()
                except OSError:
                    pass
        finally:
            self._stopped = True
            _untrack(self)
