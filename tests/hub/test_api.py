"""The hub HTTP API, called the way another program would: plain HTTP to a real server process."""
from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile

import pytest
import requests

from hub.registry import Registry
from tests.hub.test_archive import SAVED_MODEL, entry, make_tar


def auth(server, scope: str) -> dict:
    return {"Authorization": f"Bearer {server.tokens[scope]}"}


def tar_gz_of(folder) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()


def publish(server, name: str, body: bytes, scope: str = "write", metadata: dict | None = None,
            content_type: str = "application/gzip") -> requests.Response:
    headers = {**auth(server, scope), "Content-Type": content_type}
    if metadata is not None:
        headers["Modelhub-Metadata"] = json.dumps(metadata)
    return requests.post(f"{server.url}/api/v1/models/{name}/versions", data=body, headers=headers)


def assert_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body


@pytest.fixture
def published(hub_server, examples, unique_name):
    """`unique_name` version 1 = half_plus_two, published over HTTP."""
    response = publish(hub_server, unique_name, tar_gz_of(examples["half_plus_two"]),
                       metadata={"description": "toy", "tags": {"task": "demo"},
                                 "aliases": ["prod"], "model_card": "# Card"})
    assert response.status_code == 201, response.text
    return unique_name


def test_publish_returns_the_manifest_with_its_location(hub_server, published):
    url = f"{hub_server.url}/api/v1/models/{published}"
    manifest = requests.get(f"{url}/versions/1").json()
    assert manifest["name"] == published and manifest["version"] == 1
    assert manifest["tags"] == {"task": "demo"} and manifest["model_card"] == "# Card"
    detail = requests.get(url).json()
    assert detail["aliases"] == {"prod": 1} and detail["latest"] == 1
    assert [v["version"] for v in detail["versions"]] == [1]
    assert requests.get(f"{url}/versions/prod").json()["version"] == 1
    assert requests.get(f"{url}/versions/latest").json()["version"] == 1
    listing = requests.get(f"{hub_server.url}/api/v1/models", params={"q": published}).json()
    assert [m["name"] for m in listing["models"]] == [published]


def test_listing_is_paginated(hub_server, examples, unique_name):
    body = tar_gz_of(examples["half_plus_two"])
    names = [f"{unique_name}-{i}" for i in range(3)]
    for name in names:
        assert publish(hub_server, name, body).status_code == 201
    pages = [requests.get(f"{hub_server.url}/api/v1/models",
                          params={"q": unique_name, "per_page": 2, "page": p}).json()
             for p in (1, 2)]
    assert [len(p["models"]) for p in pages] == [2, 1]
    assert pages[0]["total"] == 3
    assert [m["name"] for p in pages for m in p["models"]] == names
    assert_error(requests.get(f"{hub_server.url}/api/v1/models", params={"per_page": 0}),
                 400, "invalid_argument")


