"""Tokens, namespaces and the audit log, administered straight on a store (the CLI without
`--hub`), with the same answers as the hub API gives through `HubClient`. Every write is
recorded in the audit log as the local user's."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from schemas.settings import Settings

from .audit import HUB_LOG, Actor, AuditLog, outcome_of
from .auth import EVERY_NAMESPACE, Grant, TokenStore, load_secret
from .registry import Registry


class StoreAdmin:
    def __init__(self, registry: Registry, settings: Settings):
        self.registry = registry
        secret = load_secret(registry.store, settings)
        self.tokens = TokenStore(registry.store, secret)
        self.audit = AuditLog(registry.store, secret)
        self.actor = Actor.local()

    def _logged(self, action: str, run, *, namespace: str | None = None, detail: str = ""):
        error = None
        try:
            return run()
        except Exception as e:
            error = e
            raise
        finally:
            self.audit.append(self.actor, action, namespace=namespace or HUB_LOG,
                              outcome=outcome_of(error), detail=detail)

    # --- tokens -------------------------------------------------------------------------------

    def create_token(self, grants: list[str], description: str = "", identity: str = "",
                     expires_in_days: int | None = None) -> tuple[str, dict]:
        parsed = [Grant.parse(g) for g in grants]
        expires = (datetime.now(timezone.utc) + timedelta(days=expires_in_days)
                   if expires_in_days else None)
        token, record = self._logged(
            "token create", lambda: self.tokens.create_record(
                description=description, identity=identity, grants=parsed, expires=expires),
            detail=f"for {identity or 'anonymous'}: {', '.join(map(str, parsed))}")
        return token, record

    def list_tokens(self) -> list[dict]:
        return self.tokens.list()

    def revoke_token(self, token_id: str) -> None:
        self._logged("token revoke", lambda: self.tokens.revoke(token_id),
                     detail=f"token {token_id}")

    # --- namespaces ---------------------------------------------------------------------------

    def namespaces(self) -> list[dict]:
        return self.registry.namespaces()

    def create_namespace(self, name: str, private: bool) -> dict:
        return self._logged("namespace create",
                            lambda: self.registry.create_namespace(name, private=private),
                            namespace=name, detail="private" if private else "public")

    def set_namespace(self, name: str, private: bool) -> dict:
        return self._logged("namespace set",
                            lambda: self.registry.set_namespace(name, private=private),
                            namespace=name, detail="private" if private else "public")

    # --- the audit log ------------------------------------------------------------------------

    def audit_records(self, namespace: str | None, since: datetime | None) -> list[dict]:
        return self.audit.records(namespace, since)

    def audit_verify(self, namespace: str | None) -> list[str]:
        return self.audit.verify(namespace)


__all__ = ["StoreAdmin", "EVERY_NAMESPACE"]
