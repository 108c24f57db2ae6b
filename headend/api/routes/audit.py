from fastapi import APIRouter

from headend.api.deps import Admin, SessionDep
from headend.api.schemas import AuditPublic
from headend.services.audit import list_audit

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=list[AuditPublic])
def get_audit(session: SessionDep, _: Admin, username: str | None = None,
              action: str | None = None, limit: int = 200):
    return list_audit(session, limit=min(limit, 5000), username=username, action=action)
