"""Bearer tokens and scopes.

A request carries ``Authorization: Bearer <token>``. The server keeps only the sha256 digest of each token
(``settings.tokens``), hashes what it receives and compares it with every configured digest using
``hmac.compare_digest``, so the time taken tells nothing about which bytes matched.

Scopes are ordered, each implying the ones below it:

    admin  ⊃  train  ⊃  read
    read:  every GET except the lease (runs, curves, events) and POST /v1/curves (a preview writes nothing)
    train: what a training job does: PUT a run, GET .../lr (it extends the horizon), POST metrics, POST resume
    admin: what an operator does: POST changes, DELETE a run

With no tokens configured the server is open: every request has every scope and no actor name; it then refuses
to listen on a non-loopback address unless ``allow_open_non_loopback`` is set (``Settings.bind_problem``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from lrserve.schemas.errors import Forbidden, Unauthorized
from lrserve.service.settings import TokenConfig

#: What each scope grants (itself and the scopes it implies).
GRANTS: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "train": frozenset({"read", "train"}),
    "admin": frozenset({"read", "train", "admin"}),
}
TOKEN_PREFIX = "lrs_"


@dataclass(frozen=True)
class Principal:
    """Who is asking: the token's name (None on an open server) and every scope it holds, implied ones included."""

    name: str | None
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            held = ", ".join(sorted(self.scopes)) or "none"
            raise Forbidden(
                detail=f"this call needs the {scope!r} scope; token {self.name!r} has: {held}",
                extra={"required_scope": scope},
            )


OPEN = Principal(name=None, scopes=GRANTS["admin"])


def hash_token(token: str) -> str:
    """The hex sha256 digest of a token: what goes in the config's ``tokens[].sha256``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits), e.g. ``lrs_Jx2...``."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def expand(scopes: Iterable[str]) -> frozenset[str]:
    out: set[str] = set()
    for scope in scopes:
        out |= GRANTS[scope]
    return frozenset(out)


class TokenAuth:
    """Resolves a bearer token to a Principal (``Unauthorized`` if missing or unknown)."""

    def __init__(self, tokens: Iterable[TokenConfig]) -> None:
        self._entries = [(bytes.fromhex(t.sha256), Principal(t.name, expand(t.scopes))) for t in tokens]

    @property
    def open(self) -> bool:
        return not self._entries

    def authenticate(self, token: str | None) -> Principal:
        if not self._entries:
            return OPEN
        if not token:
            raise Unauthorized(detail="send 'Authorization: Bearer <token>'")
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found: Principal | None = None
        for known, principal in self._entries:
            # No early exit: every digest is compared whichever one matches.
            if hmac.compare_digest(known, digest):
                found = principal
        if found is None:
            raise Unauthorized(detail="unknown token")
        return found