def test_files_have_etags_ranges_and_conditional_requests(hub_server, published, examples):
    url = f"{hub_server.url}/api/v1/models/{published}/versions/1/files/saved_model.pb"
    data = (examples["half_plus_two"] / "saved_model.pb").read_bytes()
    digest = hashlib.sha256(data).hexdigest()

    full = requests.get(url)
    assert full.content == data
    assert full.headers["ETag"] == f'"{digest}"'
    assert full.headers["Accept-Ranges"] == "bytes"

    part = requests.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    tail = requests.get(url, headers={"Range": "bytes=-5"})
    assert tail.content == data[-5:]

    assert requests.get(url, headers={"If-None-Match": f'"{digest}"'}).status_code == 304
    stale = requests.get(url, headers={"Range": "bytes=0-3", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == data
    assert_error(requests.get(url, headers={"Range": f"bytes={len(data) + 10}-"}),
                 416, "range_not_satisfiable")
    assert_error(requests.get(url.replace("saved_model.pb", "nope.bin")), 404, "file_not_found")


def test_archive_is_a_tar_gz_rooted_at_the_saved_model(hub_server, published, examples, tmp_path):
    response = requests.get(f"{hub_server.url}/api/v1/models/{published}/versions/1/archive")
    assert response.headers["Content-Type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    original = examples["half_plus_two"]
    for path in original.rglob("*"):
        if path.is_file():
            assert (tmp_path / path.relative_to(original)).read_bytes() == path.read_bytes()


def test_aliases_move_with_compare_and_swap_over_http(hub_server, published, examples):
    url = f"{hub_server.url}/api/v1/models/{published}"
    assert publish(hub_server, published, tar_gz_of(examples["half_plus_two"])).status_code == 201
    moved = requests.put(f"{url}/aliases/prod", json={"version": 2, "expected_version": 1},
                         headers=auth(hub_server, "write"))
    assert moved.status_code == 200 and moved.json()["previous"] == 1
    assert_error(requests.put(f"{url}/aliases/prod", json={"version": 1, "expected_version": 1},
                              headers=auth(hub_server, "write")), 412, "precondition_failed")
    assert requests.delete(f"{url}/aliases/prod", headers=auth(hub_server, "write")).status_code == 204
    assert_error(requests.get(f"{url}/versions/prod"), 404, "alias_not_found")


@pytest.mark.parametrize("method,path,scope,status,code", [
    ("post", "/versions", None, 401, "unauthorized"),
    ("post", "/versions", "read", 403, "forbidden"),
    ("put", "/aliases/x", None, 401, "unauthorized"),
    ("put", "/aliases/x", "read", 403, "forbidden"),
    ("delete", "/versions/1", None, 401, "unauthorized"),
    ("delete", "/versions/1", "write", 403, "forbidden"),
])
def test_writes_need_a_token_of_enough_scope(hub_server, published, examples, method, path, scope,
                                             status, code):
    headers = auth(hub_server, scope) if scope else {}
    response = requests.request(method, f"{hub_server.url}/api/v1/models/{published}{path}",
                                headers={**headers, "Content-Type": "application/gzip"},
                                data=tar_gz_of(examples["half_plus_two"]) if method == "post" else
                                json.dumps({"version": 1}))
    body = assert_error(response, status, code)
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "token" in body["error"]["message"]
    assert requests.get(f"{hub_server.url}/api/v1/models/{published}").json()["latest"] == 1


def test_only_admin_deletes_and_mints_tokens(hub_server, published):
    url = f"{hub_server.url}/api/v1/models/{published}"
    assert requests.delete(f"{url}/aliases/prod", headers=auth(hub_server, "write")).status_code == 204
    assert requests.delete(f"{url}/versions/1", headers=auth(hub_server, "admin")).status_code == 204
    assert_error(requests.get(f"{url}/versions/1"), 404, "model_not_found")
    assert_error(requests.post(f"{hub_server.url}/api/v1/tokens", json={"scope": "read"},
                               headers=auth(hub_server, "write")), 403, "forbidden")
    made = requests.post(f"{hub_server.url}/api/v1/tokens", json={"scope": "read"},
                         headers=auth(hub_server, "admin"))
    assert made.status_code == 201 and made.json()["token"].startswith("mh_")
    assert_error(requests.get(f"{hub_server.url}/api/v1/models",
                              headers={"Authorization": "Bearer mh_not-a-real-token"}),
                 401, "unauthorized")
    assert_error(requests.get(f"{hub_server.url}/api/v1/models",
                              headers={"Authorization": "Basic abc"}), 401, "unauthorized")


def test_tokens_never_appear_in_the_server_log(hub_server, published):
    requests.get(f"{hub_server.url}/api/v1/models", headers=auth(hub_server, "admin"))
    requests.get(f"{hub_server.url}/api/v1/models", headers={"Authorization": "Bearer mh_leak-me"})
    log = hub_server.log_text()
    assert "GET /api/v1/models" in log  # the access log is on
    for token in [*hub_server.tokens.values(), "mh_leak-me"]:
        assert token not in log


@pytest.mark.parametrize("selector,code", [("9", "version_not_found"), ("canary", "alias_not_found"),
                                           ("0", "invalid_reference")])
def test_unknown_versions_and_aliases(hub_server, published, selector, code):
    status = 400 if code == "invalid_reference" else 404
    assert_error(requests.get(f"{hub_server.url}/api/v1/models/{published}/versions/{selector}"),
                 status, code)


def test_unknown_models_and_routes(hub_server):
    assert_error(requests.get(f"{hub_server.url}/api/v1/models/never-published"), 404,
                 "model_not_found")
    assert_error(requests.get(f"{hub_server.url}/api/v1/models/Bad%20Name"), 400,
                 "invalid_reference")
    assert_error(requests.get(f"{hub_server.url}/api/v1/nothing-here"), 404, "not_found")
    assert_error(requests.patch(f"{hub_server.url}/api/v1/models"), 405, "method_not_allowed")


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", '{"version": "two"}', '{"version": 1, "x": 1}',
                                  '{"expected_version": 1}'])
def test_malformed_alias_bodies_are_400(hub_server, published, body):
    response = requests.put(f"{hub_server.url}/api/v1/models/{published}/aliases/prod", data=body,
                            headers={**auth(hub_server, "write"), "Content-Type": "application/json"})
    assert_error(response, 400, "invalid_argument")
    assert requests.get(f"{hub_server.url}/api/v1/models/{published}").json()["aliases"] == {"prod": 1}


def stored_versions(server, name: str) -> list[int]:
    return Registry.open(server.store).versions(name)


@pytest.mark.parametrize("archive,code", [
    (make_tar(SAVED_MODEL, entry("../../escape")), "unsafe_archive"),
    (make_tar(SAVED_MODEL, entry("link", None, type=tarfile.SYMTYPE, linkname="/etc/passwd")),
     "unsafe_archive"),
    (b"definitely not a tarball", "invalid_model"),
    (make_tar(entry("variables/x")), "invalid_model"),
])
def test_hostile_or_broken_uploads_are_refused_and_store_nothing(hub_server, unique_name, archive,
                                                                   code):
    assert_error(publish(hub_server, unique_name, archive), 400, code)
    assert stored_versions(hub_server, unique_name) == []


def test_bad_publish_requests(hub_server, examples, unique_name):
    body = tar_gz_of(examples["half_plus_two"])
    assert_error(publish(hub_server, unique_name, body, content_type="application/json"),
                 415, "unsupported_media_type")
    response = requests.post(f"{hub_server.url}/api/v1/models/{unique_name}/versions", data=body,
                             headers={**auth(hub_server, "write"), "Content-Type": "application/gzip",
                                      "Modelhub-Metadata": "{broken"})
    assert_error(response, 400, "invalid_argument")
    assert_error(publish(hub_server, unique_name, body, metadata={"aliases": ["Not Valid"]}),
                 400, "invalid_argument")
    assert_error(publish(hub_server, unique_name, body, metadata={"unknown_field": 1}),
                 400, "invalid_argument")
    assert_error(publish(hub_server, "Bad Name", body), 400, "invalid_reference")
    assert stored_versions(hub_server, unique_name) == []


def test_a_chunked_upload_over_the_limit_is_cut_off_with_413(hub_server, unique_name):
    archive = make_tar(SAVED_MODEL, entry("variables/big", b"\1" * (8 * 1024 * 1024)), gz=False)

    def too_much():  # 8 MiB against the 4 MiB limit, with no Content-Length
        for start in range(0, len(archive), 128 * 1024):
            yield archive[start:start + 128 * 1024]

    response = requests.post(f"{hub_server.url}/api/v1/models/{unique_name}/versions",
                             data=too_much(),
                             headers={**auth(hub_server, "write"), "Content-Type": "application/x-tar"})
    assert_error(response, 413, "request_entity_too_large")
    assert stored_versions(hub_server, unique_name) == []


def test_a_declared_oversized_upload_is_refused_before_the_body_is_sent(hub_server, unique_name):
    host, port = hub_server.url.removeprefix("http://").split(":")
    request = (f"POST /api/v1/models/{unique_name}/versions HTTP/1.1\r\n"
               f"Host: {host}\r\nAuthorization: Bearer {hub_server.tokens['write']}\r\n"
               "Content-Type: application/gzip\r\nContent-Length: 1000000000000\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode() + b"\x1f\x8b")  # two bytes of a terabyte
        answer = b""
        while b"\r\n\r\n" not in answer:  # the whole answer, while the body is still unsent
            answer += sock.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(body) < length:
            body += sock.recv(65536)
    answer = (head + b"\r\n\r\n" + body).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer
    assert '"request_entity_too_large"' in answer
    assert stored_versions(hub_server, unique_name) == []


def test_openapi_describes_every_hub_route(hub_server):
    from openapi_spec_validator import validate

    from serving.app import create_app

    spec = requests.get(f"{hub_server.url}/api/v1/openapi.json").json()
    validate(spec)
    app = create_app({"STORE": hub_server.store})
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    checked = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/api/v1/", "/models/")) or rule.endpoint.endswith("openapi"):
            continue
        path = rule.rule.replace("<path:path>", "{path}").replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if path == "/models/{name}":
                path = "/models/{name}/{version}"  # documented once, version optional
            assert (path, method.lower()) in documented, (path, method)
            checked.add((path, method.lower()))
    assert len(checked) == 15  # every hub route was looked at


def test_a_corrupted_file_is_never_served_whole(hub_server, examples, unique_name, tmp_path):
    import shutil

    from hub.registry import blob_key

    # A file only this model has: blobs are shared by content, and the hub is shared by tests.
    folder = tmp_path / "model"
    shutil.copytree(examples["half_plus_two"], folder)
    (folder / "assets").mkdir(exist_ok=True)
    (folder / "assets" / "vocab.txt").write_bytes(unique_name.encode() * 5000)
    assert publish(hub_server, unique_name, tar_gz_of(folder)).status_code == 201
    registry = Registry.open(hub_server.store)
    entry = registry.file_entry(registry.get(f"{unique_name}/1"), "assets/vocab.txt")
    data = bytearray(registry.store.get_bytes(blob_key(entry["sha256"])))
    data[-1] ^= 0xFF  # same size, last byte flipped
    registry.store.put_bytes(blob_key(entry["sha256"]), bytes(data))
    url = f"{hub_server.url}/api/v1/models/{unique_name}/versions/1/files/assets/vocab.txt"
    try:
        response = requests.get(url)
    except requests.exceptions.ChunkedEncodingError:
        return  # the body stopped short of its Content-Length
    # or, when the file is a single chunk, nothing of it was sent: an error status instead
    assert response.status_code >= 500 and response.content != bytes(data)


@pytest.fixture(scope="module")
def private_hub(tmp_path_factory):
    from tests.conftest import running_hub

    root = tmp_path_factory.mktemp("private-hub")
    with running_hub(str(root / "store"), root / "server.log",
                     env={"MODELHUB_ANONYMOUS_READ": "False"}) as server:
        yield server


def test_with_anonymous_reads_off_every_read_needs_a_token(private_hub, examples):
    assert publish(private_hub, "hpt", tar_gz_of(examples["half_plus_two"])).status_code == 201
    for path in ("/api/v1/models", "/api/v1/models/hpt", "/api/v1/models/hpt/versions/1",
                 "/api/v1/models/hpt/versions/1/files/saved_model.pb", "/models/hpt/1"):
        assert_error(requests.get(private_hub.url + path), 401, "unauthorized")
        allowed = requests.get(private_hub.url + path, headers=auth(private_hub, "read"))
        assert allowed.status_code == 200, path
        if "/files/" in path:
            assert "public" not in allowed.headers["Cache-Control"]


def test_alias_urls_are_not_cached_as_immutable(hub_server, published):
    base = f"{hub_server.url}/api/v1/models/{published}/versions"
    by_number = requests.get(f"{base}/1/files/saved_model.pb")
    assert "immutable" in by_number.headers["Cache-Control"]
    by_alias = requests.get(f"{base}/prod/files/saved_model.pb")
    assert "immutable" not in by_alias.headers["Cache-Control"]


def test_conditional_and_range_edge_cases(hub_server, published, examples):
    url = f"{hub_server.url}/api/v1/models/{published}/versions/1/files/saved_model.pb"
    data = (examples["half_plus_two"] / "saved_model.pb").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert requests.get(url, headers={"If-None-Match": f'W/"{digest}"'}).status_code == 304
    multi = requests.get(url, headers={"Range": "bytes=0-1,5-6"})
    assert multi.status_code == 200 and multi.content == data  # multi-range: whole file
    weak = requests.get(url, headers={"Range": "bytes=0-3", "If-Range": f'W/"{digest}"'})
    assert weak.status_code == 200  # If-Range needs a strong match
    not_allowed = requests.patch(f"{hub_server.url}/api/v1/models")
    assert "GET" in not_allowed.headers["Allow"]
    assert requests.get(f"{hub_server.url}/api/v1/models", params={"_": "123"}).status_code == 200
