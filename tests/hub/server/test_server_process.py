"""What only the real server process shows: its logs, gunicorn's handling of bodies that are
too large or cut off, and a corrupted file stopping a response mid-stream."""
from __future__ import annotations

import json
import socket

import requests

from hub.registry import Registry
from hub.registry.layout import blob_key
from tests.support.archives import SAVED_MODEL, entry, make_tar, tar_gz_of


def auth(server, scope: str) -> dict:
    return {"Authorization": f"Bearer {server.tokens[scope]}"}


def publish(server, name: str, body: bytes, metadata: dict | None = None) -> requests.Response:
    headers = {**auth(server, "write"), "Content-Type": "application/gzip"}
    if metadata is not None:
        headers["Modelhub-Metadata"] = json.dumps(metadata)
    return requests.post(f"{server.url}/api/v1/models/{name}/versions", data=body, headers=headers)


def stored_versions(server, name: str) -> list[int]:
    return Registry.open(server.store).versions(name)


def test_tokens_never_appear_in_the_server_log(hub_server):
    requests.get(f"{hub_server.url}/api/v1/models", headers=auth(hub_server, "admin"))
    requests.get(f"{hub_server.url}/api/v1/models", headers={"Authorization": "Bearer mh_leak-me"})
    log = hub_server.log_text()
    assert "GET /api/v1/models" in log  # the access log is on
    for token in [*hub_server.tokens.values(), "mh_leak-me"]:
        assert token not in log


def test_a_chunked_upload_over_the_limit_is_cut_off_with_413(hub_server, unique_name):
    archive = make_tar(SAVED_MODEL, entry("variables/big", b"\1" * (8 * 1024 * 1024)), gz=False)

    def too_much():  # 8 MiB against the 4 MiB limit, with no Content-Length
        for start in range(0, len(archive), 128 * 1024):
            yield archive[start:start + 128 * 1024]

    response = requests.post(f"{hub_server.url}/api/v1/models/{unique_name}/versions",
                             data=too_much(),
                             headers={**auth(hub_server, "write"), "Content-Type": "application/x-tar"})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_entity_too_large"
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


def test_a_corrupted_file_is_never_served_whole(hub_server, examples, unique_name, tmp_path):
    import shutil

    # A file only this model has: blobs are shared by content, and the hub is shared by tests.
    folder = tmp_path / "model"
    shutil.copytree(examples["half_plus_two"], folder)
    (folder / "assets").mkdir(exist_ok=True)
    (folder / "assets" / "vocab.txt").write_bytes(unique_name.encode() * 5000)
    assert publish(hub_server, unique_name, tar_gz_of(folder)).status_code == 201
    registry = Registry.open(hub_server.store)
    entry_ = registry.file_entry(registry.get(f"{unique_name}/1"), "assets/vocab.txt")
    data = bytearray(registry.store.get_bytes(blob_key(entry_["sha256"])))
    data[-1] ^= 0xFF  # same size, last byte flipped
    registry.store.put_bytes(blob_key(entry_["sha256"]), bytes(data))
    url = f"{hub_server.url}/api/v1/models/{unique_name}/versions/1/files/assets/vocab.txt"
    try:
        response = requests.get(url)
    except requests.exceptions.ChunkedEncodingError:
        return  # the body stopped short of its Content-Length
    # or, when the file is a single chunk, nothing of it was sent: an error status instead
    assert response.status_code >= 500 and response.content != bytes(data)


def raw_exchange(server, head: str, body: bytes, close_write: bool = False) -> bytes:
    """Send bytes as they are; what the server answers before it closes the connection."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode() + body)
        if close_write:
            sock.shutdown(socket.SHUT_WR)  # the client stops sending: the body ends here
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


def test_a_body_shorter_than_its_content_length_publishes_nothing(hub_server, examples,
                                                                  unique_name):
    archive = make_tar(*[entry(p.relative_to(examples["half_plus_two"]).as_posix(),
                               p.read_bytes())
                         for p in sorted(examples["half_plus_two"].rglob("*")) if p.is_file()],
                       gz=False)
    cut = archive.index(b"variables/") + 512  # saved_model.pb is in; the variables are not
    head = (f"POST /api/v1/models/{unique_name}/versions HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {hub_server.tokens['write']}\r\n"
            f"Content-Type: application/x-tar\r\nContent-Length: {len(archive)}\r\n\r\n")
    answer = raw_exchange(hub_server, head, archive[:cut], close_write=True)
    assert not answer.startswith(b"HTTP/1.1 201"), answer[:200]
    assert stored_versions(hub_server, unique_name) == []


def test_a_chunked_body_with_a_bad_chunk_size_is_400(hub_server, unique_name):
    head = (f"POST /api/v1/models/{unique_name}/versions HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {hub_server.tokens['write']}\r\n"
            "Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n")
    answer = raw_exchange(hub_server, head, b"zz-not-hex\r\nabc\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert stored_versions(hub_server, unique_name) == []
