"""Cards rendered safely, front matter read, and what changed between versions."""
from __future__ import annotations

import copy
import re

from hub.catalog.cards import metadata_rows, render
from hub.catalog.changes import compare

HOSTILE = """---
license: apache-2.0
metrics: {accuracy: 0.99}
datasets: [mnist, emnist]
---
# A card

<script>alert("script")</script>

<img src="x" onerror="alert('onerror')">

[a link](javascript:alert('link')) and [a good one](https://example.org/about)

<a href="JaVaScRiPt:alert('mixed case')">mixed</a>

<svg onload="alert('svg')"><script>alert('svg script')</script></svg>

![remote](https://tracker.example.com/pixel.png) ![local](/catalog/static/logo.png)

<iframe src="https://example.org"></iframe>

<p style="background:url(javascript:alert(1))" onclick="alert('click')">styled</p>
"""


def test_a_hostile_card_keeps_its_text_and_loses_everything_active():
    metadata, html = render(HOSTILE)
    assert metadata == {"license": "apache-2.0", "metrics": {"accuracy": 0.99},
                        "datasets": ["mnist", "emnist"]}
    lowered = html.lower()
    for forbidden in ("<script", "onerror", "onload", "onclick", "<svg", "<iframe",
                      "tracker.example.com", "style="):
        assert forbidden not in lowered, forbidden
    # no attribute holds a javascript: URL (the unlinked Markdown stays as harmless text)
    assert not re.search(r"=\s*[\"']?\s*javascript:", lowered)
    assert "<h1>A card</h1>" in html
    assert 'href="https://example.org/about"' in html and "noopener" in html
    assert 'src="/catalog/static/logo.png"' in html
    assert "styled" in html


def test_front_matter_becomes_rows_and_a_card_without_it_is_left_alone():
    assert metadata_rows({"license": "mit", "metrics": {"f1": 0.8}, "tags": ["a", "b"]}) == \
        [("license", "mit"), ("metrics.f1", "0.8"), ("tags", "a, b")]
    metadata, html = render("Just **text**.\n\n---\n\nnot front matter")
    assert metadata == {} and "<strong>text</strong>" in html
    assert render("---\n- a list\n---\nbody")[0] == {}  # front matter must be a mapping
    data_image = "![dot](data:image/png;base64,iVBORw0KGgo=)"
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in render(data_image)[1]
    # SVG can carry script: as Markdown (which markdown-it leaves as text) and as raw HTML
    assert "<img" not in render("![svg](data:image/svg+xml;base64,PHN2Zz4=)")[1]
    raw = render('<img src="data:image/svg+xml;base64,PHN2Zz4=" alt="x">')[1]
    assert "<img" in raw and "data:image/svg" not in raw


MANIFEST = {"version": 1, "total_size": 100, "files": [
    {"path": "saved_model.pb", "sha256": "a" * 64, "size": 60},
    {"path": "variables/variables.index", "sha256": "b" * 64, "size": 40}],
    "signatures": {"serving_default": {
        "method_name": "tensorflow/serving/predict",
        "inputs": {"x": {"dtype": "float32", "shape": [-1, 3]}},
        "outputs": {"y": {"dtype": "float32", "shape": [-1]}}},
        "old": {"method_name": "tensorflow/serving/predict", "inputs": {}, "outputs": {}}}}


def test_what_changed_says_what_breaks_callers():
    assert compare(None, MANIFEST) == {"first": True}
    newer = copy.deepcopy(MANIFEST)
    newer.update(version=2, total_size=130)
    newer["files"][0]["sha256"] = "c" * 64
    newer["files"].append({"path": "assets/vocab.txt", "sha256": "d" * 64, "size": 30})
    del newer["signatures"]["old"]
    newer["signatures"]["extra"] = {"method_name": "m", "inputs": {}, "outputs": {}}
    serving = newer["signatures"]["serving_default"]
    serving["inputs"]["x"]["dtype"] = "float64"
    serving["outputs"]["z"] = {"dtype": "int64", "shape": [-1]}
    found = compare(MANIFEST, newer)
    assert found["from"] == 1 and found["size_delta"] == 30 and found["breaking"]
    assert found["signatures"]["added"] == ["extra"]
    assert found["signatures"]["removed"] == ["old"]
    (changed,) = found["signatures"]["changed"]
    assert changed["breaking"] and "input x: dtype float32 -> float64" in changed["notes"]
    assert "output z added" in changed["notes"]
    assert found["files"] == {"added": ["assets/vocab.txt"], "removed": [],
                              "changed": ["saved_model.pb"]}
    compatible = copy.deepcopy(MANIFEST)
    compatible["version"] = 2
    compatible["signatures"]["serving_default"]["outputs"]["extra"] = {"dtype": "float32",
                                                                      "shape": [-1]}
    assert not compare(MANIFEST, compatible)["breaking"]  # a new output breaks no one
