"""ClickHouse's HTTP interface, served by the embedded chDB engine.

The embedded database belongs to one process. This endpoint lets every other process reach it as
it would reach a ClickHouse server: `tokentrail up` serves it on loopback so that the CLI's
commands (keys, users, reports) work while the server runs, and `tokentrail database` serves it
alone so that several collectors can share one embedded database. The clients are the same
clickhouse-connect HTTP clients that talk to a ClickHouse server, so this is also how the server
code path is exercised where no ClickHouse server can run.

What it speaks, as ClickHouse does (https://clickhouse.com/docs/interfaces/http):
- `GET|POST /?query=…`, the query text in the `query` parameter, the body, or both (joined by a
  newline); an INSERT's data in the body, streamed into the engine in its `FORMAT`;
  multipart forms with `query` and `param_*` fields;
- `database`, `param_<name>` (typed `{name:Type}` parameters, bound by the engine),
  `default_format`, `query_id`, `session_id` / `session_timeout` / `session_check` (a session keeps
  its `USE`, `SET` and temporary tables; one request at a time, as on a server); every other
  parameter is a setting for the query;
- credentials in `X-ClickHouse-User`/`X-ClickHouse-Key`, HTTP basic auth, or `user`/`password`;
- request bodies in `Content-Encoding` gzip, deflate, zstd or lz4 (frame); responses compressed
  when `enable_http_compression=1` and the client accepts gzip, deflate or zstd;
- `X-ClickHouse-Query-Id`, `-Format`, `-Timezone`, `-Summary` on answers; errors as
  `Code: N. DB::Exception: …` with `X-ClickHouse-Exception-Code` and the HTTP status ClickHouse
  gives that code.

Differences: results are sent whole (no progress headers, no mid-stream exceptions); settings sent
with a session's request stay set for the session; `GET` is not forced read-only (every request
needs the password).
"""

from __future__ import annotations

import base64
import gzip
import hmac
import json
import re
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any, cast

import chdb
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

__all__ = ["Endpoint", "create_app"]

#: Parameters the HTTP interface consumes itself; they are not settings of the query.
_TRANSPORT = frozenset(
    {
        "query",
        "database",
        "default_format",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "user",
        "password",
        "quota_key",
        "role",
        "buffer_size",
        "compress",
        "decompress",
        "wait_end_of_query",
        "client_protocol_version",
        "enable_http_compression",
        "http_zlib_compression_level",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "http_wait_end_of_query",
        "http_response_buffer_size",
    }
)
_SETTING = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TRAILING_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
# an INSERT whose data follows its FORMAT clause, after one line break: the statement, then data
_INSERT_WITH_DATA = re.compile(
    rb"^((?P<into>\s*INSERT\s+INTO\s.*?)\sFORMAT\s+(?P<format>\w+))[ \t]*(?:\r?\n|$)", re.I | re.S
)
_CODE = re.compile(r"Code:\s*(\d+)")
_SESSION_TIMEOUT = 60.0
_MAX_SESSION_TIMEOUT = 3600.0

# ClickHouse's own choice of HTTP status per error code (HTTPHandler's exceptionCodeToHTTPStatus)
_STATUS_OF_CODE = {
    **dict.fromkeys((194, 195, 516, 192, 193), 401),  # password required or wrong, unknown user
    **dict.fromkeys((164, 497, 291), 403),  # readonly, access denied, database access denied
    **dict.fromkeys(
        (
            6,  # CANNOT_PARSE_TEXT
            26,  # CANNOT_PARSE_QUOTED_STRING
            27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
            32,  # ATTEMPT_TO_READ_AFTER_EOF
            36,  # BAD_ARGUMENTS
            38,  # CANNOT_PARSE_DATE
            41,  # CANNOT_PARSE_DATETIME
            42,  # NUMBER_OF_ARGUMENTS_DOESNT_MATCH
            43,  # ILLEGAL_TYPE_OF_ARGUMENT
            44,  # ILLEGAL_COLUMN
            47,  # UNKNOWN_IDENTIFIER
            53,  # TYPE_MISMATCH
            62,  # SYNTAX_ERROR
            72,  # CANNOT_PARSE_NUMBER
            115,  # UNKNOWN_SETTING
            456,  # UNKNOWN_QUERY_PARAMETER
            457,  # BAD_QUERY_PARAMETER
        ),
        400,
    ),
    **dict.fromkeys((46, 50, 60, 73, 81, 372), 404),  # unknown function/type/table/format/db/session
    22: 411,  # neither query text nor data
    **dict.fromkeys((202, 373), 503),  # too many simultaneous queries, session locked
    1: 501,  # UNSUPPORTED_METHOD
    48: 501,  # NOT_IMPLEMENTED
}


