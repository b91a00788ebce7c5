"""The catalog without a browser: pages as plain HTTP requests (JavaScript off), the index kept
current, the URL tensorflow_hub takes still answering programs, and a private hub's sign-in with
its CSRF checks."""
from __future__ import annotations

import re

import pytest

from hub.catalog.index import SNAPSHOT_KEY, CatalogIndex
from hub.registry import Registry
from tests.hub.test_namespaces import make_token
from tests.support.apps import InProcessHub

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
CARD = """---
license: apache-2.0
datasets: [numbers]
---
# Half plus two

It computes **0.5 x + 2**.
"""


@pytest.fixture(scope="module")
def catalog_hub(tmp_path_factory, examples):
    store = str(tmp_path_factory.mktemp("catalog") / "store")
    registry = Registry.open(store)
    registry.publish(examples["half_plus_two"], "hpt", description="Half plus two",
                     tags={"task": "regression"}, license="Apache-2.0", model_card=CARD,
                     aliases=["stable"])
    registry.publish(examples["multi_io"], "hpt", description="Now with strings")
    registry.publish(examples["image_classifier"], "vision/cnn", description="A small CNN",
                     tags={"task": "images"}, license="MIT")
    registry.create_namespace("secret", private=True)
    registry.publish(examples["half_plus_two"], "secret/model", description="Hidden")
    return InProcessHub(store)


def page(hub, path: str, **headers) -> str:
    response = hub.client.get(path, headers={**HTML, **headers})
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    assert response.content_type.startswith("text/html")
    return response.get_data(as_text=True)


def test_the_list_searches_filters_and_sorts(catalog_hub):
    everything = page(catalog_hub, "/")
    assert 'href="/models/hpt"' in everything and 'href="/models/vision/cnn"' in everything
    assert "secret/model" not in everything  # private, and the caller is anonymous
    assert "vision/cnn" not in page(catalog_hub, "/?q=half")
    assert "vision/cnn" in page(catalog_hub, "/?q=images")  # tags are searched too
    assert 'href="/models/hpt"' not in page(catalog_hub, "/?license=MIT")
    assert 'href="/models/hpt"' not in page(catalog_hub, "/?tag=task%3Dimages")
    by_name = re.findall(r'<h2><a href="/models/([^"]+)"', page(catalog_hub, "/?sort=name"))
    assert by_name == sorted(by_name)
    assert "stable → 1" in everything  # alias chips


def test_a_model_page_shows_its_card_signatures_versions_and_snippets(catalog_hub):
    text = page(catalog_hub, "/models/hpt/1")
    assert "<h1>Half plus two</h1>" in text and "<strong>0.5 x + 2</strong>" in text
    assert "<th scope=\"row\">datasets</th><td>numbers</td>" in text  # front matter
    for signature in ("serving_default", "classify_x_to_y", "regress_x_to_y"):
        assert f"<code>{signature}</code>" in text
    assert "The first version." in text
    assert "tensorflow_hub.load(&#34;http://localhost/models/hpt/1&#34;)" in text
    assert "/v1/models/hpt/versions/1:predict" in text
    assert "Not served here." in text  # the hub role serves nothing


def test_a_version_page_says_what_changed_and_links_every_file(catalog_hub):
    text = page(catalog_hub, "/models/hpt/2")
    assert "What changed in version 2" in text and "breaks existing callers" in text
    assert "signature <code>classify_x_to_y</code> removed" in text
    manifest = catalog_hub.client.get("/api/v1/models/hpt/versions/2").get_json()
    for entry in manifest["files"]:
        assert f'href="/api/v1/models/hpt/versions/2/files/{entry["path"]}"' in text
        assert entry["sha256"] in text
    by_alias = page(catalog_hub, "/models/hpt/stable")  # stable -> 1
    assert '<span class="version">version 1</span></h1>' in by_alias
    assert "Files of version 1" in by_alias and "Files of version 2" not in by_alias


def test_programs_still_get_the_archive_and_the_manifest(catalog_hub):
    archive = catalog_hub.client.get("/models/hpt/1?tf-hub-format=compressed",
                                     headers=HTML)  # even a browser-like Accept
    assert archive.status_code == 200 and archive.content_type == "application/gzip"
    manifest = catalog_hub.client.get("/models/vision/cnn/1")
    assert manifest.content_type == "application/json" and \
        manifest.get_json()["name"] == "vision/cnn"


