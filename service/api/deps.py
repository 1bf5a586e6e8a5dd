"""Typed dependencies of the routes: the service, the settings, the caller and its scope, common parameters.

Every dependency here is ``async def``: FastAPI runs a plain ``def`` dependency in the threadpool, a hop that
would cost the hot lease route about a third of its throughput.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from lrserve.schemas.errors import FieldError, InvalidInput
from lrserve.schemas.wire import RUN_ID_PATTERN
from lrserve.service.auth import Principal, TokenAuth
from lrserve.service.runs import RunService
from lrserve.service.settings import Settings

_bearer = HTTPBearer(
    auto_error=False,
    description="an API token: `Authorization: Bearer <token>` (`lrserve token new NAME --scopes ...`)",
)


async def get_service(request: Request) -> RunService:
    service: RunService = request.app.state.service
    return service


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def authorize(
    security_scopes: SecurityScopes,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, checked for the scopes the route declares (401 unknown token, 403 missing scope)."""
    auth: TokenAuth = request.app.state.auth
    principal = auth.authenticate(credentials.credentials if credentials is not None else None)
    for scope in security_scopes.scopes:
        principal.require(scope)
    return principal


_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,18})"?\s*$')


async def if_match(
    value: Annotated[
        str | None,
        Header(alias="If-Match", description="the run's revision as read; 412 if it changed since"),
    ] = None,
) -> int | None:
    if value is None:
        return None
    found = _ETAG.match(value)
    if found is None:
        raise InvalidInput(
            detail="If-Match must be the run's revision number, e.g. If-Match: 3",
            errors=[FieldError(("header", "if-match"), "expected a revision number")],
        )
    return int(found.group(1))


Service = Annotated[RunService, Depends(get_service)]
AppSettings = Annotated[Settings, Depends(get_settings)]
Reader = Annotated[Principal, Security(authorize, scopes=["read"])]
Trainer = Annotated[Principal, Security(authorize, scopes=["train"])]
Admin = Annotated[Principal, Security(authorize, scopes=["admin"])]
IfMatch = Annotated[int | None, Depends(if_match)]
RunIdPath = Annotated[
    str,
    Path(pattern=RUN_ID_PATTERN, description="the run's id: ASCII letters, digits and _ . : - (at most 128)"),
]
