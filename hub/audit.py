"""The audit log: every write to the hub (publish, alias set/move/remove, delete, convert, scan,
token create/revoke, namespace changes, safety overrides), who made it, from where, and how it
ended. One log per namespace, in the store beside the models, on any store:

    audit/<namespace>/<seq>.json   one record, create-only, seq = 1, 2, 3, ... (12 digits)
    audit/<namespace>/HEAD.json    {seq, hash} of the newest record, moved by compare-and-swap

Each record carries the sha256 of the record before it (`prev`) and an HMAC of its content made
with the server's secret (`mac`), which is kept outside the store. So a record cannot be edited
(its MAC fails), removed from the middle (the next one's `prev` no longer matches, or a number is
missing) or made up (no MAC) by someone who can write to the store but has not the secret; the
newest records cannot be removed without moving HEAD back, which is signed too. What this cannot
catch: someone who kept an older genuine HEAD and the records after it, and puts the old HEAD
back while deleting those records; comparing HEAD's seq with one noted elsewhere (a monitoring
system scraping `modelhub audit --verify`) does.

Appending is race-free without locks: a writer creates record HEAD.seq + 1 create-only; if another
writer made it first, it moves HEAD past that record and tries the next number.
"""
from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone

from schemas.errors import (
    ConcurrentModification,
    ModelhubError,
    ObjectExists,
    ObjectNotFound,
    PreconditionFailed,
)
from schemas.manifest import DEFAULT_NAMESPACE, namespace_of
from storage import ObjectStore

from .auth import (
    EVERY_NAMESPACE,
    Identity,
    LazySecret,
    Secret,
    canonical,
    record_is_signed,
    sign_record,
)
from .refs import check_namespace

PURPOSE = "audit record"
HEAD_PURPOSE = "audit head"
MAX_ATTEMPTS = 200
#: Namespace of writes that are about no one model (tokens): the hub's own log.
HUB_LOG = "_hub"


def record_key(namespace: str, seq: int) -> str:
    return f"audit/{namespace}/{seq:012d}.json"


def head_key(namespace: str) -> str:
    return f"audit/{namespace}/HEAD.json"


def record_hash(record: dict) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


@dataclass(frozen=True)
class Actor:
    """Who writes: a token's identity (over the API), or a local user (the CLI on the store)."""

    identity: str
    token_id: str | None
    address: str

    @classmethod
    def of(cls, identity: Identity | None, address: str | None) -> "Actor":
        if identity is None:
            return cls("anonymous", None, address or "")
        return cls(identity.name, identity.token_id, address or "")

    @classmethod
    def local(cls) -> "Actor":
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return cls(f"local:{user}", None, "local")


