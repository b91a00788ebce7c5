"""The hub HTTP API, called through Flask's test client on the app itself (the server process's
own behaviour is in test_server_process.py)."""
from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile

import pytest

from hub.registry import Registry
from tests.support.apps import InProcessHub
from tests.support.archives import SAVED_MODEL, entry, make_tar, tar_gz_of


def publish(hub: InProcessHub, name: str, body: bytes, scope: str | None = "write",
            metadata: dict | None = None, content_type: str = "application/gzip"):
    headers = {**hub.auth(scope), "Content-Type": content_type}
    if metadata is not None:
        headers["Modelhub-Metadata"] = json.dumps(metadata)
    return hub.client.post(f"/api/v1/models/{name}/versions", data=body, headers=headers)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.get_json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body


@pytest.fixture
def published(hub_app, examples, unique_name):
    """`unique_name` version 1 = half_plus_two, published over HTTP."""
    response = publish(hub_app, unique_name, tar_gz_of(examples["half_plus_two"]),
                       metadata={"description": "toy", "tags": {"task": "demo"},
                                 "aliases": ["prod"], "model_card": "# Card"})
    assert response.status_code == 201, response.text
    return unique_name


def test_publish_returns_the_manifest_with_its_location(hub_app, published):
    url = f"/api/v1/models/{published}"
    get = hub_app.client.get
    manifest = get(f"{url}/versions/1").get_json()
    assert manifest["name"] == published and manifest["version"] == 1
    assert manifest["tags"] == {"task": "demo"} and manifest["model_card"] == "# Card"
    assert manifest["artifacts"] == {}
    detail = get(url).get_json()
    assert detail["aliases"] == {"prod": 1} and detail["latest"] == 1
    assert [v["version"] for v in detail["versions"]] == [1]
    assert get(f"{url}/versions/prod").get_json()["version"] == 1
    assert get(f"{url}/versions/latest").get_json()["version"] == 1
    listing = get("/api/v1/models", query_string={"q": published}).get_json()
    assert [m["name"] for m in listing["models"]] == [published]


def test_listing_is_paginated(hub_app, examples, unique_name):
    body = tar_gz_of(examples["half_plus_two"])
    names = [f"{unique_name}-{i}" for i in range(3)]
    for name in names:
        assert publish(hub_app, name, body).status_code == 201
    pages = [hub_app.client.get("/api/v1/models",
                                query_string={"q": unique_name, "per_page": 2, "page": p}).get_json()
             for p in (1, 2)]
    assert [len(p["models"]) for p in pages] == [2, 1]
    assert pages[0]["total"] == 3
    assert [m["name"] for p in pages for m in p["models"]] == names
    assert_error(hub_app.client.get("/api/v1/models", query_string={"per_page": 0}),
                 400, "invalid_argument")


