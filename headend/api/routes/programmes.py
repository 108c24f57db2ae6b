"""Programmes: draft (editor), submit, approve or reject (leader), their occurrences."""

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from headend.api.deps import CurrentUser, PublisherDep, Reader, SessionDep, SettingsDep, require
from headend.api.schemas import (
    OccurrenceMove,
    OccurrencePublic,
    ProgrammeApproval,
    ProgrammeCreate,
    ProgrammePublic,
    ProgrammeRejection,
    ProgrammeUpdate,
)
from headend.models import User
from headend.security import has_permission
from headend.services import programmes, programmes_time

router = APIRouter(prefix="/programmes", tags=["programmes"])

Editor = Annotated[User, Depends(require("programmes.edit"))]
Leader = Annotated[User, Depends(require("programmes.approve"))]


def editor_or_leader(user: CurrentUser) -> User:
    """Skipping or moving one occurrence: the editor's plan or the leader's call."""
    if not (has_permission(user.role, "programmes.edit")
            or has_permission(user.role, "programmes.approve")):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "role %s may not do this (programmes.edit)" % user.role)
    return user


EditorOrLeader = Annotated[User, Depends(editor_or_leader)]
# Occurrences listed when no period is asked: the next four weeks.
DEFAULT_PERIOD = timedelta(days=28)


@router.post("", response_model=ProgrammePublic, status_code=status.HTTP_201_CREATED)
def create_programme(body: ProgrammeCreate, session: SessionDep, settings: SettingsDep,
                     user: Editor):
    """A new programme, in state ``draft``, after the guard rails (overlap 409, quiet hours
    and volume limit 422)."""
    return programmes.create_programme(session, settings=settings,
                                       fields=body.model_dump(), actor=user)


@router.get("", response_model=list[ProgrammePublic])
def list_programmes(session: SessionDep, _: Reader, state: str | None = None):
    return programmes.list_programmes(session, state=state)


@router.get("/{programme_id}", response_model=ProgrammePublic)
def get_programme(programme_id: str, session: SessionDep, _: Reader):
    return programmes.get_programme(session, programme_id=programme_id)


@router.patch("/{programme_id}", response_model=ProgrammePublic)
def update_programme(programme_id: str, body: ProgrammeUpdate, session: SessionDep,
                     settings: SettingsDep, publisher: PublisherDep, user: Editor):
    """Change it; a change to what airs (segments, targets, class, time, volume) sends an
    approved programme back for approval."""
    return programmes.update_programme(session, settings=settings, publisher=publisher,
                                       programme_id=programme_id,
                                       fields=body.model_dump(exclude_unset=True), actor=user)


@router.delete("/{programme_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_programme(programme_id: str, session: SessionDep, settings: SettingsDep,
                     publisher: PublisherDep, user: Editor):
    """Remove it; broadcasts made for its coming occurrences are cancelled."""
    programmes.delete_programme(session, settings=settings, publisher=publisher,
                                programme_id=programme_id, actor=user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{programme_id}/submit", response_model=ProgrammePublic)
def submit_programme(programme_id: str, session: SessionDep, settings: SettingsDep,
                     user: Editor, body: ProgrammeApproval | None = None):
    return programmes.submit_programme(session, settings=settings, programme_id=programme_id,
                                       actor=user, confirm_quiet=bool(body and
                                                                      body.confirm_quiet))


@router.post("/{programme_id}/approve", response_model=ProgrammePublic)
def approve_programme(programme_id: str, session: SessionDep, settings: SettingsDep,
                      user: Leader, body: ProgrammeApproval | None = None):
    """Approve: it airs from now on. One in the quiet hours needs ``"confirm_quiet": true``."""
    body = body or ProgrammeApproval()
    return programmes.approve_programme(session, settings=settings, programme_id=programme_id,
                                        actor=user, confirm_quiet=body.confirm_quiet,
                                        comment=body.comment)


@router.post("/{programme_id}/reject", response_model=ProgrammePublic)
def reject_programme(programme_id: str, body: ProgrammeRejection, session: SessionDep,
                     user: Leader):
    return programmes.reject_programme(session, programme_id=programme_id, actor=user,
                                       comment=body.comment)


@router.get("/{programme_id}/occurrences", response_model=list[OccurrencePublic])
def list_occurrences(programme_id: str, session: SessionDep, settings: SettingsDep,
                     _: Reader, from_: Annotated[datetime | None, Query(alias="from")] = None,
                     to: datetime | None = None):
    """Occurrences in [from, to) (default: from a day ago, four weeks on), each with its
    state and, once aired, every receiver's state and reason."""
    programme = programmes.get_programme(session, programme_id=programme_id)
    start = (programmes_time.aware(from_, "from") if from_ is not None
             else datetime.now(UTC) - timedelta(days=1))
    end = programmes_time.aware(to, "to") if to is not None else start + DEFAULT_PERIOD
    return programmes.occurrence_states(session, settings=settings, programme=programme,
                                        start=start, end=end)


@router.post("/{programme_id}/occurrences/{slot}/skip", status_code=status.HTTP_204_NO_CONTENT)
def skip_occurrence(programme_id: str, slot: str, session: SessionDep, settings: SettingsDep,
                    publisher: PublisherDep, user: EditorOrLeader):
    """Leave one occurrence out (``slot``: its time by the rule, ISO 8601)."""
    programmes.skip_occurrence(session, settings=settings, publisher=publisher,
                               programme_id=programme_id,
                               slot=programmes_time.aware(slot, "slot"), actor=user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{programme_id}/occurrences/{slot}/move", status_code=status.HTTP_204_NO_CONTENT)
def move_occurrence(programme_id: str, slot: str, body: OccurrenceMove, session: SessionDep,
                    settings: SettingsDep, publisher: PublisherDep, user: EditorOrLeader):
    """Air one occurrence at ``to`` instead; an editor's move of an approved programme sends
    it back for approval."""
    programmes.move_occurrence(session, settings=settings, publisher=publisher,
                               programme_id=programme_id,
                               slot=programmes_time.aware(slot, "slot"), to=body.to,
                               actor=user, confirm_quiet=body.confirm_quiet)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
