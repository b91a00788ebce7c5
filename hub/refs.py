"""Model references: `name` (latest), `name/3` (version 3), `name@prod` (what alias prod points to).
A name may carry its namespace: `nlp/bert`, `nlp/bert/3`, `nlp/bert@prod`."""
from __future__ import annotations

from dataclasses import dataclass

from schemas.errors import InvalidReference
from schemas.manifest import (
    ALIAS_PATTERN,
    ARTIFACT_PATTERN,
    DEFAULT_NAMESPACE,
    NAME_PATTERN,
    NAMESPACE_PATTERN,
    RESERVED_WORDS,
    VERSION_PATTERN,
)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidReference(
            f"invalid model name {name!r}: use lower-case letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 128 characters, optionally after a "
            f"namespace and a slash (nlp/bert); not {', '.join(RESERVED_WORDS)}")
    return name


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not NAMESPACE_PATTERN.match(namespace):
        raise InvalidReference(
            f"invalid namespace {namespace!r}: use lower-case letters, digits, '.', '_' and '-', "
            f"starting with a letter or digit, at most 64 characters; not {DEFAULT_NAMESPACE!r} "
            "(names without a namespace are in it) or a reserved word")
    return namespace


#: Not an alias: in URLs it selects the newest version.
LATEST = "latest"


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS_PATTERN.match(alias) or alias == LATEST:
        raise InvalidReference(
            f"invalid alias {alias!r}: use lower-case letters, digits, '.', '_' and '-', "
            f"starting with a letter, at most 64 characters, and not {LATEST!r}")
    return alias


def check_artifact_name(artifact: str) -> str:
    if not isinstance(artifact, str) or not ARTIFACT_PATTERN.match(artifact):
        raise InvalidReference(
            f"invalid artifact name {artifact!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 200 characters")
    return artifact


def is_version_text(text: str) -> bool:
    """Whether `text` spells a version number (ASCII digits only: "²".isdigit() is true)."""
    return bool(VERSION_PATTERN.match(text))


def check_version(version: int | str) -> int:
    text = str(version)
    if not is_version_text(text):
        raise InvalidReference(f"invalid version {version!r}: versions are whole numbers from 1")
    return int(text)


@dataclass(frozen=True)
class Reference:
    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}/{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def reference_from_url(name: str, selector: str | None) -> Reference:
    """`/models/NAME/SELECTOR` where SELECTOR is a version number, `latest`, or an alias."""
    check_name(name)
    if selector is None or selector == LATEST:
        return Reference(name)
    if selector.isascii() and selector.isdigit():
        return Reference(name, version=check_version(selector))
    return Reference(name, alias=check_alias(selector))


def parse_reference(text: str) -> Reference:
    """Parse `name`, `name/N` or `name@alias`."""
    if not isinstance(text, str) or not text:
        raise InvalidReference("empty model reference")
    if "@" in text:
        name, alias = text.split("@", 1)
        return Reference(check_name(name), alias=check_alias(alias))
    name, _, last = text.rpartition("/")
    if name and last.isdigit():  # a namespaced name is never all digits ("²": a bad version)
        return Reference(check_name(name), version=check_version(last))
    return Reference(check_name(text))
