"""What an attacker can send: guessed tokens, odd run ids, huge or broken bodies, on every route that takes them.

``test_auth`` covers the route x scope matrix and ``test_limits`` the limits on one route each; here each hostile
input is tried on every operation it applies to (taken from the OpenAPI document), and the token lookup is shown
to do the same work whatever the guess: not a timing measurement (noisy on a shared machine) but a count of the
comparisons it makes and of the bytes they compare.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

import httpx
import pytest

from lrserve.schemas.errors import Unauthorized
from lrserve.service.app import create_app
from lrserve.service.auth import TokenAuth, hash_token, new_token
from lrserve.service.settings import Limits, Settings, TokenConfig
from tests.service.api.conftest import SPEC, TOKENS, Serve, bearer, create_run, token_configs
from tests.service.api.test_problems import assert_problem

OPENAPI = create_app(Settings()).openapi()["paths"]
RUN_OPERATIONS = sorted((m.upper(), p) for p, item in OPENAPI.items() for m in item if "{run_id}" in p)
BODY_OPERATIONS = sorted((m.upper(), p) for p, item in OPENAPI.items() for m, op in item.items() if "requestBody" in op)
JSON_TYPE = {"content-type": "application/json"}


def _op_id(op: tuple[str, str]) -> str:
    return f"{op[0]} {op[1]}"


# ---- token guessing ---------------------------------------------------------------------------------------------


Comparisons = list[tuple[bytes, int, int]]


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> Comparisons:
    """Every ``hmac.compare_digest`` the token lookup makes: (configured digest, length of each side)."""
    seen: Comparisons = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((bytes(a), len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr("lrserve.service.auth.hmac.compare_digest", spy)
    return seen


def _near_miss(token: str) -> str:
    """The token with its last character changed: every byte but one right."""
    return token[:-1] + ("A" if token[-1] != "A" else "B")


def test_near_and_far_misses_do_the_same_work(comparisons: Comparisons) -> None:
    secrets = [new_token() for _ in range(6)]
    auth = TokenAuth(TokenConfig(name=f"t{i}", sha256=hash_token(s), scopes=["read"]) for i, s in enumerate(secrets))
    guesses = {
        "hit": secrets[3],
        "near miss": _near_miss(secrets[3]),
        "same prefix": secrets[3][:20],
        "far miss": "x",
        "long": "y" * 10_000,
        "unicode": "\u00e9\u8dd1\U0001f680",
    }
    work: dict[str, Comparisons] = {}
    for label, guess in guesses.items():
        comparisons.clear()
        if label == "hit":
            assert auth.authenticate(guess).name == "t3"
        else:
            with pytest.raises(Unauthorized):
                auth.authenticate(guess)
        work[label] = list(comparisons)
    # Each guess is hashed first, so what is compared is always 32 bytes against every configured digest, in the
    # same order: how close a guess was cannot change how much work the server does.
    expected = [(bytes.fromhex(hash_token(s)), 32, 32) for s in secrets]
    for label, done in work.items():
        assert done == expected, label


def test_http_lookup_work_does_not_depend_on_the_guess(serve: Serve, comparisons: Comparisons) -> None:
    client = serve(tokens=token_configs())
    create_run(client, headers=bearer("admin"))
    client.get("/v1/runs/run-1/lr", params={"step": 0, "count": 5}, headers=bearer("train"))  # frozen: fast path

    def work(token: str, path: str) -> tuple[int, int]:
        comparisons.clear()
        response = client.get(path, params={"step": 0, "count": 5}, headers={"Authorization": f"Bearer {token}"})
        return response.status_code, len(comparisons)

    for path in ("/v1/runs/run-1/lr", "/v1/runs/run-1", "/v1/runs/run-1/curve"):
        near = work(_near_miss(TOKENS["admin"]), path)
        far = work("z" * 300, path)
        assert near == far, path
        assert near[0] == 401
        assert near[1] >= len(TOKENS), "every configured digest is compared"


# ---- run ids ----------------------------------------------------------------------------------------------------

#: Ids a client might send by mistake or on purpose, percent-encoded as an HTTP client sends them.
HOSTILE_IDS = [
    "run-1%0A",  # a trailing newline: Python's `$` matches before it; the route's pattern must not
    "run%E2%80%901",  # U+2010 HYPHEN, which looks like "-"
    "%EF%BD%92un-1",  # a fullwidth "r"
    "run-1%00",
    "run-1%20",
    "run-1%2Flr",  # an encoded slash
    "r" * 129,
]


@pytest.fixture
def with_run(serve: Serve) -> httpx.Client:
    client = serve()
    create_run(client)
    client.get("/v1/runs/run-1/lr", params={"step": 0, "count": 5})
    return client


@pytest.mark.parametrize("operation", RUN_OPERATIONS, ids=_op_id)
def test_hostile_run_ids_are_refused_on_every_run_route(with_run: httpx.Client, operation: tuple[str, str]) -> None:
    method, template = operation
    for run_id in HOSTILE_IDS:
        path = template.replace("{run_id}", run_id)
        body = {"json": {"spec": SPEC}} if method == "PUT" else {}
        response = with_run.request(method, path, params={"step": 0}, **body)
        if run_id == "run-1%2Flr":  # decoded before routing: just another path (/v1/runs/run-1/lr/...), or none
            assert response.status_code < 500
            continue
        problem = assert_problem(response, 422, "invalid-input")
        assert problem["errors"][0]["loc"] == ["path", "run_id"], (path, problem)
    runs = with_run.get("/v1/runs").json()["runs"]
    assert [r["run_id"] for r in runs] == ["run-1"]
    assert with_run.get("/v1/runs/run-1").json()["horizon"] == 4


# ---- bodies -----------------------------------------------------------------------------------------------------


def _path(template: str) -> str:
    return template.replace("{run_id}", "run-1")


@pytest.mark.parametrize("operation", BODY_OPERATIONS, ids=_op_id)
def test_oversized_body_is_413_on_every_body_route(serve: Serve, operation: tuple[str, str]) -> None:
    client = serve(limits=Limits(max_body_bytes=2048))
    create_run(client)
    method, template = operation
    declared = client.request(method, _path(template), content=b"[" + b"0," * 2000 + b"0]", headers=JSON_TYPE)
    assert_problem(declared, 413, "payload-too-large")

    def chunks() -> Any:
        for _ in range(100):
            yield b" " * 100

    streamed = client.request(method, _path(template), content=chunks(), headers=JSON_TYPE)
    assert_problem(streamed, 413, "payload-too-large")
    assert [e["kind"] for e in client.get("/v1/runs/run-1/events").json()["events"]] == ["created"]


MALFORMED = [b"{", b'{"a": 1,}', b"\xff\xfe\xfd", b"[" * 5000, b'{"a": NaN', b"\x00", b'"\\ud800"x']


@pytest.mark.parametrize("operation", BODY_OPERATIONS, ids=_op_id)
def test_malformed_json_is_422_on_every_body_route(serve: Serve, operation: tuple[str, str]) -> None:
    client = serve()
    create_run(client)
    method, template = operation
    for content in MALFORMED:
        response = client.request(method, _path(template), content=content, headers=JSON_TYPE)
        problem = assert_problem(response, 422, "invalid-input")
        assert problem["errors"][0]["type"] == "json_invalid", (content, problem)
    assert [e["kind"] for e in client.get("/v1/runs/run-1/events").json()["events"]] == ["created"]


@pytest.mark.parametrize(
    "text", ["x" * 20_000, "\U0001f680" * 300, "\ud800", "a\x00b"], ids=["long", "emoji", "surrogate", "nul"]
)
def test_odd_strings_in_bodies_are_not_500(serve: Serve, store_url: str, text: str) -> None:
    """On both backends (PostgreSQL refuses NUL in text columns: a 422 there, stored on SQLite)."""
    client = serve(store=store_url)
    create_run(client)
    for method, path, body in [
        ("POST", "/v1/runs/run-1/metrics", {"step": 9, "name": text, "value": 1.0}),
        ("POST", "/v1/runs/run-1/changes", {"op": "scale", "factor": 0.5, "reason": text}),
        ("PUT", "/v1/runs/run-2", {"spec": SPEC, "labels": {"k": text}}),
        ("POST", "/v1/runs/run-1/resume", {"step": 1, "key": text}),
    ]:
        # json.dumps escapes non-ASCII (\\ud83d...), so even a lone surrogate travels as valid JSON text
        response = client.request(method, path, content=json.dumps(body).encode(), headers=JSON_TYPE)
        assert response.status_code < 500, (text[:10], path, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json"
