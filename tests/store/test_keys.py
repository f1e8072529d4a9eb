"""Projects and API keys in ClickHouse, and the KeyRing that checks presented keys."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tokentrail.store import keys
from tokentrail.store.keys import Grant, KeyRing, KeysError, KeysUnavailable


class Clock:
    """A hand-moved clock for the KeyRing's cache (monotonic) and expiry (wall time)."""

    def __init__(self) -> None:
        self.monotonic = 1000.0
        self.wall = datetime.now(UTC).timestamp()

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.wall += seconds


def _ring(settings: Any, store: Any, clock: Clock | None = None, **changes: Any) -> KeyRing:
    clock = clock or Clock()
    return KeyRing(
        settings.with_(**changes),
        store.new_client(),
        clock=lambda: clock.wall,
        timer=lambda: clock.monotonic,
    )


def _every_stored_text(store: Any, database: str) -> list[str]:
    """Every value of every column of every table of the database, as text."""
    texts = []
    tables = store.client.query(
        "SELECT name FROM system.tables WHERE database = {db:String}", parameters={"db": database}
    ).result_rows
    for (table,) in tables:
        columns = store.client.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}",
            parameters={"db": database, "t": table},
        ).result_rows
        for (column,) in columns:
            texts += [
                r[0]
                for r in store.client.query(
                    f"SELECT ifNull(toString(`{column}`), '') FROM `{table}`"  # names from system tables
                ).result_rows
            ]
    return texts


def test_a_key_is_returned_once_and_only_its_secrets_hash_is_stored(settings, store):
    keys.create_project(store.client, "team-a")
    new = keys.create_key(store.client, "team-a", "ingest", label="ci")
    match = re.fullmatch(r"tt_([0-9a-f]{16})_([A-Za-z0-9_-]+)", new.key)
    assert match, new.key
    key_id, secret = match[1], match[2]
    assert len(secret) >= 43  # 32 random bytes, base64url
    assert new.info.key_id == key_id

    stored = _every_stored_text(store, settings.database)
    assert key_id in stored and "ci" in stored  # the search read the key's row
    assert not [t for t in stored if secret in t or new.key in t]
    hashes = store.client.query(
        "SELECT secret_sha256 FROM api_keys FINAL WHERE key_id = {k:String}", parameters={"k": key_id}
    ).result_rows
    assert hashes == [(hashlib.sha256(secret.encode()).hexdigest(),)]
    listed = keys.list_keys(store.client)
    assert [(k.key_id, k.project, k.scope, k.label, k.state()) for k in listed] == [
        (key_id, "team-a", "ingest", "ci", "active")
    ]
    assert secret not in repr(listed)
    # a second key of the same project shares nothing with the first
    other = keys.create_key(store.client, "team-a", "ingest")
    assert other.info.key_id != key_id and other.key.split("_", 2)[2] != secret


def test_verify_grants_the_keys_project_and_scope_and_nothing_else(settings, store):
    keys.create_project(store.client, "team-a")
    keys.create_project(store.client, "team-b")
    ingest = keys.create_key(store.client, "team-a", "ingest")
    read = keys.create_key(store.client, "team-b", "read")
    ring = _ring(settings, store)

    assert ring.keys_exist()
    assert ring.verify(ingest.key) == Grant("team-a", frozenset({"ingest"}), ingest.info.key_id)
    grant = ring.verify(read.key)
    assert grant is not None and grant.project == "team-b"
    assert grant.allows("read") and not grant.allows("ingest")
    # spaces around a header's value are not part of the key
    assert ring.verify(f"  {ingest.key} ") == ring.verify(ingest.key)

    last = ingest.key[-1]
    altered = ingest.key[:-1] + ("A" if last != "A" else "B")
    other_id = f"tt_{read.info.key_id}_{ingest.key.split('_', 2)[2]}"  # this secret, another key's id
    for wrong in (altered, other_id, ingest.key[:-1], "tt_", "nope", ingest.info.key_id):
        assert ring.verify(wrong) is None, wrong
        with pytest.raises(keys.KeyRefused, match="unknown API key"):
            ring.check(wrong)
    for missing in (None, "", "   "):
        with pytest.raises(keys.KeyRefused, match=r"missing API key.*Authorization: Bearer"):
            ring.check(missing)