class QueryError(Exception):
    """A ClickHouse error: its code and its message as ClickHouse words it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _engine_error(exc: BaseException) -> QueryError:
    text = str(exc).strip()
    start = text.find("Code: ")
    if start > 0:
        text = text[start:]
    found = _CODE.search(text)
    return QueryError(int(found[1]) if found else 1000, text)


@dataclass
class _Handle:
    """A chDB connection: one per session, or one per sessionless request."""

    conn: Any
    database: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)
    timeout: float = _SESSION_TIMEOUT


class Endpoint:
    """The engine side: runs requests on chDB handles over one database path."""

    def __init__(self, path: str, *, user: str, password: str) -> None:
        self.path = path
        self.user = user
        self.password = password
        self._sessions: dict[str, _Handle] = {}
        self._sessions_lock = threading.Lock()
        probe = self._open()
        try:
            #: the engine's time zone, which answers name (X-ClickHouse-Timezone)
            self.timezone = probe.conn.query("SELECT timezone()", "TabSeparated").bytes().decode().strip()
        finally:
            probe.conn.close()

    def _open(self) -> _Handle:
        return _Handle(cast(Any, chdb).connect(self.path))

    def close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, {}
        for handle in sessions.values():
            with handle.lock:
                handle.conn.close()

    # -- authentication -------------------------------------------------------------------------

    def authenticate(self, user: str, password: str) -> None:
        ok = hmac.compare_digest(user.encode(), self.user.encode())
        ok = hmac.compare_digest(password.encode(), self.password.encode()) and ok
        if not ok:
            raise QueryError(
                516,
                f"Code: 516. DB::Exception: {user or 'default'}: Authentication failed: password "
                "is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)",
            )

    # -- sessions -------------------------------------------------------------------------------

    def _session(self, session_id: str, timeout: float, check: bool) -> _Handle:
        with self._sessions_lock:
            self._expire()
            handle = self._sessions.get(session_id)
            if handle is None:
                if check:
                    raise QueryError(
                        372, f"Code: 372. DB::Exception: Session {session_id} not found. (SESSION_NOT_FOUND)"
                    )
                handle = self._sessions[session_id] = self._open()
            handle.timeout = timeout
        if not handle.lock.acquire(blocking=False):
            raise QueryError(
                373,
                "Code: 373. DB::Exception: Session is locked by a concurrent client. (SESSION_IS_LOCKED)",
            )
        return handle

    def _expire(self) -> None:
        now = time.monotonic()
        for key, handle in list(self._sessions.items()):
            if now - handle.last_used > handle.timeout and handle.lock.acquire(blocking=False):
                del self._sessions[key]
                handle.conn.close()
                handle.lock.release()

    # -- running a request ----------------------------------------------------------------------

    def run(self, request: _Request) -> tuple[bytes, str, dict[str, Any]]:
        """Run one request; returns the result's bytes, its format and the summary."""
        session_id = request.params.get("session_id", "")
        if session_id:
            timeout = _number(request.params.get("session_timeout"), _SESSION_TIMEOUT)
            handle = self._session(
                session_id, min(timeout, _MAX_SESSION_TIMEOUT), request.params.get("session_check") == "1"
            )
        else:
            handle = self._open()
        try:
            return self._run_on(handle, request)
        finally:
            handle.last_used = time.monotonic()
            if session_id:
                handle.lock.release()
            else:
                handle.conn.close()

    def _run_on(self, handle: _Handle, request: _Request) -> tuple[bytes, str, dict[str, Any]]:
        conn = handle.conn
        try:
            database = request.params.get("database")
            if database and database != handle.database:
                conn.query(f"USE {_identifier(database)}")
                handle.database = database
            for name, value in request.settings.items():
                conn.query(f"SET {name} = {_quote(value)}")
            if request.insert_data:
                return self._insert(conn, request)
            fmt = _TRAILING_FORMAT.search(request.query)
            out_format = fmt[1] if fmt else request.params.get("default_format", "TabSeparated")
            result = conn.query(request.query, out_format, params=request.query_params or None)
        except QueryError:
            raise
        except Exception as exc:
            raise _engine_error(exc) from None
        summary = {
            "read_rows": str(result.rows_read()),
            "read_bytes": str(result.bytes_read()),
            "written_rows": str(result.rows_written()),
            "written_bytes": str(result.bytes_written()),
            "elapsed_ns": str(int(result.elapsed() * 1e9)),
        }
        return bytes(result.bytes() or b""), out_format, summary

    def _insert(self, conn: Any, request: _Request) -> tuple[bytes, str, dict[str, Any]]:
        into, fmt = request.insert_into, request.insert_format
        data = request.insert_data or b""
        start = time.monotonic()
        inserter = conn.send_insert(into, fmt)
        try:
            step = 1 << 20
            for offset in range(0, len(data), step):
                inserter.append(data[offset : offset + step])
            inserter.finish()
        except BaseException:
            inserter.cancel()
            raise
        summary = {"written_bytes": str(len(data)), "elapsed_ns": str(int((time.monotonic() - start) * 1e9))}
        return b"", fmt, summary


