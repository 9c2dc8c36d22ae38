"""Alembic environment of the entitlements service (driven by reelgate.migrate)."""

from alembic import context

from entitlements.models import Base
from reelgate.migrate import run_env

run_env(Base.metadata, context)
