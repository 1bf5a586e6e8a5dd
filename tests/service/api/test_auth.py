"""Every route x every credential, table-driven from the real app's OpenAPI document.

The operations come from ``create_app(...).openapi()["paths"]``; each must have a rule (the scope it needs) and
an example request below, so a route added without deciding who may call it fails here.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from lrserve.service.app import create_app
from lrserve.service.auth import GRANTS, TokenAuth, hash_token
from lrserve.service.settings import Settings, TokenConfig
from tests.service.api.conftest import SPEC, TOKENS, Serve, bearer, create_run, start_app, token_configs

#: (METHOD, path template) -> the scope it needs (None: public).
RULES: dict[tuple[str, str], str | None] = {
    ("PUT", "/v1/runs/{run_id}"): "train",
    ("GET", "/v1/runs/{run_id}"): "read",
    ("DELETE", "/v1/runs/{run_id}"): "admin",
    ("GET", "/v1/runs"): "read",
    ("GET", "/v1/runs/{run_id}/events"): "read",
    ("GET", "/v1/runs/{run_id}/lr"): "train",
    ("GET", "/v1/runs/{run_id}/plan"): "read",
    ("POST", "/v1/runs/{run_id}/applied"): "train",
    ("POST", "/v1/runs/{run_id}/metrics"): "train",
    ("POST", "/v1/runs/{run_id}/changes"): "admin",
    ("POST", "/v1/runs/{run_id}/resume"): "train",
    ("GET", "/v1/runs/{run_id}/curve"): "read",
    ("POST", "/v1/curves"): "read",
    ("GET", "/v1/runs/{run_id}/suggestion"): "read",
    ("POST", "/v1/runs/{run_id}/followup"): "train",
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
}

#: A valid request for each operation: query parameters and JSON body ({run_id} is an existing run).
EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("PUT", "/v1/runs/{run_id}"): {"json": {"spec": SPEC}},
    ("GET", "/v1/runs/{run_id}"): {},
    ("DELETE", "/v1/runs/{run_id}"): {},
    ("GET", "/v1/runs"): {"params": {"limit": 5}},
    ("GET", "/v1/runs/{run_id}/events"): {},
    ("GET", "/v1/runs/{run_id}/lr"): {"params": {"step": 0, "count": 4}},
    ("GET", "/v1/runs/{run_id}/plan"): {},
    ("POST", "/v1/runs/{run_id}/applied"): {"json": {"start": 0, "stop": 3, "last_seq": 1}},
    ("POST", "/v1/runs/{run_id}/metrics"): {"json": {"step": 0, "name": "val_loss", "value": 1.0}},
    ("POST", "/v1/runs/{run_id}/changes"): {"json": {"op": "scale", "factor": 0.5}},
    ("POST", "/v1/runs/{run_id}/resume"): {"json": {"step": 0}},
    ("GET", "/v1/runs/{run_id}/curve"): {"params": {"stop": 50}},
    ("POST", "/v1/curves"): {"json": {"spec": SPEC, "stop": 50}},
    ("GET", "/v1/runs/{run_id}/suggestion"): {},
    ("POST", "/v1/runs/{run_id}/followup"): {"json": {"run_id": "after-test", "step_size_up": 100}},
    ("GET", "/healthz"): {},
    ("GET", "/readyz"): {},
}

OPERATIONS = sorted(
    (method.upper(), path) for path, item in create_app(Settings()).openapi()["paths"].items() for method in item
)
CREDENTIALS = ["none", "unknown", "malformed", "read", "train", "admin"]


def _headers(credential: str) -> dict[str, str]:
    if credential == "none":
        return {}
    if credential == "unknown":
        return {"Authorization": "Bearer not-a-configured-token"}
    if credential == "malformed":
        return {"Authorization": f"Basic {TOKENS['admin']}"}
    return bearer(credential)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """One app with a token per scope, shared by the module (every case works on its own run)."""
    db = tmp_path_factory.mktemp("auth") / "lrserve.db"
    with ExitStack() as stack:
        yield start_app(stack, Settings(store=f"sqlite:///{db}", tokens=token_configs()))


def test_every_route_has_a_rule_and_an_example() -> None:
    assert OPERATIONS, "the app has no routes?"
    missing = [op for op in OPERATIONS if op not in RULES or op not in EXAMPLES]
    assert not missing, f"routes without an auth rule or example in this test: {missing}"
    stale = set(RULES) - set(OPERATIONS)
    assert not stale, f"rules for routes that no longer exist: {stale}"


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op[0]} {op[1]}")
def test_openapi_declares_the_scope(operation: tuple[str, str]) -> None:
    method, path = operation
    spec = create_app(Settings()).openapi()["paths"][path][method.lower()]
    scope = RULES[operation]
    declared = spec.get("security")
    assert declared == (None if scope is None else [{"HTTPBearer": [scope]}])


@pytest.mark.parametrize(
    ("operation", "credential"),
    list(itertools.product(OPERATIONS, CREDENTIALS)),
    ids=lambda v: v if isinstance(v, str) else f"{v[0]} {v[1]}",
)
def test_route_by_credential(guarded: httpx.Client, operation: tuple[str, str], credential: str) -> None:
    method, path = operation
    run_id = f"auth-{uuid.uuid4().hex[:12]}"
    if path.endswith(("/suggestion", "/followup")):
        create_range_test(guarded, run_id)
    elif "{run_id}" in path and method != "PUT":
        create_run(guarded, run_id, headers=bearer("admin"))
    example = EXAMPLES[operation]
    response = guarded.request(method, path.replace("{run_id}", run_id), headers=_headers(credential), **example)
    needed = RULES[operation]
    if needed is None:
        expected = "allowed"
    elif credential in ("none", "unknown", "malformed"):
        expected = "401"
    else:
        expected = "allowed" if needed in GRANTS[credential] else "403"

    if expected == "401":
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["type"] == "unauthorized"
    elif expected == "403":
        assert response.status_code == 403, response.text
        assert response.json()["type"] == "forbidden"
        assert response.json()["required_scope"] == needed
    else:
        assert 200 <= response.status_code < 300, response.text


def create_range_test(client: httpx.Client, run_id: str) -> None:
    """A finished 40-step range test (the suggestion and follow-up routes answer 409 on other runs)."""
    spec = {"schedule": {"type": "LRRangeTest", "start_lr": 1e-4, "end_lr": 1.0, "num_steps": 40}}
    admin = bearer("admin")
    assert client.put(f"/v1/runs/{run_id}", json={"spec": spec}, headers=admin).status_code == 201
    assert client.get(f"/v1/runs/{run_id}/lr", params={"step": 0, "count": 40}, headers=admin).status_code == 200
    losses = [{"step": i, "name": "loss", "value": 2.0 - 1.5 * i / 40 + (i / 38) ** 8} for i in range(40)]
    assert client.post(f"/v1/runs/{run_id}/metrics", json={"metrics": losses}, headers=admin).status_code == 200


def test_actor_is_the_token_name(guarded: httpx.Client) -> None:
    create_run(guarded, "actor-run", headers=bearer("train"))
    guarded.post("/v1/runs/actor-run/changes", json={"op": "scale", "factor": 2}, headers=bearer("admin"))
    events = guarded.get("/v1/runs/actor-run/events", headers=bearer("read")).json()["events"]
    assert [e["actor"] for e in events] == ["train-bot", "admin-bot"]


def test_open_server_allows_everything_without_actor(client: httpx.Client) -> None:
    create_run(client, "open-run")
    assert client.delete("/v1/runs/open-run").status_code == 204
    assert client.get("/v1/runs").status_code == 200


def test_open_server_ignores_tokens(client: httpx.Client) -> None:
    assert client.get("/v1/runs", headers={"Authorization": "Bearer whatever"}).status_code == 200


def test_token_auth_compares_every_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup compares with every configured digest, whichever matches (no early exit)."""
    import hmac

    calls: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append(a)
        return real(a, b)

    tokens = [TokenConfig(name=f"t{i}", sha256=hash_token(f"secret-{i}"), scopes=["read"]) for i in range(5)]
    auth = TokenAuth(tokens)
    monkeypatch.setattr("lrserve.service.auth.hmac.compare_digest", spy)
    assert auth.authenticate("secret-0").name == "t0"
    assert len(calls) == 5


def test_scopes_imply_lower_ones() -> None:
    assert GRANTS["admin"] == {"read", "train", "admin"}
    assert GRANTS["train"] == {"read", "train"}
    assert GRANTS["read"] == {"read"}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.org"])
def test_open_server_refuses_non_loopback(serve: Serve, host: str) -> None:
    with pytest.raises(RuntimeError, match="no API tokens"):
        serve(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_open_server_runs_on_loopback(serve: Serve, host: str) -> None:
    assert serve(host=host).get("/healthz").status_code == 200


def test_non_loopback_with_tokens_or_flag(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    assert serve(host="0.0.0.0", tokens=token_configs()).get("/healthz").status_code == 200
    with caplog.at_level("WARNING", logger="lrserve.server"):
        assert serve(host="0.0.0.0", allow_open_non_loopback=True).get("/healthz").status_code == 200
    assert any("open to anyone" in r.getMessage() for r in caplog.records)


def test_duplicate_token_names_are_refused() -> None:
    one = TokenConfig(name="x", sha256=hash_token("a"), scopes=["read"])
    two = TokenConfig(name="x", sha256=hash_token("b"), scopes=["admin"])
    with pytest.raises(ValueError, match="unique"):
        Settings(tokens=[one, two])
