"""The `reelgate` command: one entry point for every node and operator task."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Callable

from aiohttp import web

from reelgate.config import Settings, load_settings
from reelgate.logs import setup_logging
from reelgate.migrate import SERVICES, NotMigrated

log = logging.getLogger("reelgate")


def _serve(app_factory: Callable[[Settings], web.Application], default_port: int):
    def run(args: argparse.Namespace, settings: Settings) -> int:
        app = app_factory(settings)
        port = args.port or default_port
        try:
            web.run_app(app, host=args.host or settings.host, port=port, access_log=None,
                         print=lambda _: log.info("listening on %s:%d", args.host or settings.host, port))
        except NotMigrated as exc:
            print(f"reelgate: {exc}", file=sys.stderr)
            return 2
        return 0

    return run


def cmd_entitlements(args: argparse.Namespace, settings: Settings) -> int:
    from entitlements.app import create_app

    return _serve(create_app, 8002)(args, settings)


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