def test_a_private_model_is_not_found_and_a_read_token_opens_it(catalog_hub):
    hidden = catalog_hub.client.get("/models/secret/model", headers=HTML)
    assert hidden.status_code == 404 and "Hidden" not in hidden.get_data(as_text=True)
    token = make_token(catalog_hub.store, "read:secret")
    assert "Hidden" in page(catalog_hub, "/models/secret/model",
                            Authorization=f"Bearer {token}")
    assert "secret/model" in page(catalog_hub, "/", Authorization=f"Bearer {token}")


def test_the_index_follows_writes_of_other_processes_and_keeps_a_snapshot(tmp_path, examples):
    registry = Registry.open(str(tmp_path / "store"))
    registry.publish(examples["half_plus_two"], "first")
    index = CatalogIndex(registry, poll_seconds=0)
    assert index.refresh() == 1
    assert [e["name"] for e in index.search()] == ["first"]
    other = Registry.open(str(tmp_path / "store"))  # another replica writes
    other.publish(examples["half_plus_two"], "second")
    other.set_alias("first", "prod", 1)
    assert index.refresh() == 2  # the new model, and the one whose alias moved
    assert index.entry("first")["aliases"] == {"prod": 1}
    assert index.refresh() == 0  # nothing changed: nothing read
    other.delete_version("second", 1)
    index.refresh()
    assert [e["name"] for e in index.search()] == ["first"]
    assert registry.store.exists(SNAPSHOT_KEY)
    restarted = CatalogIndex(registry, poll_seconds=0)
    restarted._load_snapshot()
    assert restarted.refresh() == 0  # the snapshot was current: no manifest read


@pytest.fixture
def private_hub(tmp_path, examples):
    store = str(tmp_path / "store")
    Registry.open(store).publish(examples["half_plus_two"], "hpt")
    return InProcessHub(store, anonymous_read=False)


def test_a_private_hub_signs_people_in_with_a_token_and_checks_csrf(private_hub):
    client = private_hub.client
    redirected = client.get("/models/hpt", headers=HTML)
    assert redirected.status_code == 302 and "/sign-in?next=/models/hpt" in \
        redirected.headers["Location"]
    form = page(private_hub, "/sign-in?next=/models/hpt")
    nonce = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    assert client.post("/sign-in", data={"token": private_hub.tokens["read"], "csrf": "forged",
                                         "next": "/"}).status_code == 403
    wrong = client.post("/sign-in", data={"token": "mh_nope", "csrf": nonce, "next": "/"})
    assert wrong.status_code == 401
    signed_in = client.post("/sign-in", data={"token": private_hub.tokens["read"],
                                              "csrf": nonce, "next": "/models/hpt"})
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/models/hpt"
    cookie = next(c for c in signed_in.headers.getlist("Set-Cookie")
                  if c.startswith("modelhub_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    text = page(private_hub, "/models/hpt")
    assert "Sign out" in text
    csrf = re.search(r'name="csrf" value="([^"]+)"', text).group(1)
    assert client.post("/sign-out", data={"csrf": "forged"}).status_code == 403
    signed_out = client.post("/sign-out", data={"csrf": csrf})
    assert signed_out.status_code == 302
    assert client.get("/", headers=HTML).status_code == 302
    assert client.get("/sign-in?next=//evil.example/x", headers=HTML).status_code == 200
    assert 'value="//evil' not in page(private_hub, "/sign-in?next=//evil.example/x")


def test_the_list_stays_a_list_lookup_on_a_big_index(catalog_hub):
    """Reads come from memory: the store is not asked per model (the scale benchmark measures
    10,000 models on S3)."""
    index = catalog_hub.app.extensions["catalog"].index
    index.entries()  # the first refresh is over
    store, calls = index.registry.store, []
    for method in ("list", "list_keys", "get_bytes", "get_json", "exists"):
        original = getattr(store, method)
        setattr(store, method, lambda *a, _m=method, _f=original, **k: calls.append(_m) or
                _f(*a, **k))
    try:
        found = [index.search(query) for query in ("half", "", "cnn")]
    finally:
        for method in ("list", "list_keys", "get_bytes", "get_json", "exists"):
            delattr(store, method)
    assert calls == [] and any(found)
