"""Namespaces: a team's or a person's models (`nlp/bert`), and whether others may see them.

A namespace exists once a model is published into it or its record is made
(`namespaces/<ns>/namespace.json`); without a record it is public. Models without a namespace are
in `default`, which may have a record too. The record is changed by compare-and-swap, so two
admins never lose each other's change.
"""
from __future__ import annotations

import collections
from datetime import datetime, timezone

from schemas.errors import ConcurrentModification, NamespaceExists, ObjectExists, ObjectNotFound
from schemas.errors import PreconditionFailed
from schemas.manifest import DEFAULT_NAMESPACE, namespace_of
from storage import ObjectStore

from ..refs import check_namespace
from .layout import json_bytes, namespace_key

MAX_ATTEMPTS = 8


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def checked_namespace(namespace: str) -> str:
    return namespace if namespace == DEFAULT_NAMESPACE else check_namespace(namespace)


class Namespaces:
    store: ObjectStore

    def namespace(self, namespace: str) -> dict:
        """{name, private, created, updated, models}: its record, or what one without a record
        means (public)."""
        checked_namespace(namespace)
        return self._described(namespace, len(self.model_names(namespace)))

    def namespaces(self) -> list[dict]:
        """Every namespace with a record or a model, `default` first."""
        models = collections.Counter(namespace_of(n) for n in self.model_names())
        names = {DEFAULT_NAMESPACE, *models}
        for key in self.store.list_keys("namespaces/"):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == "namespace.json":
                names.add(parts[1])
        ordered = [DEFAULT_NAMESPACE] + sorted(names - {DEFAULT_NAMESPACE})
        return [self._described(n, models[n]) for n in ordered]

    def _described(self, namespace: str, models: int) -> dict:
        try:
            record = self.store.get_json(namespace_key(namespace))
        except (ObjectNotFound, ValueError):
            record = {"name": namespace, "private": False, "created": None, "updated": None}
        return {**record, "name": namespace, "private": bool(record.get("private")),
                "models": models}

    def create_namespace(self, namespace: str, private: bool = False) -> dict:
        """Make the namespace's record; NamespaceExists if it has one (or models)."""
        checked_namespace(namespace)
        if namespace != DEFAULT_NAMESPACE and self.model_names(namespace):
            raise NamespaceExists(f"namespace {namespace!r} already has models; use "
                                  "`modelhub namespace set` to change it")
        record = {"name": namespace, "private": private, "created": _now(), "updated": _now()}
        try:
            self.store.put_if_absent(namespace_key(namespace), json_bytes(record))
        except ObjectExists:
            raise NamespaceExists(f"namespace {namespace!r} already exists") from None
        return self.namespace(namespace)

    def set_namespace(self, namespace: str, *, private: bool) -> dict:
        """Make the namespace private or public (its record is made if it has none)."""
        checked_namespace(namespace)
        key = namespace_key(namespace)
        for _ in range(MAX_ATTEMPTS):
            try:
                record, etag = self.store.get_json_with_etag(key)
            except ObjectNotFound:
                record, etag = {"name": namespace, "created": _now()}, None
            record = {**record, "private": private, "updated": _now()}
            try:
                if etag is None:
                    self.store.put_if_absent(key, json_bytes(record))
                else:
                    self.store.put_if_match(key, json_bytes(record), etag)
                return self.namespace(namespace)
            except (ObjectExists, PreconditionFailed):
                continue  # changed meanwhile: read it again
        raise ConcurrentModification(f"namespace {namespace!r} kept changing; try again")
