"""The audit log: who changed what, when."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from headend.models import AuditEntry, User


def record(session: Session, *, actor: User | str | None, action: str, target: str | None = None,
           detail: dict[str, Any] | None = None) -> None:
    """Add an audit entry to the session (committed with the change it describes)."""
    username = actor.username if isinstance(actor, User) else actor
    session.add(AuditEntry(username=username, action=action, target=target, detail=detail))


def list_audit(session: Session, *, limit: int = 200, username: str | None = None,
               action: str | None = None) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if username:
        query = query.where(AuditEntry.username == username)
    if action:
        query = query.where(AuditEntry.action == action)
    return list(session.scalars(query))
