"""The `modelhub` command line against a local store and an S3 store."""
from __future__ import annotations

import json
import tarfile

import pytest
from click.testing import CliRunner

from modelhub.cli import cli
from tests.support.processes import run_cli


@pytest.fixture
def store_uri(tmp_path):
    return str(tmp_path / "store")


@pytest.fixture
def modelhub(store_uri):
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(cli, ["--store", store_uri, *args])
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


def test_publish_prints_the_new_reference_and_ls_show_describe_it(modelhub, examples, tmp_path):
    card = tmp_path / "README.md"
    card.write_text("# Half plus two\nA toy.")
    out = modelhub("publish", str(examples["half_plus_two"]), "--name", "hpt",
                   "--description", "Adds two", "--tag", "task=toy", "--alias", "prod",
                   "--license", "MIT", "--card", str(card)).output
    assert out.strip() == "hpt/1"
    out = modelhub("publish", str(examples["half_plus_two"]), "--name", "hpt",
                   "--description", "Adds two, again").output
    assert out.strip() == "hpt/2"

    listing = modelhub("ls").output.splitlines()
    assert listing[0].split() == ["NAME", "LATEST", "VERSIONS", "ALIASES", "SAFETY", "DESCRIPTION"]
    # A model is summarised by its latest version.
    assert listing[1].split() == ["hpt", "2", "2", "prod", "safe", "Adds", "two,", "again"]

    shown = modelhub("show", "hpt@prod").output
    assert "hpt/1  (aliases: prod)" in shown
    assert "in  x: float32[None]" in shown and "out y: float32[None]" in shown
    assert "tag:         task=toy" in shown
    assert "safety:      safe (" in shown

    manifest = json.loads(modelhub("show", "hpt/1", "--json").output)
    assert manifest["model_card"] == card.read_text()
    assert manifest["license"] == "MIT"
    assert json.loads(modelhub("ls", "--json").output)[0]["versions"] == [1, 2]


def test_pull_as_folder_and_as_tar_gz(modelhub, examples, tmp_path):
    modelhub("publish", str(examples["multi_io"]), "--name", "multi")
    dest = tmp_path / "pulled"
    assert modelhub("pull", "multi", "-o", str(dest)).output.strip() == str(dest)
    assert (dest / "saved_model.pb").read_bytes() == (examples["multi_io"] / "saved_model.pb").read_bytes()

    archive = tmp_path / "multi.tar.gz"
    modelhub("pull", "multi/1", "--format", "tar", "-o", str(archive))
    with tarfile.open(archive) as tar:
        assert "saved_model.pb" in tar.getnames()
    failed = modelhub("pull", "multi/1", "--format", "tar", "-o", str(archive), ok=False)
    assert failed.exit_code != 0 and "already exists" in failed.output


def test_alias_rm_and_gc(modelhub, examples):
    modelhub("publish", str(examples["half_plus_two"]), "--name", "hpt")
    modelhub("publish", str(examples["multi_io"]), "--name", "hpt")
    assert modelhub("alias", "set", "hpt/2", "prod").output.strip() == "hpt@prod -> hpt/2"
    blocked = modelhub("rm", "hpt/2", ok=False)
    assert blocked.exit_code == 1 and "alias(es) prod" in blocked.output
    modelhub("alias", "rm", "hpt", "prod")
    assert modelhub("rm", "hpt/2").output.strip() == "deleted hpt/2"
    assert "rm needs an explicit version" in modelhub("rm", "hpt", ok=False).output
    assert modelhub("gc", "--grace", "0s").output.startswith("removed 4 blobs")
    assert "invalid duration" in modelhub("gc", "--grace", "soon", ok=False).output
    assert "invalid duration" in modelhub("gc", "--grace", "²d", ok=False).output
    too_long = modelhub("gc", "--grace", "99999999999999999999d", ok=False)
    assert too_long.exit_code == 2 and "longer than a calendar" in too_long.output


@pytest.mark.parametrize("args,message", [
    (["show", "missing"], "model 'missing' not found"),
    (["pull", "Bad Name"], "invalid model name"),
    (["publish", ".", "--name", "x", "--tag", "novalue"], "invalid tag"),
    (["alias", "set", "missing/1", "prod"], "not found"),
])
def test_user_errors_are_one_line_and_exit_non_zero(modelhub, args, message):
    result = modelhub(*args, ok=False)
    assert result.exit_code == 1
    assert message in result.output
    assert result.output.count("\n") == 1
    assert "Traceback" not in result.output


def test_the_real_command_works_against_s3_and_never_prints_tracebacks(s3_bucket, examples, tmp_path):
    env = {"MODELHUB_STORE": f"s3://{s3_bucket}/models"}
    published = run_cli("publish", str(examples["half_plus_two"]), "--name", "hpt", env=env)
    assert published.returncode == 0, published.stderr
    assert published.stdout == "hpt/1\n"
    assert published.stderr == ""  # not a terminal: no progress bar
    pulled = run_cli("pull", "hpt", "-o", str(tmp_path / "out"), env=env)
    assert pulled.returncode == 0, pulled.stderr
    missing = run_cli("show", "hpt/7", env=env)
    assert missing.returncode == 1
    assert missing.stderr == "Error: model 'hpt' has no version 7\n"
    unreachable = run_cli("ls", env={**env, "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
                                     "AWS_MAX_ATTEMPTS": "1"})
    assert unreachable.returncode == 1
    assert "cannot reach the S3 endpoint" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_a_look_alike_version_is_a_one_line_error(modelhub):
    result = modelhub("show", "half_plus_two/\u00b2", ok=False)
    assert result.exit_code != 0 and "invalid version" in result.output
    assert "Traceback" not in result.output
