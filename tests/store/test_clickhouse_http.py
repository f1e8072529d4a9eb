"""The embedded engine's ClickHouse HTTP interface, spoken to as ClickHouse documents it: raw HTTP
for the protocol's details, clickhouse-connect (the client used against a ClickHouse server) for
what the product relies on."""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
import httpx
import pyarrow as pa
import pytest
import zstandard

#: generous: a busy machine (the whole suite on two cores) answers slowly, not wrongly
TIMEOUT = 60


@pytest.fixture
def server(clickhouse_http: str) -> Iterator[tuple[str, tuple[str, str], str]]:
    """(base URL, credentials, a database of the test's own)."""
    parts = urlsplit(clickhouse_http)
    base = f"http://{parts.hostname}:{parts.port}"
    auth = (parts.username or "", parts.password or "")
    database = f"h_{uuid.uuid4().hex[:10]}"
    httpx.post(timeout=TIMEOUT, url=base, auth=auth, content=f"CREATE DATABASE {database}").raise_for_status()
    yield base, auth, database
    httpx.post(timeout=TIMEOUT, url=base, auth=auth, content=f"DROP DATABASE IF EXISTS {database}")


def _client(clickhouse_http: str, database: str) -> clickhouse_connect.driver.Client:
    parts = urlsplit(clickhouse_http)
    return clickhouse_connect.get_client(
        host=parts.hostname,
        port=parts.port,
        username=parts.username,
        password=parts.password or "",
        database=database,
    )


def test_ping_and_a_plain_query(server):
    base, auth, _ = server
    assert httpx.get(timeout=TIMEOUT, url=f"{base}/ping").text == "Ok.\n"
    answer = httpx.get(timeout=TIMEOUT, url=base, params={"query": "SELECT 1 + 1"}, auth=auth)
    assert (answer.status_code, answer.text) == (200, "2\n")
    assert answer.headers["X-ClickHouse-Format"] == "TabSeparated"
    assert answer.headers["X-ClickHouse-Timezone"]
    assert json.loads(answer.headers["X-ClickHouse-Summary"])["read_rows"] == "1"


@pytest.mark.parametrize(
    "how",
    [
        {"auth": ("tokentrail", "wrong")},
        {"headers": {"X-ClickHouse-User": "tokentrail", "X-ClickHouse-Key": "wrong"}},
        {"params": {"user": "someone", "password": ""}},
        {},
    ],
)
def test_every_request_needs_the_password(server, how):
    base, _, _ = server
    answer = httpx.post(timeout=TIMEOUT, url=base, content="SELECT 1", **how)
    assert answer.status_code == 401
    assert answer.headers["X-ClickHouse-Exception-Code"] == "516"
    assert "Authentication failed" in answer.text and "AUTHENTICATION_FAILED" in answer.text


def test_the_password_in_headers_or_parameters_also_works(server):
    base, (user, password), _ = server
    by_headers = httpx.post(
        timeout=TIMEOUT,
        url=base,
        content="SELECT 7",
        headers={"X-ClickHouse-User": user, "X-ClickHouse-Key": password},
    )
    by_params = httpx.post(
        timeout=TIMEOUT, url=base, content="SELECT 8", params={"user": user, "password": password}
    )
    assert (by_headers.text, by_params.text) == ("7\n", "8\n")


@pytest.mark.parametrize(
    ("sql", "status", "code"),
    [
        ("SELEC 1", 400, "62"),
        ("SELECT * FROM no_such_table", 404, "60"),
        ("SELECT no_such_function(1)", 404, "46"),
        ("SELECT throwIf(1, 'stop')", 500, "395"),
    ],
)
def test_errors_carry_clickhouse_code_message_and_status(server, sql, status, code):
    base, auth, database = server
    answer = httpx.post(timeout=TIMEOUT, url=base, params={"database": database}, content=sql, auth=auth)
    assert answer.status_code == status
    assert answer.headers["X-ClickHouse-Exception-Code"] == code
    assert answer.text.startswith(f"Code: {code}. DB::Exception:")