def test_every_check_compares_the_same_way_whatever_it_is_given(settings, store, monkeypatch):
    """No early exit: a valid key, a wrong secret, an unknown id and a text that is no key at all
    each hash and compare as often (the environment's keys included)."""
    keys.create_project(store.client, "team-a")
    valid = keys.create_key(store.client, "team-a", "ingest").key
    ring = _ring(settings, store, api_keys={"env-1": "p1", "env-2": "p2"})
    ring.verify(valid)  # read the keys first
    calls = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    made = {}
    for text in (valid, valid[:-1] + "x", "tt_0123456789abcdef_" + "x" * 43, "hello", "env-2"):
        calls.clear()
        ring.verify(text)
        made[text] = list(calls)
    assert len({tuple(c) for c in made.values()}) == 1, made
    assert len(made[valid]) == 3  # two environment keys, one stored key


def test_revocation_and_new_keys_take_effect_within_the_cache_window(settings, store):
    keys.create_project(store.client, "team-a")
    first = keys.create_key(store.client, "team-a", "ingest")
    clock = Clock()
    ring = _ring(settings, store, clock, key_cache_seconds=2.0)
    assert ring.verify(first.key) is not None

    revoked = keys.revoke_key(store.client, first.info.key_id)
    second = keys.create_key(store.client, "team-a", "read")
    clock.advance(1.9)  # still the keys read at first
    assert ring.verify(first.key) is not None
    assert ring.verify(second.key) is None
    clock.advance(0.1)
    assert ring.verify(first.key) is None
    assert revoked.revoked_at is not None
    when = revoked.revoked_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(keys.KeyRefused, match=f"API key {first.info.key_id} was revoked at {when}"):
        ring.check(first.key)
    assert ring.verify(second.key) == Grant("team-a", frozenset({"read"}), second.info.key_id)

    [listed] = [k for k in keys.list_keys(store.client) if k.key_id == first.info.key_id]
    assert listed.state() == "revoked"
    # revoking again keeps the first revocation; the whole key's text names it as well as its id
    again = keys.revoke_key(store.client, first.key)
    assert again.revoked_at == listed.revoked_at


def test_a_key_expires_at_its_time(settings, store):
    keys.create_project(store.client, "team-a")
    clock = Clock()
    created = datetime.fromtimestamp(clock.wall, UTC)
    new = keys.create_key(store.client, "team-a", "ingest", expires_in=timedelta(days=90), now=created)
    ring = _ring(settings, store, clock)
    expires = created + timedelta(days=90)
    assert new.info.expires_at == expires
    [listed] = keys.list_keys(store.client)
    assert listed.expires_at is not None
    assert abs(listed.expires_at - expires) < timedelta(milliseconds=1)  # stored to the millisecond
    assert listed.state(now=expires - timedelta(seconds=1)) == "active"
    assert listed.state(now=expires) == "expired"

    clock.advance(90 * 86400 - 1)
    assert ring.verify(new.key) is not None
    clock.advance(1)
    with pytest.raises(
        keys.KeyRefused, match=f"API key {new.info.key_id} expired at {expires:%Y-%m-%dT%H:%M:%S}Z"
    ):
        ring.check(new.key)


def test_environment_keys_have_both_scopes_on_their_project(settings, store):
    ring = _ring(settings, store, api_keys={"k-env": "team-env"})
    assert ring.keys_exist()  # no key in the database: the environment's turn authentication on
    assert ring.verify("k-env") == Grant("team-env", frozenset({"ingest", "read"}), "env")
    assert ring.verify("k-env-") is None and ring.verify("k-en") is None
    # beside the database's keys
    keys.create_project(store.client, "team-a")
    new = keys.create_key(store.client, "team-a", "read")
    ring = _ring(settings, store, api_keys={"k-env": "team-env"})
    assert ring.verify(new.key) == Grant("team-a", frozenset({"read"}), new.info.key_id)
    assert ring.verify("k-env") is not None
    # and alone, without a database
    alone = KeyRing(settings.with_(api_keys={"k-env": "team-env"}), None)
    assert alone.verify("k-env") is not None and alone.verify(new.key) is None


