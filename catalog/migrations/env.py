"""Alembic environment of the catalog service (driven by reelgate.migrate)."""

from alembic import context

from catalog.models import Base
from reelgate.migrate import run_env

run_env(Base.metadata, context)
