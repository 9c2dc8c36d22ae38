"""The media node's shared resources, built by `server.app.create_app`."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from reelgate.config import Settings
from reelgate.kv import KeyValue
from reelgate.leases import LeaseStore
from server.access import StreamAccess
from server.media import MediaResolver
from server.open_files import OpenFiles
from storage.base import Storage


@dataclass
class Resources:
    settings: Settings
    kv: KeyValue
    leases: LeaseStore
    storage: Storage
    resolver: MediaResolver
    use_sendfile: bool
    open_files: OpenFiles
    access: StreamAccess | None = None  # set at start-up (the verifier may need the JWKS)


RESOURCES = web.AppKey("media", Resources)
