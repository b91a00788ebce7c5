"""Who may do what, from the command line: `token`, `namespace` and `audit`, through a hub
(`--hub`, with an admin token) or straight on the store (signed with its secret; every write
recorded in the audit log as the local user's)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import click

from schemas.api import SCOPES
from schemas.errors import InvalidArgument

from .cli_common import Duration, _registry


def _admin(ctx: click.Context):
    """The hub client, or an administrator of the store."""
    registry = _registry(ctx)
    if hasattr(registry, "list_tokens"):  # a HubClient
        return registry
    from .admin import StoreAdmin

    root = ctx.find_root()
    if "admin" not in root.meta:
        root.meta["admin"] = StoreAdmin(registry, root.obj)
    return root.meta["admin"]


# --- tokens -------------------------------------------------------------------------------------


@click.group()
def token() -> None:
    """API tokens: who they are for, what they may do where, until when."""


@token.command(name="create")
@click.option("--identity", default="", help="Who the token is for (a person, a team, a CI job).")
@click.option("--grant", "grants", multiple=True, metavar="SCOPE:NAMESPACE",
              help="read, write or admin on a namespace (or * for all), e.g. write:vision "
                   "(repeatable).")
@click.option("--scope", type=click.Choice(SCOPES), default=None,
              help="A scope on every namespace (the same as --grant SCOPE:*).")
@click.option("--description", default="", help="What the token is for.")
@click.option("--expires", type=Duration(), default=None, metavar="DURATION",
              help="Refused after this long: 30d, 12h (default: never).")
@click.option("--json", "as_json", is_flag=True, help="Print {id, token, ...} as JSON.")
@click.pass_context
def token_create(ctx, identity: str, grants: tuple[str, ...], scope: str | None,
                 description: str, expires: timedelta | None, as_json: bool) -> None:
    """Create a token; it is printed alone on the last line, and only this once."""
    chosen = list(grants) + ([f"{scope}:*"] if scope else [])
    if not chosen:
        raise InvalidArgument("give --grant SCOPE:NAMESPACE (repeatable) or --scope")
    days = None
    if expires is not None:
        days = max(1, -(-int(expires.total_seconds()) // 86400))  # whole days, rounded up
    new, record = _admin(ctx).create_token(chosen, description, identity, days)
    if as_json:
        click.echo(json.dumps({**record, "token": new}))
        return
    click.echo(f"Created token {record['id']} for {identity or 'anonymous'} "
               f"({', '.join(record['grants'])}); it is shown only this once:", err=True)
    click.echo(new)


@token.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def token_list(ctx, as_json: bool) -> None:
    """Every token: id, identity, grants, created, last used, expiry (never the token)."""
    tokens = _admin(ctx).list_tokens()
    if as_json:
        click.echo(json.dumps(tokens, indent=1))
        return
    rows = [(t["id"], t["identity"], ",".join(t["grants"]), t["created"] or "-",
             t.get("last_used") or "never", t["expires"] or "never") for t in tokens]
    _table(("ID", "IDENTITY", "GRANTS", "CREATED", "LAST USED", "EXPIRES"), rows)


@token.command(name="revoke")
@click.argument("token_id")
@click.pass_context
def token_revoke(ctx, token_id: str) -> None:
    """Revoke a token: every hub and serving process refuses it within a second."""
    _admin(ctx).revoke_token(token_id)
    click.echo(f"revoked {token_id}")


# --- namespaces ---------------------------------------------------------------------------------


@click.group()
def namespace() -> None:
    """Namespaces (NAMESPACE/NAME): a team's or a person's models, public or private."""


@namespace.command(name="create")
@click.argument("name")
@click.option("--private", is_flag=True, help="Its models are seen only by tokens that may "
                                              "read it.")
@click.pass_context
def namespace_create(ctx, name: str, private: bool) -> None:
    """Create namespace NAME."""
    record = _admin(ctx).create_namespace(name, private)
    click.echo(f"created namespace {record['name']} ({_privacy(record)})")


@namespace.command(name="set")
@click.argument("name")
@click.option("--private/--public", required=True)
@click.pass_context
def namespace_set(ctx, name: str, private: bool) -> None:
    """Make namespace NAME private or public."""
    record = _admin(ctx).set_namespace(name, private)
    click.echo(f"namespace {record['name']} is {_privacy(record)}")


@namespace.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def namespace_ls(ctx, as_json: bool) -> None:
    """The namespaces (through a hub: those the token administers)."""
    records = _admin(ctx).namespaces()
    if as_json:
        click.echo(json.dumps(records, indent=1))
        return
    _table(("NAMESPACE", "VISIBILITY", "MODELS", "CREATED"),
           [(r["name"], _privacy(r), str(r["models"]), r.get("created") or "-")
            for r in records])


def _privacy(record: dict) -> str:
    return "private" if record.get("private") else "public"


# --- the audit log ------------------------------------------------------------------------------


@click.command()
@click.argument("namespace_name", metavar="[NAMESPACE]", required=False)
@click.option("--since", type=Duration(), default=None, metavar="DURATION",
              help="Only the last DURATION (1h, 7d).")
@click.option("--verify", is_flag=True,
              help="Check the log: edited, missing or made-up records; exits 1 if any.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def audit(ctx, namespace_name: str | None, since: timedelta | None, verify: bool,
          as_json: bool) -> None:
    """Who did what, when, from where, and how it ended: every write, per namespace (tokens:
    the `_hub` log)."""
    admin = _admin(ctx)
    if verify:
        problems = admin.audit_verify(namespace_name)
        for problem in problems:
            click.echo(problem, err=True)
        if problems:
            raise SystemExit(1)
        click.echo("the audit log verifies")
        return
    after = datetime.now(timezone.utc) - since if since else None
    records = admin.audit_records(namespace_name, after)
    if as_json:
        click.echo(json.dumps(records, indent=1))
        return
    _table(("AT", "NAMESPACE", "#", "WHO", "ACTION", "MODEL", "OUTCOME", "FROM", "DETAIL"),
           [(r["at"][:19], r["namespace"], str(r["seq"]),
             r["identity"] + (f" ({r['token_id']})" if r.get("token_id") else ""),
             r["action"], (r.get("model") or "-") +
             (f"/{r['version']}" if r.get("version") else ""), r["outcome"],
             r.get("address") or "-", r.get("detail") or "") for r in records])


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    for row in (header, *rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


COMMANDS = (token, namespace, audit)
