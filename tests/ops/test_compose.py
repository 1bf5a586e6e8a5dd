"""docker-compose.yml, run without Docker: each lrserve service's command and environment, exactly as the file gives
them (compose's ``${VAR}`` interpolation applied), as real ``lrserve serve`` processes on the local PostgreSQL.

Only three things are swapped for local ones, and the test checks that nothing else differs: the database URL's
host, port, user and database (the test's empty database instead of the ``postgres`` service's), the ``--port``
(a free one instead of each container's 8000), and the ``--config`` path (a verbatim copy of the file the service
mounts there). The nginx config's upstreams are checked against the services.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.engine import make_url

from lrserve.service.auth import hash_token, new_token
from lrserve.service.settings import load_settings
from tests.e2e.server import free_port, lrserve_command
from tests.ops.conftest import scrape, value

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
NGINX = ROOT / "deploy" / "nginx.conf"
#: What a container has besides what compose gives it (the image's PATH and HOME); nothing else of ours leaks in.
BASE_ENV = ("PATH", "HOME", "LANG", "TMPDIR")
SCOPES = ("read", "train", "admin")


# ---- compose's side: parsing and interpolation ---------------------------------------------------------------------

_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``, ``$$``."""

    def substitute(found: re.Match[str]) -> str:
        if found.group("escaped"):
            return "$"
        name, op, arg = found.group("name"), found.group("op"), found.group("arg") or ""
        given = env.get(name)
        if op == ":-":
            return given or arg
        if op == "-":
            return arg if given is None else given
        if op in (":?", "?") and (given is None or (op == ":?" and not given)):
            raise ValueError(f"{name}: {arg}")
        return given or ""

    return _VARIABLE.sub(substitute, text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # resolves the x-lrserve anchor and << merges
    return loaded


def lrserve_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if svc.get("image", "").startswith("lrserve:")}


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def mounted(service: dict[str, Any], target: str) -> Path:
    """The host file a service mounts at ``target`` (read-only)."""
    for volume in service["volumes"]:
        source, _, rest = volume.partition(":")
        path, _, mode = rest.partition(":")
        if path == target:
            assert mode == "ro", f"{target} should be mounted read-only"
            return (COMPOSE.parent / source).resolve()
    raise AssertionError(f"nothing mounted at {target}")


def dockerfile_entrypoint() -> list[str]:
    found = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert found is not None
    entrypoint: list[str] = json.loads(found.group(1))
    return entrypoint


# ---- the file alone ------------------------------------------------------------------------------------------------


