"""Every command as a careless or hostile user runs it: files that are missing, directories, unreadable, binary or
empty; a server URL that refuses connections or is not a URL; a server that answers 401/403/404/422/503, or 200
with something that is not lrserve's JSON (another web server at --url); each with and without --json.
None may end in a traceback; each exits with one of the codes documented in ``cli.output``."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lrserve.cli.main import app
from lrserve.cli.output import EXIT_INVALID, EXIT_UNREACHABLE, EXIT_USAGE

DOCUMENTED = {EXIT_INVALID, EXIT_USAGE, EXIT_UNREACHABLE}  # and 0, for what succeeded
SPEC = {"param_groups": [{"name": "g", "lr": 0.1}], "schedule": {"type": "StepLR", "step_size": 10}}

#: What the stub answers, by the first segment of the path: ``/401-problem/v1/runs`` -> 401 with a problem.
BODIES = {
    "problem": ("application/problem+json", b'{"type": "x", "title": "Refused", "status": 0, "detail": "no"}'),
    "html": ("text/html", b"<html><body><h1>502 Bad Gateway</h1> nginx</body></html>"),
    "empty": ("application/json", b""),
    "badjson": ("application/json", b"{not json"),
    "object": ("application/json", b'{"hello": "world"}'),
    "list": ("application/json", b"[1, 2, 3]"),
}


class Stub(BaseHTTPRequestHandler):
    def log_message(self, *_: object) -> None:
        pass

    def answer(self) -> None:
        status, _, kind = self.path.strip("/").split("/")[0].partition("-")
        content_type, body = BODIES[kind]
        self.send_response(int(status))
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = answer


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "plots.png").mkdir()
    (tmp_path / "binary.yaml").write_bytes(b"\x00\xff\xfe\x89PNG\r\n")
    (tmp_path / "empty.yaml").write_text("")
    locked = tmp_path / "locked.yaml"
    locked.write_text(json.dumps(SPEC))
    locked.chmod(0)  # unreadable, except to root
    return {
        "missing": str(tmp_path / "nope.yaml"),
        "directory": str(tmp_path / "a-directory"),
        "directory-png": str(tmp_path / "plots.png"),
        "unreadable": str(locked),
        "unreadable-proc": "/proc/self/mem",  # opens, then every read fails (EIO), root or not
        "binary": str(tmp_path / "binary.yaml"),
        "empty": str(tmp_path / "empty.yaml"),
    }


@pytest.fixture
def spec_file(tmp_path: Path) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(SPEC))
    return str(path)


def invoke(*args: str) -> tuple[int, str, str | None]:
    """Exit code, everything printed, and the uncaught exception (what would have been a traceback)."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "120", "LRSERVE_URL": None, "LRSERVE_TOKEN": None})
    exc = result.exception
    uncaught = None if exc is None or isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
    return result.exit_code, result.output, uncaught


def check(cases: list[list[str]], *, must_fail: bool) -> None:
    bad = []
    for args in cases:
        code, output, uncaught = invoke(*args)
        if uncaught or "Traceback" in output:
            bad.append(f"{args}: traceback ({uncaught})")
        elif code not in DOCUMENTED | ({0} if not must_fail else set()):
            bad.append(f"{args}: exit {code}")
        elif code != 0 and not output.strip():
            bad.append(f"{args}: exit {code} without a message")
    assert not bad, f"{len(bad)} of {len(cases)}:\n" + "\n".join(bad[:40])


def remote_commands(spec_file: str) -> list[list[str]]:
    return [
        ["runs", "list"],
        ["runs", "show", "r"],
        ["runs", "curve", "r"],
        ["runs", "curve", "r", "--stop", "10"],
        ["runs", "events", "r"],
        ["runs", "change", "r", "--scale", "0.5"],
        ["runs", "change", "r", "--scale", "0.5", "--dry-run"],
        ["runs", "create", "r", spec_file],
        ["runs", "delete", "r", "--yes"],
    ]


@pytest.mark.parametrize("kind", ["missing", "directory", "unreadable", "unreadable-proc", "binary", "empty"])
def test_bad_files(files: dict[str, str], spec_file: str, closed_url: str, kind: str) -> None:
    path = files[kind]
    cases = [
        ["validate", path],
        ["validate", "--json", path],
        ["preview", path],
        ["preview", "--json", path],
        ["runs", "create", "r", path, "--url", closed_url],
        ["runs", "change", "r", "--replace", path, "--url", closed_url],
        ["runs", "change", "r", "--plateau", path, "--url", closed_url, "--json"],
        ["serve", "--config", path, "--port", "0", "--store", "sqlite:////nonexistent/x.db"],  # never starts
    ]
    check(cases, must_fail=kind != "unreadable" or os.geteuid() != 0)


def test_output_files_that_cannot_be_written(files: dict[str, str], spec_file: str, stub: str) -> None:
    # the curve's CSV goes to a directory; (a server that answers 200 with CSV is not needed to get there)
    cases = [
        ["preview", spec_file, "--png", files["directory-png"]],
        ["preview", spec_file, "--png", "/nonexistent/dir/x.png"],
        ["runs", "curve", "r", "--stop", "10", "--csv", files["directory"], "--url", f"{stub}/200-html"],
        ["runs", "curve", "r", "--stop", "10", "--csv", "/nonexistent/dir/x.csv", "--url", f"{stub}/200-html"],
    ]
    check(cases, must_fail=True)


def test_png_with_a_suffix_matplotlib_does_not_know(spec_file: str, tmp_path: Path) -> None:
    check([["preview", spec_file, "--png", str(tmp_path / "plot.yaml")]], must_fail=True)


@pytest.mark.parametrize("url", ["closed", "not a url", "ftp://example.invalid", "http://[bad"])
def test_servers_that_cannot_be_reached(spec_file: str, closed_url: str, url: str) -> None:
    target = closed_url if url == "closed" else url
    cases = [[*c, "--url", target, *j] for c in remote_commands(spec_file) for j in ([], ["--json"])]
    check(cases, must_fail=True)
    code, output, _ = invoke("runs", "list", "--url", target)
    assert code == EXIT_UNREACHABLE, output


@pytest.mark.parametrize("status", [401, 403, 404, 422, 503])
@pytest.mark.parametrize("body", ["problem", "html", "empty", "list"])
def test_servers_that_refuse(stub: str, spec_file: str, status: int, body: str) -> None:
    url = f"{stub}/{status}-{body}"
    check([[*c, "--url", url, *j] for c in remote_commands(spec_file) for j in ([], ["--json"])], must_fail=True)
    code, output, _ = invoke("runs", "show", "r", "--url", url)
    assert code == EXIT_INVALID and f"{status}" in output, output


@pytest.mark.parametrize("body", ["html", "empty", "badjson", "object", "list"])
def test_a_server_that_is_not_lrserve(stub: str, spec_file: str, body: str) -> None:
    url = f"{stub}/200-{body}"
    check([[*c, "--url", url, *j] for c in remote_commands(spec_file) for j in ([], ["--json"])], must_fail=False)
    code, output, _ = invoke("runs", "show", "r", "--url", url)
    if body != "object" and body != "list":
        assert code == EXIT_UNREACHABLE and "is --url an lrserve server" in output, output
