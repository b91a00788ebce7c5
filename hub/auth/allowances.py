"""Allowances: an admin's signed permission for a version to use ops the safety scan refuses."""
from __future__ import annotations

from .secret import LazySecret, Secret, record_is_signed, sign_record


def sign_allowance(secret: Secret | LazySecret, record: dict) -> str:
    """The signature of an allowance record (ops, by, at, graph_sha256)."""
    return sign_record(secret, "allowance", record, "signature")


def allowance_is_genuine(secret: Secret | LazySecret, record: dict | None) -> bool:
    return bool(record) and record_is_signed(secret, "allowance", record, "signature")
