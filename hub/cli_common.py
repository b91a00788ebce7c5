"""What the hub's command modules share: the registry (or hub client) a command works on, the
duration option type, and the audit record of a write made straight on the store."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import click

from schemas.errors import ModelhubError
from schemas.settings import Settings


def _registry(ctx: click.Context):
    """The hub client when a hub URL is set, else the registry on the store (one per command)."""
    root = ctx.find_root()
    if "registry" not in root.meta:
        settings: Settings = root.obj
        if settings.hub_url:
            from .client import HubClient

            root.meta["registry"] = HubClient.from_settings(settings)
        else:
            from .registry import Registry

            root.meta["registry"] = Registry.open(settings.store)
    return root.meta["registry"]


class Duration(click.ParamType):
    """`0s`, `90s`, `30m`, `24h`, `7d`."""

    name = "duration"
    UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(self, value, param, ctx) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = str(value)
        number = text[:-1]
        if not text or text[-1] not in self.UNITS or not (number.isascii() and number.isdigit()):
            self.fail(f"invalid duration {text!r}: use a whole number with s, m, h or d "
                      "(0s, 30m, 24h, 7d)", param, ctx)
        try:
            return timedelta(seconds=int(number) * self.UNITS[text[-1]])
        except OverflowError:
            self.fail(f"duration {text!r} is longer than a calendar can hold", param, ctx)


@dataclass
class AuditNote:
    """What a command learns while it writes (the version it made, a detail) for its record."""

    version: int | None = None
    detail: str = ""


@contextlib.contextmanager
def audited(ctx: click.Context, action: str, model: str | None = None,
            version: int | None = None) -> Iterator[AuditNote]:
    """Record a write made straight on the store in its audit log, as the local user's, with
    how it ended (through a hub, the hub records it). Without the store's secret (an S3 store
    and no MODELHUB_TOKEN_SECRET) the record is written unsigned, which `audit --verify` says."""
    note = AuditNote(version)
    registry = _registry(ctx)
    if not hasattr(registry, "store"):
        yield note
        return
    error = None
    try:
        yield note
    except Exception as e:
        error = e
        raise
    finally:
        from .audit import Actor, AuditLog, outcome_of
        from .auth import load_secret

        try:
            secret = load_secret(registry.store, ctx.find_root().obj)
        except ModelhubError:
            secret = None
        try:
            AuditLog(registry.store, secret).append(
                Actor.local(), action, model=model, version=note.version,
                outcome=outcome_of(error), detail=note.detail)
        except ModelhubError as e:  # the store failed: the write itself is done (or failed)
            click.echo(f"warning: this {action} is not in the audit log: {e}", err=True)
