"""Developer helper: `python -m reelgate.autogen SERVICE "message"` writes a new
migration by comparing the models with a scratch SQLite database at head."""

from __future__ import annotations

import sys
import tempfile

from alembic import command
from sqlalchemy import create_engine

from reelgate.migrate import alembic_config


def main() -> None:
    service, message = sys.argv[1], sys.argv[2]
    with tempfile.NamedTemporaryFile(suffix=".db") as scratch:
        engine = create_engine(f"sqlite:///{scratch.name}")
        with engine.begin() as connection:
            config = alembic_config(service)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            command.revision(config, message=message, autogenerate=True)


if __name__ == "__main__":
    main()
