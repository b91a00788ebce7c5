"""One settings object: defaults written once, options over environment over defaults, every
value validated once and typed, no round trip through text."""
from __future__ import annotations

import dataclasses

import pytest

from schemas.errors import InvalidArgument
from schemas.serving import BatchingOptions, ModelConfig
from schemas.settings import Settings, SettingsSchema, describe, env_name, load_settings


def test_options_win_over_the_environment_which_wins_over_defaults():
    env = {"MODELHUB_PORT": "9000", "MODELHUB_THREADS": "4"}
    settings = load_settings({"port": 7000}, environ=env)
    assert (settings.port, settings.threads, settings.timeout) == (7000, 4, 120)
    assert load_settings(environ={}).port == 8080


def test_environment_text_becomes_typed_values_exactly_once():
    settings = load_settings(environ={"MODELHUB_MODELS": "1e5,true, mnist",
                                      "MODELHUB_ALLOWED_BATCH_SIZES": "32",
                                      "MODELHUB_ANONYMOUS_READ": "false",
                                      "MODELHUB_MEMORY_BUDGET_MB": "1.5"})
    assert settings.models == ("1e5", "true", "mnist")  # names stay names
    assert settings.allowed_batch_sizes == (32,)  # one size is still a list
    assert settings.anonymous_read is False and settings.memory_budget_mb == 1.5


def test_an_option_given_as_text_or_as_a_value_means_the_same():
    as_text = load_settings({"allowed_batch_sizes": "8,16,32", "batching": "false"}, environ={})
    as_values = load_settings({"allowed_batch_sizes": [8, 16, 32], "batching": False}, environ={})
    assert as_text == as_values
    assert as_text.batching_options == BatchingOptions(enabled=False, allowed_batch_sizes=(8, 16, 32))


@pytest.mark.parametrize("given,where", [
    ({"port": "eighty"}, "--port / MODELHUB_PORT"),
    ({"role": "everything"}, "--role / MODELHUB_ROLE"),
    ({"max_batch_size": 16, "allowed_batch_sizes": "4,8"}, "must equal max_batch_size"),
    ({"models": "Not A Name"}, "--models / MODELHUB_MODELS"),
    ({"device": "gpu:x"}, "--device / MODELHUB_DEVICE"),
])
def test_bad_values_name_the_option_and_the_variable(given, where):
    with pytest.raises(InvalidArgument, match=where):
        load_settings(given, environ={})


def test_unknown_settings_and_empty_variables():
    with pytest.raises(InvalidArgument, match="unknown setting"):
        load_settings({"prot": 80}, environ={})
    assert load_settings(environ={"MODELHUB_URL": ""}).hub_url is None


def test_every_setting_is_documented_and_typed_once():
    declared = set(SettingsSchema._declared_fields)
    assert declared == {f.name for f in dataclasses.fields(Settings)}
    for name in declared:
        assert env_name(name).startswith("MODELHUB_") and describe(name)
    assert env_name("hub_url") == "MODELHUB_URL"


def test_the_token_never_shows_in_a_repr():
    settings = load_settings({"token": "mh_secret"}, environ={})
    assert settings.token == "mh_secret" and "mh_secret" not in repr(settings)


def test_replace_validates_like_load():
    settings = load_settings(environ={})
    assert settings.replace(port=1234).port == 1234
    with pytest.raises(InvalidArgument):
        settings.replace(port=-1)


def test_typed_serving_values_take_their_defaults_from_the_schemas():
    assert ModelConfig("m").policy == "latest" and ModelConfig("m").latest == 1
    assert BatchingOptions().max_batch_size == load_settings(environ={}).max_batch_size
    with pytest.raises(InvalidArgument, match="needs a list of versions"):
        ModelConfig("m", policy="specific")