class AuditLog:
    def __init__(self, store: ObjectStore, secret: Secret | LazySecret | None):
        """`secret` None: records are written unsigned (the CLI on an S3 store without
        MODELHUB_TOKEN_SECRET), and `verify` reports them as such."""
        self.store = store
        self.secret = secret

    def _sign(self, purpose: str, record: dict) -> str | None:
        return None if self.secret is None else sign_record(self.secret, purpose, record)

    def _signed(self, purpose: str, record: dict) -> bool:
        return self.secret is not None and record_is_signed(self.secret, purpose, record)

    # --- writing -------------------------------------------------------------------------------

    def append(self, actor: Actor, action: str, *, model: str | None = None,
               version: int | None = None, namespace: str | None = None, outcome: str = "ok",
               detail: str = "") -> dict:
        """Add a record to the log of the model's namespace (or `namespace`); the record."""
        log = namespace or (namespace_of(model) if model else HUB_LOG)
        entry = {"at": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                 "namespace": log, "identity": actor.identity, "token_id": actor.token_id,
                 "address": actor.address, "action": action, "model": model,
                 "version": version, "outcome": outcome, "detail": detail}
        for _ in range(MAX_ATTEMPTS):
            head, etag = self._head(log)
            seq = head["seq"] + 1
            record = {**entry, "seq": seq, "prev": head["hash"]}
            record["mac"] = self._sign(PURPOSE, record)
            try:
                self.store.put_if_absent(record_key(log, seq), canonical(record))
            except ObjectExists:  # another writer took this number: move HEAD past it, retry
                with contextlib.suppress(ObjectNotFound, ValueError):
                    taken = self.store.get_json(record_key(log, seq))
                    self._move_head(log, seq, record_hash(taken), etag)
                continue
            self._move_head(log, seq, record_hash(record), etag)
            return record
        raise ConcurrentModification(f"the audit log of {log!r} kept changing; try again")

    def _head(self, log: str) -> tuple[dict, str | None]:
        try:
            head, etag = self.store.get_json_with_etag(head_key(log))
            return head, etag
        except ObjectNotFound:
            return {"seq": 0, "hash": ""}, None

    def _move_head(self, log: str, seq: int, digest: str, etag: str | None) -> None:
        head = {"seq": seq, "hash": digest}
        head["mac"] = self._sign(HEAD_PURPOSE, head)
        with contextlib.suppress(ObjectExists, PreconditionFailed):  # someone moved it on
            if etag is None:
                self.store.put_if_absent(head_key(log), canonical(head))
            else:
                self.store.put_if_match(head_key(log), canonical(head), etag)

    # --- reading -------------------------------------------------------------------------------

    def logs(self) -> list[str]:
        """Every namespace that has a log."""
        return sorted({key.split("/")[1] for key in self.store.list_keys("audit/")})

    def records(self, namespace: str | None = None, since: datetime | None = None) -> list[dict]:
        """The records of one log (or of all), oldest first, at or after `since`."""
        found = []
        for log in [_checked_log(namespace)] if namespace else self.logs():
            for key in sorted(self.store.list_keys(f"audit/{log}/")):
                if key.endswith("/HEAD.json"):
                    continue
                with contextlib.suppress(ObjectNotFound, ValueError):
                    record = self.store.get_json(key)
                    if since is None or datetime.fromisoformat(record["at"]) >= since:
                        found.append(record)
        return sorted(found, key=lambda r: (r.get("at", ""), r.get("namespace", ""),
                                            r.get("seq", 0)))

    def verify(self, namespace: str | None = None) -> list[str]:
        """What is wrong with the logs (nothing: an empty list): edited, made-up, missing or
        reordered records, and a HEAD that does not match them."""
        problems = []
        for log in [_checked_log(namespace)] if namespace else self.logs():
            problems += self._verify_log(log)
        return problems

    def _verify_log(self, log: str) -> list[str]:
        problems, previous, expected = [], "", 1
        keys = sorted(k for k in self.store.list_keys(f"audit/{log}/")
                      if not k.endswith("/HEAD.json"))
        for key in keys:
            try:
                record = json.loads(self.store.get_bytes(key))
            except (ObjectNotFound, ValueError):
                problems.append(f"{key}: unreadable")
                continue
            seq = record.get("seq")
            if record.get("mac") is None:
                problems.append(f"{log} #{seq}: not signed (written without the hub's secret: "
                                "set MODELHUB_TOKEN_SECRET where the CLI writes to the store)")
            elif not self._signed(PURPOSE, record):
                problems.append(f"{log} #{seq}: edited or not made by this hub (its MAC fails)")
            if key != record_key(log, seq if isinstance(seq, int) else -1):
                problems.append(f"{key}: holds record #{seq}")
            if isinstance(seq, int) and seq != expected:
                problems.append(f"{log}: record(s) #{expected}..#{seq - 1} missing")
            if record.get("prev") != previous:
                problems.append(f"{log} #{seq}: does not follow the record before it "
                                "(one was removed or changed)")
            previous, expected = record_hash(record), (seq if isinstance(seq, int) else 0) + 1
        head, _ = self._head(log)
        if head.get("seq", 0):
            if head.get("mac") is None:  # rewinding the tail needs only this to pass
                problems.append(f"{log}: HEAD not signed (written without the hub's secret)")
            elif not self._signed(HEAD_PURPOSE, head):
                problems.append(f"{log}: HEAD edited or not made by this hub")
            last = expected - 1
            if head["seq"] > last:
                problems.append(f"{log}: HEAD says #{head['seq']}, but the log ends at #{last}: "
                                "the newest records were removed")
            elif head["seq"] == last and head.get("hash") != previous:
                problems.append(f"{log}: the newest record does not match HEAD")
        elif keys:
            problems.append(f"{log}: records without a HEAD")
        return problems


def _checked_log(name: str) -> str:
    """A log's name as asked for: the hub's own, the default namespace's, or a namespace."""
    return name if name in (HUB_LOG, DEFAULT_NAMESPACE) else check_namespace(name)


def log_name(namespace: str | None) -> str | None:
    """The log a namespace argument names (`*` and None: every log)."""
    if namespace in (None, EVERY_NAMESPACE):
        return None
    return namespace or DEFAULT_NAMESPACE


def outcome_of(error: BaseException | None) -> str:
    if error is None:
        return "ok"
    return error.code if isinstance(error, ModelhubError) else "error"
