#!/usr/bin/env bash
# Install the system programs the test-suite runs for real (Debian 12).
#
#   PostgreSQL server  initdb/pg_ctl/postgres in /usr/lib/postgresql/<ver>/bin  (package: postgresql)
#   Redis              redis-server                                          (package: redis-server)
#   nginx              nginx (/usr/sbin/nginx)                               (package: nginx-light)
#   ffmpeg             ffmpeg + ffprobe                                      (package: ffmpeg)
#   promtool           promtool, checks prometheus/prometheus.yml            (package: prometheus)
#   wrk                wrk, load generator of `make bench`                   (package: wrk)
#   Chromium           chromium (/usr/bin/chromium), driven by Playwright in tests/web/  (package: chromium)
#
# Idempotent and quick (no apt, no network) when everything is present.
# As root: installs what is missing with apt-get (one `apt-get update` first).
# Not root: prints what is missing and how to install it, exits 1.
#
# The tests never use the system services these packages ship (the harness
# starts its own throw-away instances on free ports, see tests/harness/), so
# when we install the packages ourselves we keep the services from starting
# during installation (temporary policy-rc.d) and tell postgresql-common not
# to create its "main" cluster.
set -euo pipefail

missing_pkgs=()
missing_what=()

find_bin() {  # find_bin NAME -> first executable NAME on $PATH or in the usual sbin/bin dirs
    local name="$1" d
    local IFS=:
    for d in $PATH /usr/local/sbin /usr/sbin /sbin /usr/local/bin /usr/bin /bin; do
        if [[ -n "$d" && -f "$d/$name" && -x "$d/$name" ]]; then echo "$d/$name"; return 0; fi
    done
    return 1
}

check_all() {
    missing_pkgs=()
    missing_what=()
    pg_initdb=""
    local f
    for f in /usr/lib/postgresql/*/bin/initdb; do
        [[ -x "$f" && -x "${f%/initdb}/postgres" ]] || continue
        if [[ -z "$pg_initdb" ]] || [[ "$(printf '%s\n%s\n' "$pg_initdb" "$f" | sort -V | tail -n1)" == "$f" ]]; then
            pg_initdb="$f"
        fi
    done
    if [[ -z "$pg_initdb" ]]; then
        missing_pkgs+=(postgresql); missing_what+=("PostgreSQL server (/usr/lib/postgresql/*/bin/initdb)")
    fi
    redis_bin=$(find_bin redis-server) || { redis_bin=""; missing_pkgs+=(redis-server); missing_what+=("redis-server"); }
    nginx_bin=$(find_bin nginx) || { nginx_bin=""; missing_pkgs+=(nginx-light); missing_what+=("nginx"); }
    ffmpeg_bin=$(find_bin ffmpeg) || ffmpeg_bin=""
    ffprobe_bin=$(find_bin ffprobe) || ffprobe_bin=""
    if [[ -z "$ffmpeg_bin" || -z "$ffprobe_bin" ]]; then
        missing_pkgs+=(ffmpeg)
        [[ -z "$ffmpeg_bin" ]] && missing_what+=("ffmpeg")
        [[ -z "$ffprobe_bin" ]] && missing_what+=("ffprobe")
    fi
    # Playwright cannot download its own browser here; tests/web/ drives Debian's.
    chromium_bin=$(find_bin chromium) || { chromium_bin=""; missing_pkgs+=(chromium); missing_what+=("chromium"); }
    promtool_bin=$(find_bin promtool) || { promtool_bin=""; missing_pkgs+=(prometheus); missing_what+=("promtool"); }
    # The load generator of `make bench` (benchmarks/media.py, benchmarks/balancer.py).
    find_bin wrk >/dev/null || { missing_pkgs+=(wrk); missing_what+=("wrk"); }
    return 0
}

check_all

if ((${#missing_pkgs[@]})); then
    if [[ "$(id -u)" != 0 ]]; then
        echo "install-system-deps: missing: ${missing_what[*]}" >&2
        echo "install-system-deps: install them as root with:" >&2
        echo "    sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing_pkgs[*]}" >&2
        echo "  (or run this script as root: sudo bash scripts/install-system-deps.sh)" >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-system-deps: missing: ${missing_what[*]}; apt-get not available (Debian 12 expected)." >&2
        echo "  Install the equivalents of the Debian packages: ${missing_pkgs[*]}" >&2
        exit 1
    fi
    echo "install-system-deps: installing ${missing_pkgs[*]} (missing: ${missing_what[*]})" >&2

    # Do not let the packages start their system services during installation
    # (fails or hangs in containers without an init; we never use them anyway).
    created_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# temporary, from reelgate scripts/install-system-deps.sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    cleanup() { if [[ -n "$created_policy" ]]; then rm -f /usr/sbin/policy-rc.d; fi; }
    trap cleanup EXIT
    # No "main" cluster on 5432: the harness runs initdb itself.
    if [[ " ${missing_pkgs[*]} " == *" postgresql "* && ! -d /etc/postgresql ]]; then
        mkdir -p /etc/postgresql-common/createcluster.d
        printf '# from reelgate scripts/install-system-deps.sh: tests start their own clusters\ncreate_main_cluster = false\n' \
            >/etc/postgresql-common/createcluster.d/reelgate-no-main-cluster.conf
    fi

    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing_pkgs[@]}"

    check_all
    if ((${#missing_pkgs[@]})); then
        # Package registered as installed but files gone: reinstall it.
        apt-get install -y -q --no-install-recommends --reinstall "${missing_pkgs[@]}"
        check_all
    fi
    if ((${#missing_pkgs[@]})); then
        echo "install-system-deps: still missing after apt-get install: ${missing_what[*]}" >&2
        exit 1
    fi
fi

# ---- one-line summary of versions
pg_ver=$("$pg_initdb" --version 2>/dev/null | awk '{print $3}')
redis_ver=$("$redis_bin" --version 2>/dev/null | sed -n 's/.* v=\([^ ]*\).*/\1/p')
nginx_ver=$("$nginx_bin" -v 2>&1 | sed -n 's|.*nginx/\([^ ]*\).*|\1|p')
ffmpeg_ver=$("$ffmpeg_bin" -hide_banner -version 2>/dev/null | awk 'NR==1{print $3}')
chromium_ver=$("$chromium_bin" --version 2>/dev/null | awk '{print $2}')
promtool_ver=$("$promtool_bin" --version 2>&1 | awk 'NR==1{print $3}')
echo "system deps OK: postgresql ${pg_ver:-?} ($(dirname "$pg_initdb")), redis ${redis_ver:-?}, nginx ${nginx_ver:-?}, ffmpeg ${ffmpeg_ver:-?} (+ffprobe), chromium ${chromium_ver:-?}, promtool ${promtool_ver:-?}"