def test_parameters_are_bound_by_the_engine_never_spliced(server):
    base, auth, database = server
    client = httpx.Client(timeout=TIMEOUT, auth=auth)
    client.post(base, params={"database": database}, content="CREATE TABLE t (s String) ENGINE = Memory")
    hostile = "x'); DROP TABLE t; SELECT ('\\"
    answer = client.post(
        base,
        # values are in the escaped text format, as ClickHouse documents: a backslash is doubled
        params={
            "database": database,
            "param_s": hostile.replace("\\", "\\\\"),
            "default_format": "JSONEachRow",
        },
        content="SELECT {s:String} AS s, length({s:String}) AS n",
    )
    assert answer.status_code == 200, answer.text
    assert json.loads(answer.text) == {"s": hostile, "n": len(hostile)}
    assert client.post(base, params={"database": database}, content="EXISTS TABLE t").text == "1\n"
    wrong_type = client.post(base, params={"param_n": "ten"}, content="SELECT {n:UInt32}")
    assert wrong_type.status_code == 400 and wrong_type.headers["X-ClickHouse-Exception-Code"] in (
        "26",
        "27",
        "72",
        "457",
    )


def test_settings_apply_to_the_query_and_unknown_ones_are_refused(server):
    base, auth, _ = server
    limited = httpx.post(
        timeout=TIMEOUT,
        url=base,
        params={"max_result_rows": "5", "result_overflow_mode": "throw"},
        content="SELECT number FROM system.numbers LIMIT 100",
        auth=auth,
    )
    assert limited.status_code == 500 and limited.headers["X-ClickHouse-Exception-Code"] == "396"
    unknown = httpx.post(
        timeout=TIMEOUT, url=base, params={"no_such_setting": "1"}, content="SELECT 1", auth=auth
    )
    assert unknown.status_code == 400 and unknown.headers["X-ClickHouse-Exception-Code"] == "115"


def test_insert_data_in_the_body_in_each_encoding(server):
    base, auth, database = server
    client = httpx.Client(timeout=TIMEOUT, auth=auth, params={"database": database})
    client.post(
        base, content="CREATE TABLE t (n UInt32, s String) ENGINE = MergeTree ORDER BY n"
    ).raise_for_status()
    rows = [(i, f"row {i}\twith a tab") for i in range(1, 1001)]
    escaped = [(n, s.replace("\t", "\\t")) for n, s in rows]  # TabSeparated escapes a tab as \t
    tsv = "".join(f"{n}\t{s}\n" for n, s in escaped).encode()
    insert = "INSERT INTO t (n, s) FORMAT TabSeparated"
    # the statement in the query parameter, the data in the body, plain or compressed
    client.post(base, params={"query": insert}, content=tsv).raise_for_status()
    client.post(
        base, params={"query": insert}, content=gzip.compress(tsv), headers={"Content-Encoding": "gzip"}
    ).raise_for_status()
    client.post(
        base,
        params={"query": insert},
        content=zstandard.ZstdCompressor().compress(tsv),
        headers={"Content-Encoding": "zstd"},
    ).raise_for_status()
    # the statement on the body's first line, the data after it
    client.post(base, content=insert.encode() + b"\n" + tsv).raise_for_status()
    total = client.post(base, content="SELECT count(), sum(n), uniqExact(s) FROM t").text
    assert total == f"4000\t{4 * sum(n for n, _ in rows)}\t1000\n"
    assert client.post(base, content="SELECT s FROM t WHERE n = 7 LIMIT 1").text == "row 7\\twith a tab\n"


def test_a_broken_compressed_body_is_refused_and_nothing_is_inserted(server):
    base, auth, database = server
    client = httpx.Client(timeout=TIMEOUT, auth=auth, params={"database": database})
    client.post(base, content="CREATE TABLE t (n UInt32) ENGINE = Memory").raise_for_status()
    answer = client.post(
        base,
        params={"query": "INSERT INTO t FORMAT TabSeparated"},
        content=b"not gzip",
        headers={"Content-Encoding": "gzip"},
    )
    assert answer.status_code == 500 and answer.headers["X-ClickHouse-Exception-Code"] == "432"
    assert client.post(base, content="SELECT count() FROM t").text == "0\n"


def test_answers_are_compressed_when_asked(server):
    base, auth, _ = server
    answer = httpx.post(
        timeout=TIMEOUT,
        url=base,
        params={"enable_http_compression": "1"},
        content="SELECT number FROM system.numbers LIMIT 10000",
        headers={"Accept-Encoding": "zstd"},
        auth=auth,
    )
    assert answer.headers["Content-Encoding"] == "zstd"
    assert answer.text.splitlines()[-1] == "9999"  # httpx decoded it
    plain = httpx.post(
        timeout=TIMEOUT, url=base, content="SELECT 1", headers={"Accept-Encoding": "zstd"}, auth=auth
    )
    assert "Content-Encoding" not in plain.headers


