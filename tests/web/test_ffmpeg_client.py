"""ffprobe and ffmpeg as players of the stream URL: what non-browser clients see.

The URL is the one POST /api/playback hands out (/stream/ID?token=...); the
seek test proves that ffmpeg jumps to the middle with one byte-range request
instead of downloading everything before it.
"""

from __future__ import annotations

import re

import pytest

from tests.web.conftest import VIEWER, Api, run
from tests.web.media import ffprobe, keyframe_offset, playback_url, redact

TITLES = ["Test Pattern Sunrise", "The Mandelbrot Chase", "Life of Cells"]


@pytest.mark.parametrize("title", TITLES)
async def test_ffprobe_reports_duration_and_codecs(api: Api, title: str) -> None:
    token = await api.login(*VIEWER)
    movie = await api.movie(title)
    async with playback_url(api, token, movie["id"], "pytest-ffprobe") as url:
        probe = await ffprobe(url)
    streams = {s["codec_type"]: s for s in probe["streams"]}
    assert streams["video"]["codec_name"] == "h264" == movie["media"]["video_codec"]
    assert streams["audio"]["codec_name"] == "aac" == movie["media"]["audio_codec"]
    assert (streams["video"]["width"], streams["video"]["height"]) == (640, 360)
    assert "mp4" in probe["format"]["format_name"]
    duration = float(probe["format"]["duration"])
    assert duration == pytest.approx(20.0, abs=0.1)
    assert duration == pytest.approx(movie["media"]["duration_s"], abs=0.05)


async def test_ffmpeg_seeks_to_the_middle_with_a_range_request(api: Api) -> None:
    token = await api.login(*VIEWER)
    movie = await api.movie("The Mandelbrot Chase")
    size = movie["media"]["size_bytes"]
    async with playback_url(api, token, movie["id"], "pytest-ffmpeg") as url:
        keyframe = await keyframe_offset(url, 10.0)
        code, _, log = await run(
            "ffmpeg",
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "debug",
            "-ss",
            "10",
            "-i",
            url,
            "-frames:v",
            "5",
            "-f",
            "null",
            "-",
        )
    assert code == 0, redact(log[-3000:])
    assert re.search(r"frame=\s*5\b", log), redact(log[-3000:])  # five frames decoded
    ranges = [int(m) for m in re.findall(r"Range: bytes=(\d+)-", log)]
    assert ranges[0] == 0  # the header (moov) first ...
    assert any(keyframe - 64 * 1024 <= start <= keyframe for start in ranges[1:]), (
        f"no request near the keyframe at byte {keyframe}: {ranges}"
    )  # ... then straight to the middle
    read = int(re.search(r"Statistics: (\d+) bytes read", log).group(1))  # type: ignore[union-attr]
    assert read < size / 4, f"read {read} of {size} bytes: the seek did not skip the start"
