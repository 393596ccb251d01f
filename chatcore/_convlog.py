"""The CLI's conversation log: every prompt and answer of ``chatcore chat`` in a local
SQLite database (``logs.db`` in the user directory), grouped into conversations.

Only the command line writes here; the library never logs conversations. Text is stored
as shown on the terminal: known secrets and credential-shaped strings are masked.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import attrs

from chatcore._userdir import ensure_dir, user_dir
from chatcore.exceptions import ConfigurationError

__all__ = ["LOG_FILE", "ConversationLog", "LoggedTurn", "logs_path"]

LOG_FILE = "logs.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    name TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    model TEXT NOT NULL,
    system TEXT,
    prompt TEXT NOT NULL,
    attachments TEXT NOT NULL DEFAULT '[]',
    options TEXT NOT NULL DEFAULT '{}',
    schema TEXT,
    response TEXT NOT NULL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    duration_ms INTEGER,
    request_id TEXT,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_conversation ON responses (conversation_id);
PRAGMA user_version = 1;
"""


def logs_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the conversation log lives."""
    return user_dir(environ) / LOG_FILE


def new_id() -> str:
    """A time-ordered id: 12 hex digits of milliseconds, then 8 random ones."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(4)}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@attrs.frozen
class LoggedTurn:
    """One logged exchange: a prompt and its answer, in a conversation."""

    id: str
    conversation_id: str
    model: str
    system: str | None
    prompt: str
    attachments: tuple[str, ...]
    options: Mapping[str, Any]
    schema: str | None
    response: str
    input_tokens: int | None
    output_tokens: int | None
    duration_ms: int | None
    request_id: str | None
    created: str

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["attachments"] = list(self.attachments)
        data["options"] = dict(self.options)
        return data


_COLUMNS = (
    "id, conversation_id, model, system, prompt, attachments, options, schema, response,"
    " input_tokens, output_tokens, duration_ms, request_id, created"
)


def _turn(row: Sequence[Any]) -> LoggedTurn:
    values = list(row)
    values[5] = tuple(json.loads(values[5] or "[]"))
    values[6] = json.loads(values[6] or "{}")
    return LoggedTurn(*values)


class ConversationLog:
    """The SQLite conversation log at ``path`` (created owner-only on first write)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _connect(self, *, create: bool) -> Iterator[sqlite3.Connection | None]:
        if not create and not self.path.exists():
            yield None
            return
        if create:
            ensure_dir(self.path.parent)
            if not self.path.exists():  # owner-only from the first byte
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            connection = sqlite3.connect(self.path, timeout=10)
        except sqlite3.Error as exc:
            raise ConfigurationError(
                f"cannot open the conversation log {str(self.path)!r}: {exc}"
            ) from exc
        with closing(connection):
            try:
                connection.executescript(_SCHEMA)
                with connection:
                    yield connection
            except sqlite3.DatabaseError as exc:
                raise ConfigurationError(
                    f"the conversation log {str(self.path)!r} is unusable ({exc}); move it"
                    " away to start a new one"
                ) from exc

    def log(
        self,
        *,
        conversation_id: str | None,
        model: str,
        prompt: str,
        response: str,
        system: str | None = None,
        attachments: Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
        schema: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        duration_ms: int | None = None,
        request_id: str | None = None,
    ) -> LoggedTurn:
        """Store one exchange; a new conversation is started when ``conversation_id`` is
        ``None`` (named after the prompt's first line)."""
        with self._connect(create=True) as db:
            assert db is not None
            now = _now()
            if conversation_id is None:
                conversation_id = new_id()
                name = (prompt.strip().splitlines() or [""])[0][:60]
                db.execute(
                    "INSERT INTO conversations (id, model, name, created) VALUES (?, ?, ?, ?)",
                    (conversation_id, model, name, now),
                )
            turn = LoggedTurn(
                id=new_id(),
                conversation_id=conversation_id,
                model=model,
                system=system,
                prompt=prompt,
                attachments=tuple(attachments),
                options=dict(options or {}),
                schema=schema,
                response=response,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                duration_ms=duration_ms,
                request_id=request_id,
                created=now,
            )
            row = list(attrs.astuple(turn, recurse=False))
            row[5] = json.dumps(list(turn.attachments))
            row[6] = json.dumps(dict(turn.options), sort_keys=True, default=str)
            db.execute(f"INSERT INTO responses ({_COLUMNS}) VALUES ({', '.join('?' * 14)})", row)
            return turn

    def last_conversation_id(self) -> str | None:
        """The conversation of the most recent exchange, if any."""
        with self._connect(create=False) as db:
            if db is None:
                return None
            row = db.execute(
                "SELECT conversation_id FROM responses ORDER BY rowid DESC LIMIT 1"
            ).fetchone()
            return None if row is None else str(row[0])

    def conversation(self, conversation_id: str) -> list[LoggedTurn]:
        """Every exchange of one conversation, oldest first (``[]`` when unknown)."""
        with self._connect(create=False) as db:
            if db is None:
                return []
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM responses WHERE conversation_id = ? ORDER BY rowid",
                (conversation_id,),
            ).fetchall()
            return [_turn(r) for r in rows]

    def search(
        self,
        query: str | None = None,
        *,
        conversation_id: str | None = None,
        model: str | None = None,
        limit: int | None = 10,
    ) -> list[LoggedTurn]:
        """The newest ``limit`` exchanges (``None``: all) matching every filter given,
        returned oldest first; ``query`` matches prompt, system prompt or answer
        (case-insensitive substring)."""
        where, args = [], []
        if query:
            pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern += "%"
            where.append(
                "(prompt LIKE ? ESCAPE '\\' OR response LIKE ? ESCAPE '\\'"
                " OR system LIKE ? ESCAPE '\\')"
            )
            args += [pattern] * 3
        if conversation_id:
            where.append("conversation_id = ?")
            args.append(conversation_id)
        if model:
            where.append("model = ?")
            args.append(model)
        sql = f"SELECT {_COLUMNS} FROM responses"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY rowid DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._connect(create=False) as db:
            if db is None:
                return []
            rows = db.execute(sql, args).fetchall()
        return [_turn(r) for r in reversed(rows)]

    def count(self) -> int:
        """How many exchanges are logged."""
        with self._connect(create=False) as db:
            if db is None:
                return 0
            return int(db.execute("SELECT count(*) FROM responses").fetchone()[0])