def test_a_session_keeps_its_state_and_is_one_request_at_a_time(server):
    base, auth, _ = server
    client = httpx.Client(timeout=TIMEOUT, auth=auth)
    session = {"session_id": uuid.uuid4().hex}
    client.post(base, params=session, content="CREATE TEMPORARY TABLE scratch (n UInt8)").raise_for_status()
    client.post(base, params=session, content="INSERT INTO scratch VALUES (1), (2)").raise_for_status()
    assert client.post(base, params=session, content="SELECT sum(n) FROM scratch").text == "3\n"
    other = client.post(base, params={"session_id": uuid.uuid4().hex}, content="SELECT sum(n) FROM scratch")
    assert other.status_code == 404 and other.headers["X-ClickHouse-Exception-Code"] == "60"
    unknown = client.post(base, params={"session_id": "nobody", "session_check": "1"}, content="SELECT 1")
    assert unknown.status_code == 404 and unknown.headers["X-ClickHouse-Exception-Code"] == "372"

    slow = threading.Thread(
        target=lambda: client.post(base, params=session, content="SELECT sleep(2)", timeout=30)
    )
    slow.start()
    try:
        for _ in range(200):
            busy = httpx.post(timeout=TIMEOUT, url=base, params=session, content="SELECT 1", auth=auth)
            if busy.status_code != 200:
                break
        assert busy.status_code == 503 and busy.headers["X-ClickHouse-Exception-Code"] == "373"
    finally:
        slow.join()


def test_a_form_with_query_and_parameters(server):
    base, auth, _ = server
    answer = httpx.post(
        timeout=TIMEOUT,
        url=base,
        files={"query": (None, "SELECT {a:UInt8} * 2"), "param_a": (None, "21")},
        auth=auth,
    )
    assert (answer.status_code, answer.text) == (200, "42\n")


def test_clickhouse_connect_native_and_arrow_round_trips(clickhouse_http, server):
    _, _, database = server
    client = _client(clickhouse_http, database)
    client.command(
        "CREATE TABLE t (n UInt64, s String, attrs Map(String, String), at DateTime64(9), "
        "kind LowCardinality(String), tags Array(String), cost Float64) ENGINE = MergeTree ORDER BY n"
    )
    at = datetime(2026, 11, 30, 10, 0, 0, 123456)
    rows: list[list[Any]] = [
        [i, f"span {i}", {"k": str(i)}, at, "llm" if i % 2 else "tool", [f"t{i}"], i * 0.25]
        for i in range(20_000)
    ]
    client.insert("t", rows, column_names=["n", "s", "attrs", "at", "kind", "tags", "cost"])
    arrow = pa.table(
        {
            "n": pa.array([10**9], pa.uint64()),
            "s": ["from arrow"],
            "attrs": pa.array([[("x", "y")]], pa.map_(pa.string(), pa.string())),
            "at": pa.array([at], pa.timestamp("ns")),
            "kind": ["agent"],
            "tags": pa.array([["a", "b"]], pa.list_(pa.string())),
            "cost": [1.5],
        }
    )
    client.insert_arrow("t", arrow)
    count, total, kinds = client.query("SELECT count(), sum(cost), uniqExact(kind) FROM t").result_rows[0]
    assert (count, kinds) == (20_001, 3)
    assert total == pytest.approx(sum(r[6] for r in rows) + 1.5)
    got = client.query(
        "SELECT s, attrs, at, tags FROM t WHERE n = {n:UInt64}", parameters={"n": 12_345}
    ).result_rows
    assert got == [("span 12345", {"k": "12345"}, at, ["t12345"])]
    back = client.query_arrow("SELECT s, tags FROM t WHERE n = 1000000000")
    assert back.column("s").to_pylist() == ["from arrow"] and back.column("tags").to_pylist() == [["a", "b"]]
    with pytest.raises(clickhouse_connect.driver.exceptions.DatabaseError, match="UNKNOWN_TABLE"):
        client.query("SELECT * FROM no_such_table")
    client.close()