def test_two_alike_replicas_behind_nginx_on_postgres(compose: dict[str, Any]) -> None:
    services = lrserve_services(compose)
    assert sorted(services) == ["lrserve-1", "lrserve-2"]
    one, two = services.values()
    assert one == two  # replicas: the same command, environment, mounts, checks
    command = one["command"]
    assert command[0] == "serve"
    assert option(command, "--host") == "0.0.0.0"
    assert make_url(option(command, "--store")).drivername == "postgresql+psycopg"
    assert make_url(option(command, "--store")).host == "postgres"
    assert one["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "/readyz" in " ".join(one["healthcheck"]["test"])
    assert f"127.0.0.1:{option(command, '--port')}/" in " ".join(one["healthcheck"]["test"])
    postgres = compose["services"]["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "pgdata:/var/lib/postgresql/data" in postgres["volumes"]
    assert "pgdata" in compose["volumes"]
    assert compose["services"]["nginx"]["depends_on"] == {n: {"condition": "service_healthy"} for n in services}
    assert "healthcheck" in compose["services"]["nginx"]
    # Docker waits stop_grace_period after SIGTERM, then kills: longer than the server's own wait for requests.
    config = load_settings(mounted(one, option(command, "--config")))
    assert int(one["stop_grace_period"].rstrip("s")) > config.shutdown_timeout


def test_compose_refuses_to_start_without_the_secrets(compose: dict[str, Any]) -> None:
    environment = next(iter(lrserve_services(compose).values()))["environment"]
    full = {"POSTGRES_PASSWORD": "pw", "LRSERVE_TOKENS": "[]"}
    assert interpolate(environment["PGPASSWORD"], full) == "pw"
    for missing in full:
        given = {k: v for k, v in full.items() if k != missing}
        with pytest.raises(ValueError, match=missing):
            [interpolate(text, given) for text in environment.values()]
    assert interpolate(environment["LRSERVE_LOG_LEVEL"], full) == "info"  # a default
    assert interpolate(environment["LRSERVE_LOG_LEVEL"], {**full, "LRSERVE_LOG_LEVEL": "debug"}) == "debug"
    assert interpolate("$${X}", {}) == "${X}"


def test_nginx_upstreams_are_the_compose_services(compose: dict[str, Any]) -> None:
    services = lrserve_services(compose)
    text = re.sub(r"#.*", "", NGINX.read_text())
    upstreams = dict(re.findall(r"upstream\s+(\w+)\s*\{([^}]*)\}", text))
    assert list(upstreams) == ["lrserve"]
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", upstreams["lrserve"], re.MULTILINE)
    assert sorted(host for host, _ in servers) == sorted(services)
    assert {port for _, port in servers} == {option(s["command"], "--port") for s in services.values()}
    assert re.findall(r"proxy_pass\s+http://(\w+)\s*;", text) == ["lrserve"]
    assert "non_idempotent" not in text  # a POST (a change) is never sent twice
    nginx = compose["services"]["nginx"]
    assert mounted(nginx, "/etc/nginx/nginx.conf") == NGINX
    health = " ".join(nginx["healthcheck"]["test"])
    listen = re.search(r"listen\s+(\d+)\s*;", text)
    assert listen is not None and f"127.0.0.1:{listen.group(1)}/nginx-health" in health
    assert re.search(r"location\s*=\s*/nginx-health", text)
    assert nginx["ports"] == [f"{listen.group(1)}:{listen.group(1)}"]


def test_commands_are_arguments_of_the_image_entrypoint(compose: dict[str, Any]) -> None:
    assert dockerfile_entrypoint() == ["lrserve"]
    assert Path(lrserve_command()[0]).name in ("lrserve", Path(sys.executable).name)


# ---- the replicas, run ---------------------------------------------------------------------------------------------


class Replica:
    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, logs: Path) -> None:
        self.name, self.command, self.env, self.port = name, command, env, port
        self.log_path = logs / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*lrserve_command(), *command], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=logs
            )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        self.signalled = False

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.http.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM (once) and wait."""
        self.http.close()
        if self.proc.poll() is None and not self.signalled:
            self.terminate()
        return self.proc.wait(30)

    def terminate(self) -> None:
        self.signalled = True
        self.proc.terminate()


def local_command(command: list[str], port: int, store: str, config: Path) -> tuple[list[str], set[int]]:
    """The service's command with the three local swaps, and the positions swapped."""
    out = list(command)
    at = {name: out.index(name) + 1 for name in ("--port", "--store", "--config")}
    ours, theirs = make_url(store), make_url(out[at["--store"]])
    assert (ours.drivername, dict(ours.query)) == (theirs.drivername, dict(theirs.query))
    local = theirs.set(host=ours.host, port=ours.port, username=ours.username, database=ours.database)
    out[at["--store"]] = local.set(password=ours.password).render_as_string(hide_password=False)
    out[at["--port"]] = str(port)
    out[at["--config"]] = str(config)
    return out, set(at.values())


@pytest.fixture
def tokens() -> dict[str, str]:
    return {scope: new_token() for scope in SCOPES}


