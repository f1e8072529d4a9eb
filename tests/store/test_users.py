"""Password hashes and sign-in sessions as the store keeps them."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta

import pytest

from tokentrail.store import users


def test_a_hash_names_its_scheme_cost_and_salt_and_checks_only_its_password() -> None:
    first, second = users.hash_password("same password"), users.hash_password("same password")
    scheme, n, r, p, salt, key = first.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(1 << 15), "8", "1")
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(key)) == 32
    # the key is scrypt of the password with that salt and cost, as the string says
    assert base64.b64decode(key) == hashlib.scrypt(
        b"same password", salt=base64.b64decode(salt), n=1 << 15, r=8, p=1, maxmem=64 << 20, dklen=32
    )
    assert first != second  # a salt of its own
    assert users.verify_password("same password", first) and users.verify_password("same password", second)
    assert not users.verify_password("same passwore", first)
    assert not users.verify_password("", first)


def test_the_cost_in_the_hash_is_the_one_checked_and_malformed_hashes_match_nothing() -> None:
    cheap = users.hash_password("pw-12345678", n=16, r=1, p=1)
    assert cheap.split("$")[1:4] == ["16", "1", "1"]
    assert users.verify_password("pw-12345678", cheap)
    scheme, n, r, p, salt, key = cheap.split("$")
    for broken in (
        "",
        "plain",
        f"bcrypt${n}${r}${p}${salt}${key}",
        f"{scheme}$17${r}${p}${salt}${key}",  # not a power of two
        f"{scheme}${n}${r}$2${salt}${key}",
        f"{scheme}${n}${r}${p}$not base64!${key}",
        f"{scheme}${1 << 30}${r}${p}${salt}${key}",  # a cost that would take the server down
    ):
        assert not users.verify_password("pw-12345678", broken), broken


@pytest.mark.parametrize("raw", ["Ann@Example.COM ", " ann@example.com"])
def test_addresses_are_keyed_in_lower_case(raw: str) -> None:
    assert users.normalize_email(raw) == "ann@example.com"


@pytest.mark.parametrize("raw", ["", "ann", "ann@", "@example.com", "a b@example.com", "a@b@c"])
def test_what_is_not_an_address_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="is not an e-mail address"):
        users.normalize_email(raw)


def test_a_session_lives_until_it_expires_or_is_revoked(store) -> None:
    client = store.client
    start = datetime(2030, 1, 1, 12, 0)
    sid = users.create_session(client, "ann@example.com", start + timedelta(hours=1))
    other = users.create_session(client, "ann@example.com", start + timedelta(hours=1))
    bob = users.create_session(client, "bob@example.com", start + timedelta(hours=1))
    assert len(sid) >= 43 and sid != other
    assert users.live_session(client, sid, start) == "ann@example.com"
    assert users.live_session(client, sid, start + timedelta(minutes=59)) == "ann@example.com"
    assert users.live_session(client, sid, start + timedelta(hours=1)) is None
    assert users.live_session(client, "no-such-session", start) is None
    users.revoke_session(client, sid)
    assert users.live_session(client, sid, start) is None
    assert users.live_session(client, other, start) == "ann@example.com"
    users.revoke_sessions(client, "ann@example.com")
    assert users.live_session(client, other, start) is None
    assert users.live_session(client, bob, start) == "bob@example.com"
