"""Render the nginx balancer config from the deployment's node list."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "nginx" / "reelgate.conf.template"
STATIC_ROOT = Path(__file__).resolve().parent.parent / "web"
BALANCE_MODES = ("least_conn", "hash")


@dataclass
class Topology:
    listen: str  # "127.0.0.1:8080" or "8080"
    media: list[str]  # "host:port" of each media node
    catalog: str
    entitlements: str
    run_dir: Path
    static_root: Path = STATIC_ROOT
    status_listen: str = "127.0.0.1:8089"
    balance: str = "least_conn"
    max_upload: str = "20g"
    login_rate: str = "30r/m"
    login_burst: int = 20
    workers: str = "auto"
    access_log: str = field(default="")  # default: RUN_DIR/access.log; "/dev/stdout" in a container
    error_log: str = field(default="")  # default: RUN_DIR/error.log; "stderr" in a container
    mime_types: str = field(default="")  # default: found on this machine (find_mime_types)


def find_mime_types() -> str:
    for candidate in ("/etc/nginx/mime.types", "/usr/local/nginx/conf/mime.types"):
        if Path(candidate).exists():
            return candidate
    raise FileNotFoundError("nginx mime.types not found: install nginx (scripts/install-system-deps.sh)")


def render(topology: Topology) -> str:
    if topology.balance not in BALANCE_MODES:
        raise ValueError(f"balance must be one of {BALANCE_MODES}")
    if not topology.media:
        raise ValueError("at least one media node is needed")
    # least_conn spreads load evenly; hash keeps one movie on one node (page
    # cache locality), remapping only 1/N of movies when a node goes away.
    balance = "least_conn;" if topology.balance == "least_conn" else "hash $reelgate_movie consistent;"
    servers = "\n        ".join(
        f"server {address} max_fails=1 fail_timeout=5s;" for address in topology.media
    )
    values = {
        "WORKERS": topology.workers,
        "RUN_DIR": str(topology.run_dir),
        "MIME_TYPES": topology.mime_types or find_mime_types(),
        "ACCESS_LOG": topology.access_log or str(topology.run_dir / "access.log"),
        "ERROR_LOG": topology.error_log or str(topology.run_dir / "error.log"),
        "LOGIN_RATE": topology.login_rate,
        "LOGIN_BURST": str(topology.login_burst),
        "MEDIA_BALANCE": balance,
        "MEDIA_SERVERS": servers,
        "CATALOG_ADDR": topology.catalog,
        "ENTITLEMENTS_ADDR": topology.entitlements,
        "LISTEN": topology.listen,
        "STATUS_LISTEN": topology.status_listen,
        "MAX_UPLOAD": topology.max_upload,
        "STATIC_ROOT": str(topology.static_root),
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@@{name}@@", value)
    if "@@" in text:
        raise ValueError("unfilled placeholder in the nginx template")
    return text


def write_config(topology: Topology) -> Path:
    topology.run_dir.mkdir(parents=True, exist_ok=True)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (topology.run_dir / sub).mkdir(exist_ok=True)
    path = topology.run_dir / "nginx.conf"
    path.write_text(render(topology))
    return path


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise FileNotFoundError("nginx not found: install it (scripts/install-system-deps.sh)")
    return found


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a rendered file (prefix = its directory)."""
    return subprocess.run(
        [nginx_binary(), "-t", "-p", str(path.parent), "-c", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
