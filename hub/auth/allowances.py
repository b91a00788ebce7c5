"""Allowances: an admin's signed permission for a version to use ops the safety scan refuses."""
from __future__ import annotations

from .secret import LazySecret, Secret, canonical


def sign_allowance(secret: Secret | LazySecret, record: dict) -> str:
    """The signature of an allowance record (ops, by, at, graph_sha256)."""
    return secret.sign("allowance", canonical({k: v for k, v in record.items()
                                               if k != "signature"}))


def allowance_is_genuine(secret: Secret | LazySecret, record: dict | None) -> bool:
    return bool(record) and secret.verify(
        "allowance", canonical({k: v for k, v in record.items() if k != "signature"}),
        record.get("signature"))