def test_files_have_etags_ranges_and_conditional_requests(hub_app, published, examples):
    url = f"/api/v1/models/{published}/versions/1/files/saved_model.pb"
    get = hub_app.client.get
    data = (examples["half_plus_two"] / "saved_model.pb").read_bytes()
    digest = hashlib.sha256(data).hexdigest()

    full = get(url)
    assert full.data == data
    assert full.headers["ETag"] == f'"{digest}"'
    assert full.headers["Accept-Ranges"] == "bytes"

    part = get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.data == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    tail = get(url, headers={"Range": "bytes=-5"})
    assert tail.data == data[-5:]

    assert get(url, headers={"If-None-Match": f'"{digest}"'}).status_code == 304
    stale = get(url, headers={"Range": "bytes=0-3", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.data == data
    assert_error(get(url, headers={"Range": f"bytes={len(data) + 10}-"}),
                 416, "range_not_satisfiable")
    assert_error(get(url.replace("saved_model.pb", "nope.bin")), 404, "file_not_found")


def test_archive_is_a_tar_gz_rooted_at_the_saved_model(hub_app, published, examples, tmp_path):
    response = hub_app.client.get(f"/api/v1/models/{published}/versions/1/archive")
    assert response.headers["Content-Type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(response.data), mode="r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    original = examples["half_plus_two"]
    for path in original.rglob("*"):
        if path.is_file():
            assert (tmp_path / path.relative_to(original)).read_bytes() == path.read_bytes()


def test_aliases_move_with_compare_and_swap_over_http(hub_app, published, examples):
    url = f"/api/v1/models/{published}"
    client, write = hub_app.client, hub_app.auth("write")
    assert publish(hub_app, published, tar_gz_of(examples["half_plus_two"])).status_code == 201
    moved = client.put(f"{url}/aliases/prod", json={"version": 2, "expected_version": 1},
                       headers=write)
    assert moved.status_code == 200 and moved.get_json()["previous"] == 1
    assert set(moved.get_json()) == {"name", "alias", "version", "previous", "updated"}
    assert_error(client.put(f"{url}/aliases/prod", json={"version": 1, "expected_version": 1},
                            headers=write), 412, "precondition_failed")
    assert client.delete(f"{url}/aliases/prod", headers=write).status_code == 204
    assert_error(client.get(f"{url}/versions/prod"), 404, "alias_not_found")


@pytest.mark.parametrize("method,path,scope,status,code", [
    ("post", "/versions", None, 401, "unauthorized"),
    ("post", "/versions", "read", 403, "forbidden"),
    ("put", "/aliases/x", None, 401, "unauthorized"),
    ("put", "/aliases/x", "read", 403, "forbidden"),
    ("delete", "/versions/1", None, 401, "unauthorized"),
    ("delete", "/versions/1", "write", 403, "forbidden"),
    ("delete", "/aliases/prod", "read", 403, "forbidden"),  # removing an alias is a write
])
def test_writes_need_a_token_of_enough_scope(hub_app, published, examples, method, path, scope,
                                             status, code):
    response = hub_app.client.open(
        f"/api/v1/models/{published}{path}", method=method.upper(),
        headers={**hub_app.auth(scope), "Content-Type": "application/gzip"},
        data=tar_gz_of(examples["half_plus_two"]) if method == "post" else json.dumps({"version": 1}))
    body = assert_error(response, status, code)
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "token" in body["error"]["message"]
    assert hub_app.client.get(f"/api/v1/models/{published}").get_json()["latest"] == 1


def test_only_admin_deletes_and_mints_tokens(hub_app, published):
    url = f"/api/v1/models/{published}"
    client = hub_app.client
    assert client.delete(f"{url}/aliases/prod", headers=hub_app.auth("write")).status_code == 204
    assert client.delete(f"{url}/versions/1", headers=hub_app.auth("admin")).status_code == 204
    assert_error(client.get(f"{url}/versions/1"), 404, "model_not_found")
    assert_error(client.post("/api/v1/tokens", json={"scope": "read"},
                             headers=hub_app.auth("write")), 403, "forbidden")
    made = client.post("/api/v1/tokens", json={"scope": "read"}, headers=hub_app.auth("admin"))
    assert made.status_code == 201 and made.get_json()["token"].startswith("mh_")
    assert_error(client.get("/api/v1/models",
                            headers={"Authorization": "Bearer mh_not-a-real-token"}),
                 401, "unauthorized")
    assert_error(client.get("/api/v1/models", headers={"Authorization": "Basic abc"}),
                 401, "unauthorized")


@pytest.mark.parametrize("selector,code", [("9", "version_not_found"), ("canary", "alias_not_found"),
                                           ("0", "invalid_reference")])
def test_unknown_versions_and_aliases(hub_app, published, selector, code):
    status = 400 if code == "invalid_reference" else 404
    assert_error(hub_app.client.get(f"/api/v1/models/{published}/versions/{selector}"),
                 status, code)


def test_unknown_models_and_routes(hub_app):
    client = hub_app.client
    assert_error(client.get("/api/v1/models/never-published"), 404, "model_not_found")
    assert_error(client.get("/api/v1/models/Bad%20Name"), 400, "invalid_reference")
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(client.patch("/api/v1/models"), 405, "method_not_allowed")


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", '{"version": "two"}', '{"version": 1, "x": 1}',
                                  '{"expected_version": 1}'])
def test_malformed_alias_bodies_are_400(hub_app, published, body):
    response = hub_app.client.put(f"/api/v1/models/{published}/aliases/prod", data=body,
                                  headers={**hub_app.auth("write"),
                                           "Content-Type": "application/json"})
    assert_error(response, 400, "invalid_argument")
    assert hub_app.client.get(f"/api/v1/models/{published}").get_json()["aliases"] == {"prod": 1}


def stored_versions(hub, name: str) -> list[int]:
    return Registry.open(hub.store).versions(name)


@pytest.mark.parametrize("archive,code", [
    (make_tar(SAVED_MODEL, entry("../../escape")), "unsafe_archive"),
    (make_tar(SAVED_MODEL, entry("link", None, type=tarfile.SYMTYPE, linkname="/etc/passwd")),
     "unsafe_archive"),
    (b"definitely not a tarball", "invalid_model"),
    (make_tar(entry("variables/x")), "invalid_model"),
])
def test_hostile_or_broken_uploads_are_refused_and_store_nothing(hub_app, unique_name, archive,
                                                                   code):
    assert_error(publish(hub_app, unique_name, archive), 400, code)
    assert stored_versions(hub_app, unique_name) == []


def test_bad_publish_requests(hub_app, examples, unique_name):
    body = tar_gz_of(examples["half_plus_two"])
    assert_error(publish(hub_app, unique_name, body, content_type="application/json"),
                 415, "unsupported_media_type")
    response = hub_app.client.post(f"/api/v1/models/{unique_name}/versions", data=body,
                                   headers={**hub_app.auth("write"),
                                            "Content-Type": "application/gzip",
                                            "Modelhub-Metadata": "{broken"})
    assert_error(response, 400, "invalid_argument")
    assert_error(publish(hub_app, unique_name, body, metadata={"aliases": ["Not Valid"]}),
                 400, "invalid_argument")
    assert_error(publish(hub_app, unique_name, body, metadata={"unknown_field": 1}),
                 400, "invalid_argument")
    assert_error(publish(hub_app, "Bad Name", body), 400, "invalid_reference")
    assert stored_versions(hub_app, unique_name) == []


def test_openapi_describes_every_hub_route(hub_app):
    from openapi_spec_validator import validate

    spec = hub_app.client.get("/api/v1/openapi.json").get_json()
    validate(spec)
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    checked = set()
    for rule in hub_app.app.url_map.iter_rules():
        if not rule.rule.startswith(("/api/v1/", "/models/")) or rule.endpoint.endswith("openapi"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if path == "/models/{target}":  # tensorflow_hub's NAME[/SELECTOR], documented so
                path = "/models/{name}/{version}"
            assert (path, method.lower()) in documented, (path, method)
            checked.add((path, method.lower()))
    assert len(checked) == 22  # every hub route was looked at


@pytest.fixture(scope="module")
def private_hub(tmp_path_factory) -> InProcessHub:
    return InProcessHub(str(tmp_path_factory.mktemp("private-hub") / "store"),
                        anonymous_read=False)


def test_with_anonymous_reads_off_every_read_needs_a_token(private_hub, examples):
    assert publish(private_hub, "hpt", tar_gz_of(examples["half_plus_two"])).status_code == 201
    for path in ("/api/v1/models", "/api/v1/models/hpt", "/api/v1/models/hpt/versions/1",
                 "/api/v1/models/hpt/versions/1/files/saved_model.pb", "/models/hpt/1"):
        assert_error(private_hub.client.get(path), 401, "unauthorized")
        allowed = private_hub.client.get(path, headers=private_hub.auth("read"))
        assert allowed.status_code == 200, path
        if "/files/" in path:
            assert "public" not in allowed.headers["Cache-Control"]


def test_alias_urls_are_not_cached_as_immutable(hub_app, published):
    base = f"/api/v1/models/{published}/versions"
    by_number = hub_app.client.get(f"{base}/1/files/saved_model.pb")
    assert "immutable" in by_number.headers["Cache-Control"]
    by_alias = hub_app.client.get(f"{base}/prod/files/saved_model.pb")
    assert "immutable" not in by_alias.headers["Cache-Control"]


def test_conditional_and_range_edge_cases(hub_app, published, examples):
    url = f"/api/v1/models/{published}/versions/1/files/saved_model.pb"
    get = hub_app.client.get
    data = (examples["half_plus_two"] / "saved_model.pb").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert get(url, headers={"If-None-Match": f'W/"{digest}"'}).status_code == 304
    multi = get(url, headers={"Range": "bytes=0-1,5-6"})
    assert multi.status_code == 200 and multi.data == data  # multi-range: whole file
    weak = get(url, headers={"Range": "bytes=0-3", "If-Range": f'W/"{digest}"'})
    assert weak.status_code == 200  # If-Range needs a strong match
    not_allowed = hub_app.client.patch("/api/v1/models")
    assert "GET" in not_allowed.headers["Allow"]
    assert get("/api/v1/models", query_string={"_": "123"}).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/models/{name}/versions/\u00b2",
                                  "/api/v1/models/{name}/versions/\u0663/files/saved_model.pb",
                                  "/models/{name}/\u00b2",
                                  "/api/v1/models/{name}%0A",
                                  "/api/v1/models/{name}/versions/prod%0A"])
