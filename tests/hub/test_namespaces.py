"""A shared hub: namespaces, grants per namespace, private namespaces that do not exist for
outsiders, tokens that can be listed, revoked and expire, and an audit log that notices when it
is tampered with."""
from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest

from hub.audit import AuditLog, head_key, record_hash, record_key
from hub.auth import Grant, TokenStore, canonical, load_secret
from hub.registry import Registry
from schemas.errors import InvalidReference, Unauthorized
from schemas.settings import load_settings
from tests.support.apps import InProcessHub
from tests.support.archives import tar_gz_of
from tests.support.processes import REPO, modelhub_command, run_cli


def make_token(store: str, *grants: str, identity: str = "someone", expires=None) -> str:
    registry = Registry.open(store)
    tokens = TokenStore(registry.store, load_secret(registry.store, load_settings({"store": store},
                                                                                 environ={})))
    return tokens.create(grants=[Grant.parse(g) for g in grants], identity=identity,
                         expires=expires)


def bearer(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture(scope="module")
def shared(tmp_path_factory, examples):
    """A hub whose namespace `nlp` is private and `vision` public, each with a model, and
    default-namespace `hpt`; tokens with grants on one namespace each."""
    store = str(tmp_path_factory.mktemp("shared-hub") / "store")
    registry = Registry.open(store)
    registry.create_namespace("nlp", private=True)
    for name in ("nlp/bert", "vision/cnn", "hpt"):
        registry.publish(examples["half_plus_two"], name, aliases=["stable"])
    hub = InProcessHub(store)
    hub.grants = {g: make_token(store, g, identity=g.replace(":", "-"))
                  for g in ("read:vision", "write:vision", "read:nlp", "write:nlp", "admin:nlp")}
    return hub


def publish(hub, name: str, token: str | None, examples):
    return hub.client.post(f"/api/v1/models/{name}/versions",
                           data=tar_gz_of(examples["half_plus_two"]),
                           headers={**bearer(token), "Content-Type": "application/gzip"})


def listed(hub, token: str | None, q: str | None = None) -> set[str]:
    response = hub.client.get("/api/v1/models", query_string={"q": q} if q else {},
                              headers=bearer(token))
    assert response.status_code == 200, response.text
    return {m["name"] for m in response.get_json()["models"]}


def test_names_carry_their_namespace_in_urls_and_references(shared):
    manifest = shared.client.get("/api/v1/models/vision/cnn/versions/1").get_json()
    assert manifest["name"] == "vision/cnn" and manifest["version"] == 1
    assert shared.client.get("/api/v1/models/vision/cnn/versions/stable").status_code == 200
    assert shared.client.get("/api/v1/models/hpt").get_json()["name"] == "hpt"
    # tensorflow_hub's URL: /models/NS/NAME[/SELECTOR]
    assert shared.client.get("/models/vision/cnn/1").get_json()["name"] == "vision/cnn"
    assert shared.client.get("/models/hpt/stable").get_json()["name"] == "hpt"


def test_a_write_grant_on_vision_cannot_touch_nlp(shared, examples):
    writer = shared.grants["write:vision"]
    assert publish(shared, "vision/new", writer, examples).status_code == 201
    # nlp is private and this token cannot read it: it does not exist for it
    assert publish(shared, "nlp/bert", writer, examples).status_code == 404
    client = shared.client
    assert client.put("/api/v1/models/nlp/bert/aliases/prod", json={"version": 1},
                      headers=bearer(writer)).status_code == 404
    assert client.delete("/api/v1/models/nlp/bert/aliases/stable",
                         headers=bearer(writer)).status_code == 404
    assert client.post("/api/v1/models/nlp/bert/versions/1/artifacts",
                       json={"quantize": "none"}, headers=bearer(writer)).status_code == 404
    assert client.delete("/api/v1/models/nlp/bert/versions/1",
                         headers=bearer(writer)).status_code == 404
    # a public namespace it has no grant on: 403, with what it would need
    other = publish(shared, "hpt", writer, examples)
    assert other.status_code == 403 and "'write' on namespace 'default'" in \
        other.get_json()["error"]["message"]
    # the nlp model is untouched
    assert Registry.open(shared.store).versions("nlp/bert") == [1]
    assert Registry.open(shared.store).aliases("nlp/bert") == {"stable": 1}


def test_a_private_namespace_is_invisible_without_a_read_grant(shared):
    for token in (None, shared.grants["read:vision"]):
        assert "nlp/bert" not in listed(shared, token)
        assert listed(shared, token, q="bert") == set()
        for path in ("/api/v1/models/nlp/bert", "/api/v1/models/nlp/bert/versions/1",
                     "/api/v1/models/nlp/bert/versions/1/files/saved_model.pb",
                     "/api/v1/models/nlp/bert/versions/1/archive", "/models/nlp/bert/1"):
            response = shared.client.get(path, headers=bearer(token))
            assert response.status_code == 404, (path, response.status_code)
            assert "nlp/bert" not in response.text or "not found" in response.text
    reader = shared.grants["read:nlp"]
    assert {"nlp/bert", "vision/cnn", "hpt"} <= listed(shared, reader)
    assert shared.client.get("/api/v1/models/nlp/bert", headers=bearer(reader)).status_code == 200


def test_namespace_admins_make_and_change_namespaces(shared):
    admin = shared.grants["admin:nlp"]
    client = shared.client
    made = client.post("/api/v1/namespaces", json={"name": "nlp-two", "private": True},
                       headers=bearer(admin))
    assert made.status_code == 403  # admin on nlp only, not on nlp-two
    changed = client.patch("/api/v1/namespaces/nlp", json={"private": False},
                           headers=bearer(admin))
    assert changed.status_code == 200 and changed.get_json()["private"] is False
    assert "nlp/bert" in listed(shared, None)  # public now
    client.patch("/api/v1/namespaces/nlp", json={"private": True}, headers=bearer(admin))
    assert "nlp/bert" not in listed(shared, None)
    names = [n["name"] for n in client.get("/api/v1/namespaces",
                                           headers=bearer(admin)).get_json()["namespaces"]]
    assert names == ["nlp"]
    all_admin = shared.tokens["admin"]
    assert client.post("/api/v1/namespaces", json={"name": "team-a"},
                       headers=bearer(all_admin)).status_code == 201
    assert client.post("/api/v1/namespaces", json={"name": "team-a"},
                       headers=bearer(all_admin)).status_code == 409


def test_existing_tokens_keep_their_scope_on_every_namespace(shared, examples):
    write_all = shared.tokens["write"]  # made the old way: a scope, no grants
    assert publish(shared, "nlp/from-old-token", write_all, examples).status_code == 201
    assert "nlp/from-old-token" in listed(shared, shared.tokens["read"])


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_revoked_token_is_refused_within_a_second(kind, tmp_path, request, examples):
    from tests.conftest import make_store

    store = make_store(kind, tmp_path, request)
    settings = load_settings({"store": store.uri, "token_secret": "s" * 32}, environ={})
    tokens = TokenStore(store, load_secret(store, settings))  # the servers' cache: 1 s
    other_process = TokenStore(store, load_secret(store, settings))
    token, record = tokens.create_record(grants=[Grant.parse("read:*")], identity="ci")
    assert other_process.authenticate(token).token_id == record["id"]  # now cached there
    tokens.revoke(record["id"])
    revoked = time.monotonic()
    while True:
        try:
            other_process.authenticate(token)
        except Unauthorized:
            break
        assert time.monotonic() - revoked < 1.2, "still accepted after the bound"
        time.sleep(0.05)
    assert [t["id"] for t in tokens.list()] == []


def test_an_expired_token_is_refused(tmp_path):
    store = str(tmp_path / "store")
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    expired = make_token(store, "read:*", expires=past)
    hub = InProcessHub(store, anonymous_read=False)
    response = hub.client.get("/api/v1/models", headers=bearer(expired))
    assert response.status_code == 401 and "expired" in response.get_json()["error"]["message"]


def test_tokens_are_listed_without_their_secrets_and_revoked_over_the_api(shared):
    admin = shared.tokens["admin"]
    made = shared.client.post("/api/v1/tokens", json={
        "grants": ["write:vision", "read:nlp"], "identity": "alice", "description": "laptop",
        "expires_in_days": 30}, headers=bearer(admin))
    assert made.status_code == 201, made.text
    new = made.get_json()
    assert new["grants"] == ["write:vision", "read:nlp"] and new["token"].startswith("mh_")
    listing = shared.client.get("/api/v1/tokens", headers=bearer(admin))
    record = next(t for t in listing.get_json()["tokens"] if t["id"] == new["id"])
    assert record["identity"] == "alice" and record["expires"]
    assert new["token"] not in listing.text and "mac" not in listing.text
    assert shared.client.get("/api/v1/tokens",
                             headers=bearer(shared.grants["admin:nlp"])).status_code == 403
    assert shared.client.delete(f"/api/v1/tokens/{new['id']}",
                                headers=bearer(admin)).status_code == 204
    time.sleep(1.1)  # the hub's lookup cache
    assert shared.client.get("/api/v1/models", headers=bearer(new["token"])).status_code == 401
    # a namespace admin makes tokens for its namespace only
    ns_admin = shared.grants["admin:nlp"]
    assert shared.client.post("/api/v1/tokens", json={"grants": ["read:nlp"]},
                              headers=bearer(ns_admin)).status_code == 201
    assert shared.client.post("/api/v1/tokens", json={"grants": ["read:*"]},
                              headers=bearer(ns_admin)).status_code == 403


# --- the audit log --------------------------------------------------------------------------


def test_every_write_of_a_scripted_session_is_in_the_audit_log_in_order(tmp_path, examples):
    store = str(tmp_path / "store")
    hub = InProcessHub(store)
    writer = make_token(store, "write:vision", identity="carol")
    admin = hub.tokens["admin"]
    steps = [
        (lambda: publish(hub, "vision/cnn", writer, examples), "publish", "carol"),
        (lambda: hub.client.put("/api/v1/models/vision/cnn/aliases/prod", json={"version": 1},
                                headers=bearer(writer)), "alias set", "carol"),
        (lambda: publish(hub, "vision/cnn", writer, examples), "publish", "carol"),
        (lambda: hub.client.put("/api/v1/models/vision/cnn/aliases/prod", json={"version": 2},
                                headers=bearer(writer)), "alias set", "carol"),
        (lambda: hub.client.delete("/api/v1/models/vision/cnn/aliases/prod",
                                   headers=bearer(writer)), "alias remove", "carol"),
        (lambda: hub.client.delete("/api/v1/models/vision/cnn/versions/1",
                                   headers=bearer(admin)), "delete", "tests: admin"),
    ]
    for run, _, _ in steps:
        assert run().status_code in (200, 201, 204)
    cli = run_cli("--store", store, "publish", str(examples["half_plus_two"]), "--name",
                  "vision/cnn")
    assert cli.returncode == 0, cli.stderr
    records = AuditLog(Registry.open(store).store,
                       load_secret(Registry.open(store).store,
                                   load_settings({"store": store}, environ={}))).records("vision")
    assert [(r["action"], r["outcome"]) for r in records] == \
        [(action, "ok") for _, action, _ in steps] + [("publish", "ok")]
    identities = [r["identity"] for r in records]
    assert identities[:5] == ["carol"] * 5 and identities[6].startswith("local:")
    assert [r["version"] for r in records] == [1, 1, 2, 2, None, 1, 3]
    assert all(r["address"] for r in records)
    verified = run_cli("--store", store, "audit", "vision", "--verify")
    assert verified.returncode == 0, verified.stderr


@pytest.fixture
def logged(tmp_path):
    store = str(tmp_path / "store")
    registry = Registry.open(store)
    log = AuditLog(registry.store, load_secret(registry.store,
                                               load_settings({"store": store}, environ={})))
    from hub.audit import Actor

    for i in range(5):
        log.append(Actor("dave", None, "local"), "publish", model="team/m", version=i + 1)
    assert log.verify() == []
    return store, registry.store, log


def test_an_edited_record_is_detected(logged):
    store, objects, log = logged
    record = json.loads(objects.get_bytes(record_key("team", 3)))
    record["identity"] = "mallory"
    objects.put_bytes(record_key("team", 3), json.dumps(record).encode())
    problems = log.verify()
    assert any("#3: edited" in p for p in problems)
    result = run_cli("--store", store, "audit", "--verify")
    assert result.returncode == 1 and "edited" in result.stderr


def test_a_removed_record_is_detected_in_the_middle_and_at_the_end(logged):
    _, objects, log = logged
    objects.delete(record_key("team", 2))
    assert any("#2..#2 missing" in p for p in log.verify())
    objects.put_bytes(record_key("team", 2), b"{}")  # and a made-up one instead
    assert any("#None" in p or "edited" in p for p in log.verify())
    objects.delete(record_key("team", 2))
    objects.delete(record_key("team", 5))  # the newest: HEAD still says 5
    assert any("newest records were removed" in p for p in log.verify())


def test_the_newest_records_removed_with_an_unsigned_head_are_detected(logged):
    """Without the secret, a HEAD cannot be signed: one rewritten to match the shortened log
    must not pass."""
    _, objects, log = logged
    fourth = json.loads(objects.get_bytes(record_key("team", 4)))
    objects.delete(record_key("team", 5))
    objects.put_bytes(head_key("team"), canonical({"seq": 4, "hash": record_hash(fourth)}))
    assert any("HEAD not signed" in p for p in log.verify())


@pytest.mark.parametrize("asked", ["../../etc", "team/..", "Team"])
def test_a_log_is_asked_for_by_namespace_not_by_path(logged, asked):
    _, _, log = logged
    for read in (log.records, log.verify):
        with pytest.raises(InvalidReference, match="invalid namespace"):
            read(asked)
    assert len(log.records("team")) == 5 and log.verify("team") == []


def test_eight_processes_publishing_into_two_namespaces_lose_nothing(tmp_path, examples):
    """`modelhub publish` in 8 processes at once, twice over, four per namespace each time."""
    store = str(tmp_path / "store")
    settings = load_settings({"store": store}, environ={})
    load_secret(Registry.open(store).store, settings)  # made once, before the race
    for _ in range(2):
        processes = [subprocess.Popen(
            [*modelhub_command(), "--quiet", "--store", store, "publish",
             str(examples["half_plus_two"]), "--name", f"team-{i % 2}/model"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(8)]
        for process in processes:
            out, err = process.communicate(timeout=300)
            assert process.returncode == 0, err.decode()[-2000:]
    registry = Registry.open(store)
    log = AuditLog(registry.store, load_secret(registry.store, settings))
    for namespace in ("team-0", "team-1"):
        assert registry.versions(f"{namespace}/model") == list(range(1, 9))
        records = log.records(namespace)
        assert sorted(r["version"] for r in records) == list(range(1, 9))  # each exactly once
        assert sorted(r["seq"] for r in records) == list(range(1, 9))
        assert {r["action"] for r in records} == {"publish"}
    assert log.verify() == []
