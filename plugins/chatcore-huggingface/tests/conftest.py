"""Fixtures of the chatcore-huggingface tests: stand-in servers for the HF router
(``openai`` flavor) and a TGI server, and a client factory isolated from the environment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import chatcore
from chatcore.testing.server import StandInServer

#: A token shaped like a real one; it must never appear in any error text.
TOKEN = "hf_TESTsecretTOKEN0123456789"

ClientFactory = Callable[..., chatcore.Client]


@pytest.fixture
def router() -> Iterator[StandInServer]:
    """A stand-in HF router (OpenAI-compatible) that requires :data:`TOKEN`."""
    with StandInServer(flavor="openai", api_key=TOKEN) as server:
        yield server


@pytest.fixture
def tgi() -> Iterator[StandInServer]:
    """A stand-in TGI server (no auth, TGI's validation rules and error bodies)."""
    with StandInServer(flavor="tgi") as server:
        yield server


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    """``make_client(base_url, **options)``: a client for the huggingface provider with
    :data:`TOKEN`, no retries and an empty environment; closed at teardown."""
    clients: list[chatcore.Client] = []

    def factory(
        base_url: str,
        *,
        environ: dict[str, str] | None = None,
        token: str | None = TOKEN,
        **options: Any,
    ) -> chatcore.Client:
        settings: dict[str, Any] = {"base_url": base_url, **options}
        if token is not None:
            settings["api_key"] = token
        kwargs: dict[str, Any] = {"max_retries": 0}
        if "retry" in options:
            kwargs = {"retry": settings.pop("retry")}
        client = chatcore.Client(
            providers={"huggingface": settings}, environ=environ or {}, **kwargs
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def token() -> str:
    """The test token (see :data:`TOKEN`)."""
    return TOKEN