def test_look_alike_versions_and_names_with_a_newline_are_400_not_500(hub_app, published, path):
    assert_error(hub_app.client.get(path.format(name=published)), 400, "invalid_reference")


def test_names_and_aliases_ending_in_a_newline_are_refused_on_write(hub_app, published, examples):
    assert_error(publish(hub_app, "a%0A", tar_gz_of(examples["half_plus_two"])),
                 400, "invalid_reference")
    assert_error(hub_app.client.put(f"/api/v1/models/{published}/aliases/prod%0A",
                                    json={"version": 1}, headers=hub_app.auth("write")),
                 400, "invalid_reference")


def test_the_metadata_header_is_utf8(hub_app, examples, unique_name):
    card = "# Modèle — 模型 ✓"
    text = json.dumps({"description": "naïve", "model_card": card}, ensure_ascii=False)
    # HTTP hands header bytes to the app as latin-1 text, as every WSGI server does
    headers = {**hub_app.auth("write"), "Content-Type": "application/gzip",
               "Modelhub-Metadata": text.encode("utf-8").decode("latin-1")}
    response = hub_app.client.post(f"/api/v1/models/{unique_name}/versions",
                                   data=tar_gz_of(examples["half_plus_two"]), headers=headers)
    assert response.status_code == 201, response.text
    manifest = hub_app.client.get(f"/api/v1/models/{unique_name}/versions/1").get_json()
    assert manifest["model_card"] == card and manifest["description"] == "naïve"
    headers["Modelhub-Metadata"] = b'{"description": "\xff"}'.decode("latin-1")
    response = hub_app.client.post(f"/api/v1/models/{unique_name}/versions",
                                   data=tar_gz_of(examples["half_plus_two"]), headers=headers)
    assert_error(response, 400, "invalid_argument")
