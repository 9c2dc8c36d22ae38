"""The object key format, shared by every backend.

A key is `sha256/<aa>/<bb>/<64 lowercase hex>[<suffix>]` where `aa` and `bb` are
the first two byte pairs of the digest (they fan the objects out over 65536
directories) and the optional suffix matches `\\.[a-z0-9]{1,8}` (e.g. `.jpg`, so
a stored file keeps a useful extension for Content-Type sniffing).

The format is deliberately closed: validation is a full match against one
pattern, so `..`, absolute paths, backslashes, percent escapes, NUL bytes,
empty segments, uppercase hex and wrong lengths are all refused by construction
rather than by a list of known-bad inputs.
"""

from __future__ import annotations

import re

from storage.base import InvalidKey

_KEY_RE = re.compile(r"sha256/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})((?:\.[a-z0-9]{1,8})?)")
_SUFFIX_RE = re.compile(r"(?:\.[a-z0-9]{1,8})?")
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")

KEY_PREFIX = "sha256"


def validate_suffix(suffix: str) -> str:
    """Return `suffix` if it is '' or valid (such as `.jpg`); raise InvalidKey otherwise."""
    if not isinstance(suffix, str) or _SUFFIX_RE.fullmatch(suffix) is None:
        raise InvalidKey(f"invalid key suffix {suffix!r}: expected '' or '.' + 1-8 of [a-z0-9]")
    return suffix


def make_key(sha256_hex: str, suffix: str = "") -> str:
    """Build the key for a lowercase hex SHA-256 digest and an optional suffix."""
    if not isinstance(sha256_hex, str) or _DIGEST_RE.fullmatch(sha256_hex) is None:
        raise InvalidKey(f"invalid SHA-256 digest {sha256_hex!r}")
    validate_suffix(suffix)
    return f"{KEY_PREFIX}/{sha256_hex[:2]}/{sha256_hex[2:4]}/{sha256_hex}{suffix}"


def parse_key(key: str) -> tuple[str, str]:
    """Split a valid key into (digest, suffix); raise InvalidKey for anything else."""
    # fullmatch, not match + `$`: `$` would also accept a trailing newline.
    m = _KEY_RE.fullmatch(key) if isinstance(key, str) else None
    if m is None:
        raise InvalidKey(f"invalid object key {key!r}")
    aa, bb, digest, suffix = m.groups()
    if digest[:2] != aa or digest[2:4] != bb:
        raise InvalidKey(f"invalid object key {key!r}: fan-out directories do not match digest")
    return digest, suffix


def is_valid_key(key: str) -> bool:
    """True if `key` is well-formed (says nothing about whether the object exists)."""
    try:
        parse_key(key)
    except InvalidKey:
        return False
    return True
