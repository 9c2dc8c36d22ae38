"""The pure parts of ingest: the Content-Digest header and what is accepted
from an ffprobe result (no processes, no database)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from catalog.media import Unplayable, media_info, parse_content_digest

DIGEST = hashlib.sha256(b"video").digest()
B64 = base64.b64encode(DIGEST).decode()


@pytest.mark.parametrize(
    "header",
    [
        f"sha-256=:{B64}:",
        f"SHA-256=:{B64}:",
        f"sha-512=:AAAA:, sha-256=:{B64}:",
        f" sha-256 = :{B64}: ",
    ],
)
def test_content_digest_sha256(header: str) -> None:
    assert parse_content_digest(header) == DIGEST.hex()


@pytest.mark.parametrize("header", [None, "", "sha-512=:AAAA:", "md5=:AAAA:"])
def test_content_digest_without_sha256_is_ignored(header: str | None) -> None:
    assert parse_content_digest(header) is None


@pytest.mark.parametrize(
    "header",
    [f"sha-256={B64}", "sha-256=:not base64!:", "sha-256=:YWJj:", f'sha-256="{B64}"', "sha-256"],
)
def test_malformed_content_digest(header: str) -> None:
    with pytest.raises(ValueError):
        parse_content_digest(header)


def probe(streams: list[dict[str, Any]], **fmt: Any) -> dict[str, Any]:
    return {
        "streams": streams,
        "format": {
            "format_name": "mov,mp4,m4a,3gp,3g2,mj2",
            "duration": "10.0",
            "bit_rate": "800000",
            **fmt,
        },
    }


VIDEO = {
    "codec_type": "video",
    "codec_name": "h264",
    "width": 1920,
    "height": 1080,
    "duration": "10.0",
    "bit_rate": "700000",
}
AUDIO = {"codec_type": "audio", "codec_name": "aac", "duration": "10.0", "bit_rate": "96000"}


def test_media_info_from_a_probe() -> None:
    info = media_info(probe([AUDIO, VIDEO]), size=1_100_000, sha256="ab" * 32)
    assert info.as_dict() == {
        "size_bytes": 1_100_000, "content_type": "video/mp4", "sha256": "ab" * 32,
        "width": 1920, "height": 1080, "video_codec": "h264", "audio_codec": "aac",
        "bitrate": 800000, "duration_s": 10.0,
    }  # fmt: skip


def test_quicktime_brand() -> None:
    info = media_info(probe([VIDEO], tags={"major_brand": "qt  "}), size=10**6, sha256="0" * 64)
    assert info.content_type == "video/quicktime"


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (probe([AUDIO]), "no video stream"),
        (probe([{**VIDEO, "disposition": {"attached_pic": 1}}, AUDIO]), "no video stream"),
        (probe([{**VIDEO, "width": 0}]), "no video stream"),
        (probe([{**VIDEO, "duration": "nan"}], duration="nan"), "no duration"),
        (probe([{**VIDEO, "duration": "N/A"}], duration="N/A"), "no duration"),
        (probe([VIDEO], format_name="hls"), "unsupported container"),
        (probe([VIDEO], format_name="image2"), "unsupported container"),
        ({"streams": [VIDEO], "format": {}}, "unsupported container"),
        ({}, "no video stream"),
    ],
)
def test_what_is_not_a_playable_video(result: dict[str, Any], reason: str) -> None:
    with pytest.raises(Unplayable, match=reason):
        media_info(result, size=10**6, sha256="0" * 64)


def test_a_file_smaller_than_its_index_says_is_truncated() -> None:
    # 10 s at 796 kbit/s of declared stream data is ~995 kB: 500 kB cannot hold it.
    with pytest.raises(Unplayable, match="truncated"):
        media_info(probe([VIDEO, AUDIO]), size=500_000, sha256="0" * 64)
