"""Tokens cannot be forged, nor widened, by writing into the store: their records are signed
with a secret kept outside it."""
from __future__ import annotations

import json
import os
import stat

import pytest

from hub.auth import Access, Grant, Secret, TokenStore, canonical, load_secret, token_key
from schemas.errors import Forbidden, InvalidArgument, Unauthorized
from schemas.settings import load_settings
from storage import LocalStore


@pytest.fixture
def tokens(tmp_path) -> TokenStore:
    store = LocalStore(tmp_path / "store")
    return TokenStore(store, load_secret(store, load_settings(environ={})), cache_seconds=0)


def test_a_token_speaks_for_its_identity_and_scope(tokens):
    token = tokens.create("write", "ci publisher", identity="ci")
    identity = tokens.authorize(token, "read")
    assert (identity.name, identity.grants, identity.description) == \
        ("ci", (Grant("*", "write"),), "ci publisher")
    assert token not in identity.label and identity.token_id in identity.label
    with pytest.raises(Forbidden):
        tokens.authorize(token, "admin")


@pytest.mark.parametrize("field", ["identity", "description"])
@pytest.mark.parametrize("text", ["evil\nroot: admin:*", "x\x1b[2J", "a\u2028b"])
def test_names_that_would_forge_printed_lines_are_refused(tokens, field, text):
    with pytest.raises(InvalidArgument, match="control characters"):
        tokens.create_record(grants=[Grant.parse("read:*")], **{field: text})
    assert tokens.list() == []


def test_a_record_written_without_the_secret_is_not_a_token(tokens):
    forged = "mh_0123456789abcdef_" + "A" * 43
    record = {"id": "0123456789abcdef", "identity": "mallory", "scope": "admin",
              "description": "", "created": "2026-01-01T00:00:00+00:00",
              "token_mac": Secret(b"x" * 32).sign("token", forged.encode())}
    record["mac"] = Secret(b"x" * 32).sign("token record", canonical(record))
    tokens.store.put_bytes(token_key("0123456789abcdef"), canonical(record))
    with pytest.raises(Unauthorized):
        tokens.authorize(forged, "read")


def test_a_record_edited_in_the_store_stops_working(tokens):
    token = tokens.create("read")
    token_id = token.split("_")[1]
    record = json.loads(tokens.store.get_bytes(token_key(token_id)))
    record["grants"] = [{"namespace": "*", "scope": "admin"}]  # widen it without the secret
    tokens.store.put_bytes(token_key(token_id), json.dumps(record).encode())
    with pytest.raises(Unauthorized):
        tokens.authorize(token, "read")


def test_old_unsigned_tokens_and_garbage_are_refused(tokens):
    import hashlib

    legacy = "mh_" + "b" * 43  # the format before records were signed
    key = f"auth/tokens/{hashlib.sha256(legacy.encode()).hexdigest()}.json"
    tokens.store.put_bytes(key, json.dumps({"scope": "admin"}).encode())
    for token in (legacy, "", "Bearer", "mh_zz_zz"):
        with pytest.raises(Unauthorized):
            Access(tokens, anonymous_read=False).require(token or None, "read")


def test_revocation_takes_effect_at_once_with_no_cache(tokens):
    token = tokens.create("read")
    tokens.authorize(token, "read")
    tokens.revoke(token.split("_")[1])
    with pytest.raises(Unauthorized):
        tokens.authorize(token, "read")


def test_a_local_stores_secret_is_made_once_beside_it_and_private(tmp_path):
    store = LocalStore(tmp_path / "store")
    settings = load_settings(environ={})
    first = load_secret(store, settings)
    path = tmp_path / "store.secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_secret(store, settings)
    assert first.sign("x", b"y") == again.sign("x", b"y")
    assert not any("secret" in key for key in store.list_keys(""))


def test_an_s3_store_needs_the_secret_from_the_environment(s3_bucket):
    from storage.s3 import S3Store

    store = S3Store(s3_bucket)
    with pytest.raises(InvalidArgument, match="MODELHUB_TOKEN_SECRET"):
        load_secret(store, load_settings(environ={}))
    secret = load_secret(store, load_settings({"token_secret": "s" * 32}, environ={}))
    assert secret.sign("a", b"b") == Secret(b"s" * 32).sign("a", b"b")