@dataclass
class _Request:
    query: str
    params: dict[str, str]
    settings: dict[str, str]
    query_params: dict[str, str]
    #: an INSERT with data after its FORMAT clause: the data, the statement before FORMAT, the format
    insert_data: bytes | None = None
    insert_into: str = ""
    insert_format: str = ""


def _number(value: str | None, default: float) -> float:
    try:
        return float(value) if value else default
    except ValueError:
        raise QueryError(36, f"Code: 36. DB::Exception: not a number: {value!r}. (BAD_ARGUMENTS)") from None


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _decode_body(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity":
        return body
    try:
        if encoding in ("gzip", "x-gzip"):
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
        if encoding == "zstd":
            import zstandard

            return zstandard.ZstdDecompressor().decompressobj().decompress(body)
        if encoding == "lz4":
            import lz4.frame  # type: ignore[import-untyped]

            return bytes(lz4.frame.decompress(body))
    except ImportError:
        pass
    except Exception as exc:
        raise QueryError(
            432, f"Code: 432. DB::Exception: cannot decode the {encoding} body: {exc}. (UNKNOWN_CODEC)"
        ) from None
    raise QueryError(432, f"Code: 432. DB::Exception: unknown Content-Encoding {encoding!r}. (UNKNOWN_CODEC)")


def _encode_body(body: bytes, accept: str) -> tuple[bytes, str | None]:
    offered = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    for name in offered:
        if name == "gzip":
            return gzip.compress(body, compresslevel=3), "gzip"
        if name == "deflate":
            return zlib.compress(body, 3), "deflate"
        if name == "zstd":
            import zstandard

            return zstandard.ZstdCompressor(level=3).compress(body), "zstd"
    return body, None


def _credentials(request: Request, params: dict[str, str]) -> tuple[str, str]:
    user = request.headers.get("x-clickhouse-user")
    key = request.headers.get("x-clickhouse-key")
    if user is not None or key is not None:
        return user or "default", key or ""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return "", ""
        return user, key
    return params.get("user", "default"), params.get("password", "")


async def _parse(request: Request) -> _Request:
    params = dict(request.query_params)
    query = params.get("query", "")
    body = b""
    form_params: dict[str, str] = {}
    if request.method == "POST":
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            for key, value in form.items():
                if isinstance(value, str):
                    form_params[key] = value
            query = form_params.pop("query", query)
        else:
            body = _decode_body(await request.body(), request.headers.get("content-encoding", ""))
    elif request.method != "GET":
        raise QueryError(
            1, f"Code: 1. DB::Exception: HTTP method {request.method} is not supported. (UNSUPPORTED_METHOD)"
        )
    params.update(form_params)
    text = query.encode()
    if text and body:
        text += b"\n" + body
    elif body:
        text = body
    statement = _INSERT_WITH_DATA.match(text)
    insert: dict[str, Any] = {}
    if statement is not None:
        query = statement[1].decode()
        insert = {
            "insert_data": text[statement.end() :],
            "insert_into": statement["into"].decode(),
            "insert_format": statement["format"].decode(),
        }
    else:
        try:
            query = text.decode()
        except UnicodeDecodeError:
            raise QueryError(
                62, "Code: 62. DB::Exception: the query is not UTF-8 text. (SYNTAX_ERROR)"
            ) from None
    if not query.strip():
        raise QueryError(22, "Code: 22. DB::Exception: Empty query. (NO_DATA_TO_INSERT)")
    query_params = {key[6:]: value for key, value in params.items() if key.startswith("param_")}
    settings = {}
    for key, value in params.items():
        if key in _TRANSPORT or key.startswith("param_"):
            continue
        if not _SETTING.match(key):
            raise QueryError(115, f"Code: 115. DB::Exception: Unknown setting {key!r}. (UNKNOWN_SETTING)")
        settings[key] = value
    return _Request(query.strip(), params, settings, query_params, **insert)


def _error_response(error: QueryError, query_id: str) -> Response:
    return PlainTextResponse(
        error.message.rstrip() + "\n",
        status_code=_STATUS_OF_CODE.get(error.code, 500),
        headers={"X-ClickHouse-Exception-Code": str(error.code), "X-ClickHouse-Query-Id": query_id},
    )


def create_app(endpoint: Endpoint) -> Starlette:
    """The ASGI app."""

    async def ping(request: Request) -> Response:
        return PlainTextResponse("Ok.\n")

    async def root(request: Request) -> Response:
        query_id = request.query_params.get("query_id") or str(uuid.uuid4())
        try:
            parsed = await _parse(request)
            endpoint.authenticate(*_credentials(request, parsed.params))
            body, fmt, summary = await run_in_threadpool(endpoint.run, parsed)
        except QueryError as error:
            if error.code == 22 and request.method == "GET" and not request.query_params:
                return PlainTextResponse("Ok.\n")
            return _error_response(error, query_id)
        headers = {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Timezone": endpoint.timezone,
            "X-ClickHouse-Summary": json.dumps(summary),
            "X-ClickHouse-Server-Display-Name": "tokentrail",
        }
        if parsed.params.get("enable_http_compression") == "1" and body:
            body, encoding = _encode_body(body, request.headers.get("accept-encoding", ""))
            if encoding:
                headers["Content-Encoding"] = encoding
        return Response(body, headers=headers, media_type=_media_type(fmt))

    return Starlette(
        routes=[Route("/ping", ping, methods=["GET", "HEAD"]), Route("/", root, methods=["GET", "POST"])]
    )


def _media_type(fmt: str) -> str:
    if fmt.startswith("JSON"):
        return "application/json"
    if fmt in ("TabSeparated", "TSV", "CSV", "TabSeparatedWithNames", "CSVWithNames", "Pretty"):
        return "text/plain"
    return "application/octet-stream"