@pytest.fixture
def replicas(
    compose: dict[str, Any], pg_empty_url: str, tokens: dict[str, str], tmp_path: Path
) -> Iterator[list[Replica]]:
    """Both lrserve services started as compose would start them, on the test's PostgreSQL database."""
    variables = {
        "POSTGRES_PASSWORD": "not-checked-by-a-trust-server",
        "LRSERVE_TOKENS": json.dumps(
            [{"name": f"{s}-bot", "sha256": hash_token(t), "scopes": [s]} for s, t in tokens.items()]
        ),
    }
    base = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
    started: list[Replica] = []
    try:
        for name, service in lrserve_services(compose).items():
            config = tmp_path / name / "lrserve.yaml"
            config.parent.mkdir()
            shutil.copyfile(mounted(service, option(service["command"], "--config")), config)
            command, swapped = local_command(service["command"], free_port(), pg_empty_url, config)
            # The swaps are the only differences from the compose file.
            assert len(command) == len(service["command"])
            pairs = enumerate(zip(command, service["command"], strict=True))
            assert all(ours == theirs for i, (ours, theirs) in pairs if i not in swapped)
            env = {**base, **{k: interpolate(str(v), variables) for k, v in service["environment"].items()}}
            assert set(env) - set(base) == set(service["environment"])
            started.append(Replica(name, command, env, int(option(command, "--port")), tmp_path / name))
        for replica in started:  # both start at once: the second waits on the migration lock
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.stop()


@pytest.mark.postgres
@pytest.mark.slow
def test_replicas_as_compose_runs_them_share_one_database(
    replicas: list[Replica], tokens: dict[str, str], compose: dict[str, Any]
) -> None:
    one, two = replicas
    auth = {scope: {"Authorization": f"Bearer {token}"} for scope, token in tokens.items()}
    spec = {"param_groups": [{"name": "g", "lr": 0.1}], "schedule": {"type": "StepLR", "step_size": 10, "gamma": 0.5}}

    assert one.http.get("/v1/runs").status_code == 401  # the tokens came from LRSERVE_TOKENS
    assert one.http.put("/v1/runs/shared", json={"spec": spec}, headers=auth["train"]).status_code == 201
    assert two.http.put("/v1/runs/shared", json={"spec": spec}, headers=auth["train"]).status_code == 200

    leased = two.http.get("/v1/runs/shared/lr", params={"step": 0, "count": 20}, headers=auth["train"])
    assert leased.status_code == 200
    again = one.http.get("/v1/runs/shared/lr", params={"step": 0, "count": 20}, headers=auth["train"])
    assert again.json()["groups"] == leased.json()["groups"]
    assert one.http.get("/v1/runs/shared", headers=auth["read"]).json()["horizon"] == 19

    change = two.http.post("/v1/runs/shared/changes", json={"op": "scale", "factor": 0.5}, headers=auth["admin"])
    assert change.status_code == 200
    assert change.json()["from_step"] == 20
    assert one.http.get("/v1/runs/shared", headers=auth["read"]).json()["revision"] == 1
    after = [r.http.get("/v1/runs/shared/lr", params={"step": 25}, headers=auth["train"]) for r in replicas]
    assert after[0].json()["groups"] == after[1].json()["groups"]
    assert after[0].json()["groups"][0]["lr"] == [pytest.approx(0.1 * 0.5**2 * 0.5)]  # StepLR at 25, scaled

    # The mounted config file is read (its preset), by both.
    preset = two.http.put("/v1/runs/from-preset", json={"preset": "resnet-step"}, headers=auth["train"])
    assert preset.status_code == 201, preset.text

    # Counters are each process's own; the run count is the shared store's.
    m1, m2 = scrape(one.http, auth["read"]), scrape(two.http, auth["read"])
    assert value(m1, "lrserve_runs") == value(m2, "lrserve_runs") == 2
    assert value(m2, "lrserve_changes_total", op="scale") == 1
    assert ("lrserve_changes_total", (("op", "scale"),)) not in m1

    # The compose health check, run as Docker would (its port swapped like the command's).
    service = lrserve_services(compose)[one.name]
    check = [part.replace(":8000/", f":{one.port}/") for part in service["healthcheck"]["test"][1:]]
    assert check[0] == "python"
    assert subprocess.run([sys.executable, *check[1:]], timeout=30, check=False).returncode == 0

    for replica in replicas:
        replica.terminate()  # SIGTERM, as `docker compose stop`
    for replica in replicas:
        assert replica.stop() == 0  # a clean stop
        lines = [json.loads(line) for line in replica.log().splitlines() if line.strip()]
        assert lines, replica.name
        assert {line["logger"] for line in lines} >= {"uvicorn.error", "lrserve.server", "lrserve.request"}
        assert lines[-1]["message"].startswith("Finished server process")