def test_authentication_is_on_once_a_key_exists_and_stays_on_when_it_is_revoked(settings, store):
    clock = Clock()
    ring = _ring(settings, store, clock)
    assert not ring.keys_exist()
    keys.create_project(store.client, "team-a")
    assert not ring.keys_exist()  # a project alone asks for no key
    clock.advance(2)
    assert not ring.keys_exist()
    new = keys.create_key(store.client, "team-a", "ingest")
    clock.advance(2)
    assert ring.keys_exist()
    keys.revoke_key(store.client, new.info.key_id)
    clock.advance(2)
    # revoking the last key must not let anyone send without one
    assert ring.keys_exist()
    assert ring.verify(new.key) is None


class _Failing:
    """A ClickHouse client that fails while `down` is set."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.down = True
        self.queries = 0

    def query(self, *args: Any, **kwargs: Any) -> Any:
        self.queries += 1
        if self.down:
            raise ConnectionError("ClickHouse is unreachable")
        return self.client.query(*args, **kwargs)

    def close(self) -> None:
        self.client.close()


def test_keys_read_last_stay_in_force_while_clickhouse_cannot_be_read(settings, store):
    keys.create_project(store.client, "team-a")
    new = keys.create_key(store.client, "team-a", "ingest")
    clock = Clock()
    client = _Failing(store.new_client())
    ring = KeyRing(
        settings.with_(api_keys={"k-env": "team-env"}),
        client,
        clock=lambda: clock.wall,
        timer=lambda: clock.monotonic,
    )
    # never read: the environment's keys answer, the database's cannot be judged
    assert ring.verify("k-env") is not None
    with pytest.raises(KeysUnavailable):
        ring.check(new.key)
    tried = client.queries
    ring.verify("k-env")
    assert client.queries == tried  # tried again only once the cache window has passed
    clock.advance(2)
    client.down = False
    assert ring.verify(new.key) is not None
    client.down = True
    keys.revoke_key(store.client, new.info.key_id)
    clock.advance(2)
    assert ring.verify(new.key) is not None  # the revocation cannot be read: the last keys stand
    client.down = False
    clock.advance(2)
    assert ring.verify(new.key) is None


def test_names_scopes_and_ids_are_checked(settings, store):
    with pytest.raises(KeysError, match="must be 1 to 64 letters, digits, - or _"):
        keys.create_project(store.client, "team a")
    with pytest.raises(KeysError, match="must be 1 to 64"):
        keys.create_project(store.client, "x" * 65)
    keys.create_project(store.client, "x" * 64)
    keys.create_project(store.client, "team_a-1")
    with pytest.raises(KeysError, match="project 'team_a-1' exists already"):
        keys.create_project(store.client, "team_a-1")
    assert [p.name for p in keys.list_projects(store.client)] == ["team_a-1", "x" * 64]
    with pytest.raises(KeysError, match="no project 'team-z': create it first"):
        keys.create_key(store.client, "team-z", "ingest")
    with pytest.raises(KeysError, match="scope 'write' is not one of ingest, read"):
        keys.create_key(store.client, "team_a-1", "write")
    with pytest.raises(KeysError, match="expire in the future"):
        keys.create_key(store.client, "team_a-1", "read", expires_in=timedelta(0))
    with pytest.raises(KeysError, match="printable"):
        keys.create_key(store.client, "team_a-1", "read", label="a\nb")
    with pytest.raises(KeysError, match="no key 0123456789abcdef"):
        keys.revoke_key(store.client, "0123456789abcdef")
    with pytest.raises(KeysError, match="is not a key id"):
        keys.revoke_key(store.client, "' OR 1=1 --")
    assert keys.list_keys(store.client) == []
