"""Image parts from URLs, files and bytes; a request with images accepted by the server."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatcore._images import (
    DEFAULT_MAX_IMAGE_BYTES,
    image_part,
    sniff_image_type,
    user_message_with_images,
)
from chatcore.exceptions import ValidationError
from chatcore.models import ImagePart, ImageURL, Message, TextPart

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 20
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x01" * 10
GIF = b"GIF89a" + b"\x01\x00\x01\x00" + b"\x00" * 10
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 10


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@pytest.mark.parametrize(
    ("data", "mime"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp")],
)
def test_bytes_become_data_urls_with_sniffed_type(data: bytes, mime: str) -> None:
    assert sniff_image_type(data) == mime
    part = image_part(data)
    assert part == ImagePart(ImageURL(_data_url(mime, data)))
    assert image_part(bytearray(data), detail="low").image_url.detail == "low"
    assert image_part(memoryview(data)).image_url.url == _data_url(mime, data)


def test_gif87_and_unknown_magic() -> None:
    assert sniff_image_type(b"GIF87a....") == "image/gif"
    assert sniff_image_type(b"RIFF\x00\x00\x00\x00WAVE") is None
    assert sniff_image_type(b"%PDF-1.7") is None
    assert sniff_image_type(b"") is None


def test_given_mime_type_wins() -> None:
    data = b"BM\x00\x00 a bitmap"
    with pytest.raises(ValidationError, match="not a PNG, JPEG, GIF or WebP"):
        image_part(data)
    part = image_part(data, mime_type="image/bmp")
    assert part.image_url.url == _data_url("image/bmp", data)
    with pytest.raises(ValidationError, match="mime_type"):
        image_part(data, mime_type="text/plain")


def test_files(tmp_path: Path) -> None:
    png = tmp_path / "pic.png"
    png.write_bytes(PNG)
    expected = _data_url("image/png", PNG)
    assert image_part(png).image_url.url == expected
    assert image_part(str(png), detail="high") == ImagePart(ImageURL(expected, "high"))

    no_ext = tmp_path / "photo"
    no_ext.write_bytes(JPEG)  # the type comes from the bytes, not the name
    assert image_part(no_ext).image_url.url.startswith("data:image/jpeg;base64,")

    with pytest.raises(ValidationError, match="no such file") as info:
        image_part(tmp_path / "missing.png")
    assert info.value.problems[0][0] == "image"
    with pytest.raises(ValidationError, match="must start with http"):
        image_part("example.com/cat.png")
    with pytest.raises(ValidationError, match="not a regular file"):
        image_part(tmp_path)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValidationError, match="is empty"):
        image_part(empty)
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ValidationError, match="not a PNG"):
        image_part(text)


def test_size_cap(tmp_path: Path) -> None:
    assert DEFAULT_MAX_IMAGE_BYTES == 20 * 1024 * 1024
    big = tmp_path / "big.png"
    big.write_bytes(PNG + b"\x00" * 100)
    with pytest.raises(ValidationError, match="over the limit of 64 bytes"):
        image_part(big, max_bytes=64)
    with pytest.raises(ValidationError, match="over the limit"):
        image_part(PNG + b"\x00" * 100, max_bytes=64)
    with pytest.raises(ValidationError, match="over the limit"):
        image_part(_data_url("image/png", PNG), max_bytes=8)
    with pytest.raises(ValidationError, match="max_bytes"):
        image_part(PNG, max_bytes=0)
    # the default cap: a sparse 21 MB file is refused before it is read
    huge = tmp_path / "huge.png"
    with huge.open("wb") as fh:
        fh.write(PNG)
        fh.truncate(21 * 1024 * 1024)
    with pytest.raises(ValidationError, match=r"21\.0 MB, over the limit of 20\.0 MB"):
        image_part(huge)


def test_urls() -> None:
    url = "https://example.com/cat.png?x=1"
    assert image_part(url) == ImagePart.from_url(url)
    assert image_part("HTTP://example.com/a.jpg", detail="auto").image_url.detail == "auto"
    data_url = _data_url("image/png", PNG)
    assert image_part(data_url).image_url.url == data_url
    for bad, match in [
        ("https://", "not a valid URL"),
        ("https://exa mple.com/x.png", "not a valid URL"),
        ("data:text/plain;base64,aGk=", "not an image type"),
        ("data:image/png,rawdata", "base64"),
        ("data:image/png;base64,@@@", "not valid base64"),
        ("data:image/png;base64,", "empty"),
        ("data:nothing", "must look like"),
        ("", "expected a URL"),
    ]:
        with pytest.raises(ValidationError, match=match):
            image_part(bad)


def test_bad_arguments() -> None:
    with pytest.raises(ValidationError, match="detail"):
        image_part(PNG, detail="medium")
    with pytest.raises(ValidationError, match="got int"):
        image_part(42)  # type: ignore[arg-type]


@settings(deadline=None)
@given(st.binary(min_size=1, max_size=64))
def test_data_url_round_trip(payload: bytes) -> None:
    data = PNG + payload
    url = image_part(data).image_url.url
    header, _, encoded = url.partition(",")
    assert header == "data:image/png;base64"
    assert base64.b64decode(encoded) == data
    assert image_part(url).image_url.url == url  # a data: URL is accepted back as is


def test_user_message_with_images(tmp_path: Path) -> None:
    gif = tmp_path / "a.gif"
    gif.write_bytes(GIF)
    ready = ImagePart.from_url("https://example.com/x.webp", "high")
    msg = user_message_with_images(
        "What is in these?", "https://example.com/a.png", gif, WEBP, ready, detail="low"
    )
    assert isinstance(msg, Message) and msg.role == "user"
    assert isinstance(msg.content, tuple)
    assert msg.content[0] == TextPart("What is in these?")
    parts: list[Any] = list(msg.content[1:])
    assert [p.image_url.detail for p in parts] == ["low", "low", "low", "high"]
    assert parts[1].image_url.url == _data_url("image/gif", GIF)
    assert msg.text == "What is in these?"

    only_images = user_message_with_images(None, PNG)
    assert isinstance(only_images.content, tuple) and len(only_images.content) == 1

    with pytest.raises(ValidationError) as info:
        user_message_with_images("x", PNG, tmp_path / "nope.png", b"junk")
    assert [p for p, _ in info.value.problems] == ["images[1]", "images[2]"]
    with pytest.raises(ValidationError, match="text or at least one image"):
        user_message_with_images(None)


def test_request_with_images_is_accepted(server: Any, make_client: Any, tmp_path: Path) -> None:
    png = tmp_path / "chart.png"
    png.write_bytes(PNG)
    msg = user_message_with_images(
        "Describe the chart.", png, "https://example.com/b.jpg", detail="high"
    )
    response = make_client().chat("wire:gpt-4o-mini", [msg])
    assert response.text.endswith("You said: Describe the chart.")
    sent = server.requests[0].json()["messages"][0]
    assert sent == {
        "role": "user",
        "content": [
            {"type": "text", "text": "Describe the chart."},
            {
                "type": "image_url",
                "image_url": {"url": _data_url("image/png", PNG), "detail": "high"},
            },
            {
                "type": "image_url",
                "image_url": {"url": "https://example.com/b.jpg", "detail": "high"},
            },
        ],
    }
    # without detail the key is left out, which the server accepts as well
    make_client().chat("wire:gpt-4o-mini", [user_message_with_images("x", PNG)])
    assert server.requests[1].json()["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": _data_url("image/png", PNG)},
    }
