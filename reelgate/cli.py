"""The `reelgate` command: one entry point for every node and operator task."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from reelgate.balancer import Topology
from reelgate.config import Settings, load_settings
from reelgate.logs import setup_logging
from reelgate.migrate import SERVICES, NotMigrated

log = logging.getLogger("reelgate")


def _serve(app_factory: Callable[[Settings], web.Application], default_port: int):
    def run(args: argparse.Namespace, settings: Settings) -> int:
        app = app_factory(settings)
        port = args.port or default_port
        unix_socket = getattr(args, "unix_socket", None)
        # Both: the TCP port for everyone, the socket for a balancer on this machine.
        sock = unix_listener(unix_socket) if unix_socket else None
        try:
            web.run_app(app, host=args.host or settings.host, port=port, sock=sock, access_log=None,
                         print=lambda _: log.info("listening on %s:%d", args.host or settings.host, port))
        except NotMigrated as exc:
            print(f"reelgate: {exc}", file=sys.stderr)
            return 2
        return 0

    return run


def unix_listener(path: Path) -> socket.socket:
    """A unix socket bound at `path`, for aiohttp to listen on.

    A socket left by a killed node is replaced; any other file there is not.
    Anyone on the machine may connect (mode 0666), as to a loopback port: nginx's
    workers run as another user. Who may reach the path is up to its directory."""
    if path.is_socket():
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        path.chmod(0o666)
    except OSError:
        sock.close()
        raise
    return sock


def cmd_entitlements(args: argparse.Namespace, settings: Settings) -> int:
    from entitlements.app import create_app

    return _serve(create_app, 8002)(args, settings)


def cmd_media(args: argparse.Namespace, settings: Settings) -> int:
    from server.app import create_app

    return _serve(create_app, 8101)(args, settings)


def cmd_catalog(args: argparse.Namespace, settings: Settings) -> int:
    from catalog.app import create_app

    return _serve(create_app, 8001)(args, settings)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from catalog.media import Unplayable, ingest_file
    from catalog.schemas import MovieIn

    try:
        movie_in = MovieIn(
            title=args.title,
            description=args.description,
            release_year=args.year,
            genres=args.genre or [],
            age_rating=args.age_rating,
        )
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            print(f"reelgate: {'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"reelgate: {args.file} is not a file", file=sys.stderr)
        return 2
    try:
        movie = asyncio.run(ingest_file(settings, args.file, movie_in))
    except NotMigrated as exc:
        print(f"reelgate: {exc}", file=sys.stderr)
        return 2
    except Unplayable as exc:
        print(f"reelgate: {args.file} is not a playable video: {exc}", file=sys.stderr)
        return 1
    media = movie.media
    assert media is not None
    print(
        f"{movie.id} {movie.title!r} ready: {media.width}x{media.height} {media.video_codec}, "
        f"{media.duration_s}s, {media.size_bytes} bytes"
    )
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from entitlements.worker import DEFAULT_PORT, WorkerConfigError, create_worker

    try:
        worker = create_worker(settings)
    except WorkerConfigError as exc:
        print(f"reelgate: {exc}", file=sys.stderr)
        return 2
    return _serve(lambda _settings: worker.create_app(), DEFAULT_PORT)(args, settings)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from reelgate.demo import run_demo

    if args.port:
        settings = settings.model_copy(update={"port": args.port})
    return asyncio.run(run_demo(settings))


def cmd_cluster(args: argparse.Namespace, settings: Settings) -> int:
    from reelgate.cluster import Cluster, Ports, run_foreground

    ports = Ports(
        balancer=args.port or settings.port,
        catalog=args.catalog_port,
        entitlements=args.entitlements_port,
        media_base=args.media_base_port,
        worker=args.worker_port,
        status=args.status_port,
    )
    cluster = Cluster(settings, media_nodes=args.media_nodes, ports=ports, balance=args.balance,
                      restart=not args.no_restart, media_sockets=not args.media_over_tcp,
                      login_rate=args.login_rate, login_burst=args.login_burst)
    return asyncio.run(run_foreground(cluster))


def balancer_topology(args: argparse.Namespace, settings: Settings) -> Topology:
    """The Topology `reelgate balancer render` renders (also read by tests/cluster/test_compose.py)."""
    from reelgate.balancer import STATIC_ROOT, Topology

    media = [address for value in args.media for address in value.split(",") if address.strip()]
    return Topology(
        listen=args.listen,
        media=[address.strip() for address in media],
        catalog=args.catalog,
        entitlements=args.entitlements,
        run_dir=Path(args.run_dir),
        static_root=Path(args.static_root) if args.static_root else STATIC_ROOT,
        status_listen=args.status_listen,
        balance=args.balance,
        max_upload=args.max_upload or str(settings.max_upload_bytes),
        access_log=args.access_log or "",
        error_log=args.error_log or "",
        mime_types=args.mime_types or "",
    )


def cmd_balancer_render(args: argparse.Namespace, settings: Settings) -> int:
    from reelgate.balancer import check_config, render

    topology = balancer_topology(args, settings)
    try:
        text = render(topology)
    except (ValueError, FileNotFoundError) as exc:
        print(f"reelgate: {exc}", file=sys.stderr)
        return 2
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    if args.check:
        topology.run_dir.mkdir(parents=True, exist_ok=True)  # nginx -t opens the pid file there
        checked = check_config(output)
        if checked.returncode != 0:
            print(f"reelgate: nginx rejected {output}:\n{checked.stderr}", file=sys.stderr)
            return 1
    print(f"wrote {output}", file=sys.stderr)
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from reelgate.db import make_engine
    from reelgate.migrate import upgrade

    async def run() -> None:
        for service in args.services or SERVICES:
            engine = make_engine(settings.database_url_for(service))
            try:
                await upgrade(engine, service)
            finally:
                await engine.dispose()
            print(f"{service}: migrated to head")

    asyncio.run(run())
    return 0


def cmd_create_admin(args: argparse.Namespace, settings: Settings) -> int:
    from entitlements import service
    from reelgate.db import Database
    from reelgate.migrate import ensure_migrated

    if sys.stdin.isatty():
        password = getpass.getpass("Password for the new admin: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        print("reelgate: the password must have at least 8 characters", file=sys.stderr)
        return 2

    async def run() -> None:
        db = Database(settings.database_url_for("entitlements"))
        try:
            await ensure_migrated(db.engine, "entitlements")
            passwords = service.Passwords(settings.password_memory_kib, settings.password_time_cost)
            async with db.transaction() as session:
                user = await service.ensure_admin(session, passwords, args.email, password)
                user.password_hash = await passwords.hash(password)
        finally:
            await db.dispose()

    try:
        asyncio.run(run())
    except NotMigrated as exc:
        print(f"reelgate: {exc}", file=sys.stderr)
        return 2
    print(f"admin {args.email.strip().lower()} is ready")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reelgate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    node = commands.add_parser("entitlements", help="run the entitlements node (port 8002)")
    node.add_argument("--host", default=None)
    node.add_argument("--port", type=int, default=None)
    node.set_defaults(run=cmd_entitlements)

    media = commands.add_parser("media", help="run a media node (GET/HEAD /stream; port 8101)")
    media.add_argument("--host", default=None)
    media.add_argument("--port", type=int, default=None)
    media.add_argument("--unix-socket", type=Path, default=None, metavar="PATH",
                       help="also listen on this unix socket (`reelgate cluster`: nginx's way in)")
    media.set_defaults(run=cmd_media)

    catalog = commands.add_parser("catalog", help="run the catalog node (port 8001)")
    catalog.add_argument("--host", default=None)
    catalog.add_argument("--port", type=int, default=None)
    catalog.set_defaults(run=cmd_catalog)

    ingest = commands.add_parser(
        "ingest", help="create a movie from a video file on disk (probe, poster, event)"
    )
    ingest.add_argument("file", type=Path, metavar="FILE")
    ingest.add_argument("--title", required=True)
    ingest.add_argument("--description", default="")
    ingest.add_argument("--genre", action="append", help="repeat for several genres")
    ingest.add_argument("--year", type=int, default=None)
    ingest.add_argument("--age-rating", default=None)
    ingest.set_defaults(run=cmd_ingest)

    worker = commands.add_parser(
        "worker", help="run the event listeners: plan joins, new-movie e-mail (metrics on 8009)"
    )
    worker.add_argument("--host", default=None)
    worker.add_argument("--port", type=int, default=None, help="metrics port (default 8009)")
    worker.set_defaults(run=cmd_worker)

    demo = commands.add_parser(
        "demo", help="the whole system in one process (SQLite, in-process cache), seeded"
    )
    demo.add_argument("--port", type=int, default=None, help="default REELGATE_PORT (8080)")
    demo.set_defaults(run=cmd_demo)

    cluster = commands.add_parser(
        "cluster", help="run every node as a process with nginx in front (needs PostgreSQL, Redis)"
    )
    cluster.add_argument("--media-nodes", type=int, default=3)
    cluster.add_argument("--port", type=int, default=None, help="balancer port (REELGATE_PORT)")
    cluster.add_argument("--catalog-port", type=int, default=8001)
    cluster.add_argument("--entitlements-port", type=int, default=8002)
    cluster.add_argument("--media-base-port", type=int, default=8101)
    cluster.add_argument("--worker-port", type=int, default=8009)
    cluster.add_argument("--status-port", type=int, default=8089, help="nginx status, loopback")
    cluster.add_argument("--balance", choices=["least_conn", "hash"], default="least_conn")
    cluster.add_argument(
        "--login-rate", default="30r/m", metavar="RATE",
        help="sign-ins per client address the balancer lets through (nginx rate, e.g. 30r/m)",
    )
    cluster.add_argument("--login-burst", type=int, default=20,
                         help="sign-ins per address allowed above the rate at once")
    cluster.add_argument(
        "--media-over-tcp", action="store_true",
        help="nginx reaches the media nodes on their TCP ports (default: unix sockets, ~30%% "
             "more throughput on one machine; docs/benchmarks.md)",
    )
    cluster.add_argument(
        "--no-restart", action="store_true",
        help="leave a node that dies stopped (default: restart it after a back-off)",
    )
    cluster.set_defaults(run=cmd_cluster)

    balancer = commands.add_parser("balancer", help="the nginx balancer's configuration")
    balancer_commands = balancer.add_subparsers(dest="balancer_command", required=True)
    render = balancer_commands.add_parser(
        "render", help="render nginx.conf from the node addresses (docker-compose, other hosts)"
    )
    render.add_argument("--media", action="append", required=True, metavar="HOST:PORT",
                        help="a media node; repeat, or separate with commas")
    render.add_argument("--catalog", default="127.0.0.1:8001", metavar="HOST:PORT")
    render.add_argument("--entitlements", default="127.0.0.1:8002", metavar="HOST:PORT")
    render.add_argument("--listen", default="127.0.0.1:8080", help="[ADDRESS:]PORT of the balancer")
    render.add_argument("--status-listen", default="127.0.0.1:8089",
                        help="[ADDRESS:]PORT of nginx stub_status (loopback only)")
    render.add_argument("--balance", choices=["least_conn", "hash"], default="least_conn")
    render.add_argument("--max-upload", default=None, help="default REELGATE_MAX_UPLOAD_BYTES")
    render.add_argument("--run-dir", default="var/cluster/nginx",
                        help="pid file and temp directories of nginx")
    render.add_argument("--static-root", default=None, help="the web player's files")
    render.add_argument("--mime-types", default=None,
                        help="nginx mime.types (default: looked up on this machine)")
    render.add_argument("--access-log", default=None, help="default RUN_DIR/access.log")
    render.add_argument("--error-log", default=None, help="default RUN_DIR/error.log")
    render.add_argument("--output", default="-", help="file to write, - for stdout")
    render.add_argument("--check", action="store_true", help="run `nginx -t` on the written file")
    render.set_defaults(run=cmd_balancer_render)

    migrate = commands.add_parser("migrate", help="apply database migrations of every service")
    migrate.add_argument("services", nargs="*", metavar="SERVICE", help=f"any of {SERVICES}; default: all")
    migrate.set_defaults(run=cmd_migrate)

    users = commands.add_parser("users", help="user administration")
    user_commands = users.add_subparsers(dest="users_command", required=True)
    create_admin = user_commands.add_parser(
        "create-admin", help="create or promote an admin; reads the password from stdin"
    )
    create_admin.add_argument("email")
    create_admin.set_defaults(run=cmd_create_admin)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    setup_logging(settings.log_level)
    return int(args.run(args, settings) or 0)


if __name__ == "__main__":
    sys.exit(main())
