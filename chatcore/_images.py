"""Image content parts from URLs, files and bytes.

:func:`image_part` accepts an ``http(s)`` URL, a ``data:`` URL, a local file (``str`` or
``os.PathLike``) or raw bytes. Files and bytes become a base64 ``data:`` URL whose MIME type
is sniffed from the magic bytes (PNG, JPEG, GIF, WebP) unless ``mime_type`` is given.
Every problem (unknown type, missing file, over the size cap, bad ``detail``) raises
:class:`~chatcore.ValidationError` before anything is sent.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chatcore.exceptions import ValidationError
from chatcore.models import ImagePart, Message, TextPart

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "image_part",
    "sniff_image_type",
    "user_message_with_images",
]

#: The default size cap of an inlined image (20 MB, OpenAI's per-image limit).
DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024

_DETAILS = ("auto", "low", "high")
_MIME_RE = re.compile(r"^image/[A-Za-z0-9][A-Za-z0-9.+-]*$")
_DATA_URL_RE = re.compile(r"^data:([^;,]*)((?:;[^;,]*)*),(.*)$", re.DOTALL)


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type of PNG, JPEG, GIF or WebP image bytes, else ``None``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1024 * 1024 else f"{n} bytes"


def _check_detail(detail: Any, path: str) -> None:
    if detail is not None and detail not in _DETAILS:
        raise ValidationError(
            [(f"{path}.detail", f"expected 'auto', 'low' or 'high', got {detail!r}")]
        )


def _check_mime(mime_type: Any, path: str) -> None:
    if mime_type is not None and not (isinstance(mime_type, str) and _MIME_RE.match(mime_type)):
        raise ValidationError(
            [
                (
                    f"{path}.mime_type",
                    f"expected an image MIME type like 'image/png', got {mime_type!r}",
                )
            ]
        )


def _from_bytes(data: bytes, mime_type: str | None, max_bytes: int, path: str, what: str) -> str:
    if not data:
        raise ValidationError([(path, f"{what} is empty")])
    if len(data) > max_bytes:
        raise ValidationError(
            [(path, f"{what} is {_size(len(data))}, over the limit of {_size(max_bytes)}")]
        )
    mime = mime_type or sniff_image_type(data)
    if mime is None:
        raise ValidationError(
            [
                (
                    path,
                    f"{what} is not a PNG, JPEG, GIF or WebP image (unknown magic bytes "
                    f"{data[:8].hex(' ')}); pass mime_type=... if it is another image type",
                )
            ]
        )
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _check_data_url(url: str, max_bytes: int, path: str) -> None:
    match = _DATA_URL_RE.match(url)
    if match is None:
        raise ValidationError([(path, "a data: URL must look like data:image/png;base64,<data>")])
    mime, flags, payload = match.group(1), match.group(2), match.group(3)
    if not _MIME_RE.match(mime):
        raise ValidationError([(path, f"the data: URL's type {mime!r} is not an image type")])
    if "base64" not in flags.split(";"):
        raise ValidationError([(path, "the data: URL must be base64-encoded (;base64,)")])
    try:
        decoded = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationError(
            [(path, f"the data: URL's payload is not valid base64 ({exc})")]
        ) from exc
    if not decoded:
        raise ValidationError([(path, "the data: URL's image is empty")])
    if len(decoded) > max_bytes:
        raise ValidationError(
            [(path, f"the image is {_size(len(decoded))}, over the limit of {_size(max_bytes)}")]
        )


def _from_file(file: Path, mime_type: str | None, max_bytes: int, path: str) -> str:
    try:
        info = file.stat()
    except FileNotFoundError:
        hint = ""
        head, slash, _ = str(file).partition("/")
        if slash and "." in head.strip(".") and not head.startswith("."):
            hint = " (a URL must start with http:// or https://)"
        raise ValidationError([(path, f"no such file: {str(file)!r}{hint}")]) from None
    except OSError as exc:
        raise ValidationError(
            [(path, f"cannot read {str(file)!r}: {exc.strerror or exc}")]
        ) from exc
    if not file.is_file():
        raise ValidationError([(path, f"{str(file)!r} is not a regular file")])
    if info.st_size > max_bytes:
        raise ValidationError(
            [
                (
                    path,
                    f"{str(file)!r} is {_size(info.st_size)}, over the limit of {_size(max_bytes)}",
                )
            ]
        )
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ValidationError(
            [(path, f"cannot read {str(file)!r}: {exc.strerror or exc}")]
        ) from exc
    return _from_bytes(data, mime_type, max_bytes, path, repr(str(file)))


def image_part(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    detail: str | None = None,
    mime_type: str | None = None,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
) -> ImagePart:
    """An image content part (``{"type": "image_url", "image_url": {...}}``).

    ``source`` is an ``http(s)`` URL (sent as is), a ``data:`` URL (checked: image type,
    base64, size), a local file path, or the image bytes; files and bytes are inlined as a
    base64 ``data:`` URL with the MIME type sniffed from the magic bytes (PNG, JPEG, GIF,
    WebP) or ``mime_type``. ``detail`` is ``"auto"``, ``"low"`` or ``"high"``; ``max_bytes``
    caps inlined images (default 20 MB). Raises :class:`~chatcore.ValidationError`."""
    return _image_part(source, detail, mime_type, max_bytes, "image")


def _image_part(
    source: Any, detail: str | None, mime_type: str | None, max_bytes: int, path: str
) -> ImagePart:
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise ValidationError([("max_bytes", f"expected an integer >= 1, got {max_bytes!r}")])
    _check_detail(detail, path)
    _check_mime(mime_type, path)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return ImagePart.from_url(
            _from_bytes(bytes(source), mime_type, max_bytes, path, "the image"), detail
        )
    if isinstance(source, str):
        lowered = source[:8].lower()
        if lowered.startswith(("http://", "https://")):
            parts = urlsplit(source)
            if not parts.netloc or any(c.isspace() for c in source):
                raise ValidationError([(path, f"{source!r} is not a valid URL")])
            return ImagePart.from_url(source, detail)
        if lowered.startswith("data:"):
            _check_data_url(source, max_bytes, path)
            return ImagePart.from_url(source, detail)
        if not source:
            raise ValidationError([(path, "expected a URL, a file path or bytes, got ''")])
        return ImagePart.from_url(_from_file(Path(source), mime_type, max_bytes, path), detail)
    if isinstance(source, os.PathLike):
        return ImagePart.from_url(
            _from_file(Path(os.fspath(source)), mime_type, max_bytes, path), detail
        )
    raise ValidationError(
        [(path, f"expected a URL, a file path or bytes, got {type(source).__name__}")]
    )


def user_message_with_images(
    text: str | None,
    *images: str | os.PathLike[str] | bytes | ImagePart,
    detail: str | None = None,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
) -> Message:
    """A ``user`` message with ``text`` (may be ``None``) followed by the images (anything
    :func:`image_part` accepts, or ready :class:`~chatcore.ImagePart` objects). Every bad
    image is reported in one :class:`~chatcore.ValidationError` (paths ``images[i]``)."""
    parts: list[Any] = []
    if text is not None:
        if not isinstance(text, str):
            raise ValidationError([("text", f"expected a string, got {type(text).__name__}")])
        parts.append(TextPart(text))
    problems: list[tuple[str, str]] = []
    for i, image in enumerate(images):
        if isinstance(image, ImagePart):
            parts.append(image)
            continue
        try:
            parts.append(_image_part(image, detail, None, max_bytes, f"images[{i}]"))
        except ValidationError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ValidationError(problems)
    if not parts:
        raise ValidationError([("images", "a message needs text or at least one image")])
    return Message(role="user", content=tuple(parts))
