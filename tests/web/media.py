"""ffprobe/ffmpeg as HTTP clients of the stream, and playback sessions for them."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tests.web.conftest import Api, run

TOKEN_RE = re.compile(r"token=[^&\s'\"]+")


def redact(text: str) -> str:
    return TOKEN_RE.sub("token=<redacted>", text)


@asynccontextmanager
async def playback_url(api: Api, token: str, movie_id: str, client_id: str) -> AsyncIterator[str]:
    """An absolute stream URL of a fresh playback session, ended afterwards."""
    session = await api.call(
        "POST", "/api/playback", token, json={"movie_id": movie_id, "client_id": client_id}
    )
    try:
        yield api.base + session["stream_url"]
    finally:
        await api.call("DELETE", f"/api/playback/{session['session_id']}", token)


async def ffprobe(url: str) -> dict[str, Any]:
    code, out, err = await run(
        "ffprobe",
        "-v",
        "error",
        "-show_entries",
        "format=duration,format_name:stream=codec_type,codec_name,width,height",
        "-of",
        "json",
        url,
    )
    assert code == 0, redact(err)
    return json.loads(out)


async def keyframe_offset(url: str, at_s: float) -> int:
    """Byte offset of the last video keyframe at or before `at_s`, read over HTTP."""
    code, out, err = await run(
        "ffprobe",
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=pts_time,pos,flags",
        "-of",
        "json",
        url,
    )
    assert code == 0, redact(err)
    keyframes = [
        p
        for p in json.loads(out)["packets"]
        if "K" in p.get("flags", "") and float(p["pts_time"]) <= at_s + 1e-6
    ]
    return int(keyframes[-1]["pos"])
