"""The graph safety scan refuses every model of the attack zoo, wherever the attack hides, and
passes every model people publish (the examples and the benign zoo)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.registry import Registry
from hub.savedmodel.scan import default_allowlist, scan_saved_model
from modelhub.cli import cli
from schemas.errors import UnsafeModel
from tests.support.apps import InProcessHub
from tests.support.archives import tar_gz_of
from tests.support.attacks import ATTACKS
from tests.support.benign import BENIGN

#: The op each attack must be refused for (several ops may be flagged; this one at least).
REFUSED_FOR = {
    "read_file": "ReadFile", "read_file_from_input": "ReadFile",
    "matching_files_textline": "MatchingFiles", "tfrecord_dataset": "TFRecordDataset",
    "fixed_length_record_dataset": "FixedLengthRecordDatasetV2",
    "immutable_const": "ImmutableConst", "write_file": "WriteFile", "save_v2": "SaveV2",
    "print_to_file": "PrintV2", "debug_identity": "DebugIdentityV3",
    "debug_identity_grpc": "DebugIdentity", "write_in_while_loop": "WriteFile",
    "write_in_cond": "WriteFile", "write_in_dataset_map": "WriteFile",
    "write_in_second_signature": "WriteFile", "write_at_load": "WriteFile",
}
#: Where the hidden ones hide: what runs the refused op.
REACHED_FROM = {
    "write_in_second_signature": "signature other",
    "write_at_load": "init op",
}


def test_the_zoo_covers_every_attack():
    assert set(REFUSED_FOR) == set(ATTACKS)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_every_attack_is_refused_naming_the_op_and_where_it_is(zoo, attack):
    verdict = scan_saved_model(zoo[attack])
    assert not verdict.safe
    matching = [f for f in verdict.findings if f.op == REFUSED_FOR[attack]]
    assert matching, verdict.summary()
    finding = matching[0]
    assert finding.function or finding.node  # where it sits
    if attack in REACHED_FROM:
        assert any(REACHED_FROM[attack] in f.reached_from for f in matching), verdict.summary()
    assert REFUSED_FOR[attack] in verdict.summary()


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_models_people_publish_pass(benign, name):
    verdict = scan_saved_model(benign[name])
    assert verdict.safe, verdict.summary()


def test_the_examples_pass(examples):
    for name, folder in examples.items():
        assert scan_saved_model(folder).safe, name


def test_the_allowlist_is_one_reviewed_file_with_nothing_both_allowed_and_denied():
    allowlist = default_allowlist()
    assert len(allowlist.allowed) > 1000
    for dangerous in ("ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst",
                      "DebugIdentityV3", "TextLineDatasetV2", "PyFunc", "Send", "_Recv"):
        assert dangerous not in allowlist.allowed
    assert not allowlist.allowed & set(allowlist.denied)


def test_an_asset_name_pointing_outside_assets_is_refused(benign, tmp_path):
    import shutil

    from hub.savedmodel.graph import read_meta_graphs

    model = tmp_path / "model"
    shutil.copytree(benign["static_hash_table_asset"], model)
    (graph,) = read_meta_graphs((model / "saved_model.pb").read_bytes())
    (_, name), = graph.assets
    data = (model / "saved_model.pb").read_bytes()
    assert name.encode() in data
    # Same length, so the protobuf stays valid: a path that climbs out of assets/.
    hostile = ("../" * 10 + "etc/passwd")[:len(name)].ljust(len(name), "x")
    (model / "saved_model.pb").write_bytes(data.replace(name.encode(), hostile.encode()))
    verdict = scan_saved_model(model)
    assert not verdict.safe and "asset" in verdict.summary()


# --- refused at publish, by every way of publishing -----------------------------------------------


@pytest.mark.parametrize("attack", ["read_file", "write_at_load", "write_in_dataset_map"])
def test_the_cli_on_a_store_refuses_and_stores_nothing(zoo, attack, tmp_path):
    store = str(tmp_path / "store")
    result = CliRunner().invoke(cli, ["--store", store, "publish", str(zoo[attack]),
                                      "--name", "evil"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and REFUSED_FOR[attack] in result.output
    assert "was not published" in result.output
    assert Registry.open(store).store.list_keys("blobs/") == []


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> InProcessHub:
    return InProcessHub(str(tmp_path_factory.mktemp("scan-hub") / "store"))


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_the_hub_refuses_with_422_and_stores_nothing(zoo, hub, attack):
    response = hub.client.post(f"/api/v1/models/zoo-{attack.replace('_', '-')}/versions",
                               data=tar_gz_of(zoo[attack]),
                               headers={**hub.auth("write"), "Content-Type": "application/gzip"})
    assert response.status_code == 422, response.text
    error = response.get_json()["error"]
    assert error["code"] == "unsafe_model" and REFUSED_FOR[attack] in error["message"]
    assert Registry.open(hub.store).model_names() == []


def test_a_write_token_cannot_allow_anything_an_admin_can(zoo, hub):
    body = tar_gz_of(zoo["read_file"])

    def publish(scope):
        return hub.client.post("/api/v1/models/allowed/versions", data=body, headers={
            **hub.auth(scope), "Content-Type": "application/gzip",
            "Modelhub-Metadata": json.dumps({"allow_ops": ["ReadFile"]})})

    assert publish("write").status_code == 403
    published = publish("admin")
    assert published.status_code == 201, published.text
    safety = published.get_json()["safety"]
    assert safety["safe"] is False and safety["allowance"]["ops"] == ["ReadFile"]
    assert "token" in safety["allowance"]["by"] and hub.tokens["admin"] not in published.text
    listed = hub.client.get("/api/v1/models/allowed").get_json()
    assert listed["versions"][0]["safety"] == "allowed"


def test_an_allowance_covers_only_the_ops_it_names(zoo, tmp_path):
    from hub.auth import load_secret, sign_allowance
    from hub.registry.publishing import AllowOps
    from schemas.settings import load_settings

    registry = Registry.open(str(tmp_path / "store"))
    secret = load_secret(registry.store, load_settings(environ={}))
    allow = AllowOps(("ReadFile",), "tests", lambda record: sign_allowance(secret, record))
    with pytest.raises(UnsafeModel, match="WriteFile"):
        registry.publish(zoo["write_file"], "w", allow=allow)
    assert registry.publish(zoo["read_file"], "r", allow=allow)["safety"]["allowance"]
