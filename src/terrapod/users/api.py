"""Account and user routes."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from terrapod.deps import PrincipalDep, SessionDep
from terrapod.errors import NotFound
from terrapod.jsonapi.documents import document
from terrapod.jsonapi.models import JSONAPIRouteResponse, authenticated, responses
from terrapod.users import service
from terrapod.users.schemas import UserDocument, serialize

router = APIRouter(
    prefix="/api/v2",
    tags=["users"],
    default_response_class=JSONAPIRouteResponse,
    responses=authenticated(),
)


@router.get(
    "/account/details",
    operation_id="showAccount",
    # 404 for an organization token: it belongs to no account.
    responses=responses(200, UserDocument, errors=[404]),
)
async def account_details(session: SessionDep, principal: PrincipalDep) -> Response:
    if principal.user_id is None:
        # Organization tokens have no account; terraform login checks this with a user token.
        raise NotFound("this token does not belong to a user account")
    user = await service.get_user(session, principal, principal.user_id)
    return document(serialize(user, include_email=True))


@router.get(
    "/users/{user_id}",
    operation_id="showUser",
    responses=responses(200, UserDocument, errors=[404]),
)
async def show_user(user_id: str, session: SessionDep, principal: PrincipalDep) -> Response:
    user = await service.get_user(session, principal, user_id)
    return document(
        serialize(user, include_email=principal.user_id == user.id or principal.is_admin)
    )
