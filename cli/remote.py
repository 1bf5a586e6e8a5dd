"""A small HTTP client for the ``lrserve runs`` commands: httpx, JSON in and out, problems turned into messages.

The commands print what the server answers (``--json`` prints it verbatim), so this works on plain dicts rather
than the wire models; it does not retry (a person is waiting: an unreachable server is said at once).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, cast

import httpx
import typer

from lrserve.cli.output import EXIT_INVALID, EXIT_UNREACHABLE, fail

DEFAULT_URL = "http://127.0.0.1:8000"

Url = Annotated[
    str,
    typer.Option("--url", envvar="LRSERVE_URL", help="the server's base URL", show_default=True),
]
Token = Annotated[
    str | None,
    typer.Option("--token", envvar="LRSERVE_TOKEN", help="API token (sent as Bearer)", show_default=False),
]
Json = Annotated[bool, typer.Option("--json", help="print the server's JSON answer (for scripts)")]

F = TypeVar("F", bound=Callable[..., Any])
NOT_LRSERVE = "is --url an lrserve server (of this version)?"


def answers_understood(command: F) -> F:
    """For a ``runs`` command: an answer of the wrong shape (another web server at ``--url``, another version of
    lrserve) ends in one line naming the mismatch, not in a traceback from deep inside the rendering."""

    @functools.wraps(command)
    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (KeyError, TypeError, AttributeError, IndexError) as e:
            url = kwargs.get("url") or DEFAULT_URL
            fail(
                f"the server at {url} gave an answer lrserve does not understand ({type(e).__name__}: {e})",
                EXIT_UNREACHABLE,
                [NOT_LRSERVE],
            )

    return cast(F, checked)


class Remote:
    def __init__(self, url: str, token: str | None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "lrserve-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def call(self, method: str, path: str, *, text: bool = False, **kwargs: Any) -> Any:
        """The answer's JSON object (its text with ``text=True``; None for 204); exits with a message on a problem,
        an unreachable server or an answer that is not JSON."""
        try:
            response = self._client.request(method, path, **kwargs)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
            fail(f"bad server URL {self.url!r}: {e}", EXIT_UNREACHABLE, ["e.g. --url http://127.0.0.1:8000"])
        except httpx.TimeoutException:
            fail(f"the server at {self.url} did not answer in time", EXIT_UNREACHABLE)
        except (httpx.TransportError, ValueError) as e:
            fail(
                f"cannot reach the lrserve server at {self.url} ({type(e).__name__}: {e})",
                EXIT_UNREACHABLE,
                ["start one with `lrserve serve`, or point --url / LRSERVE_URL at it"],
            )
        if response.status_code == 204:
            return None
        if response.is_success:
            if text:
                return response.text
            try:
                return response.json()
            except ValueError:
                kind = response.headers.get("content-type") or "no content type"
                fail(
                    f"the server at {self.url} answered {method} {path} with {response.status_code} but not JSON "
                    f"({kind}, {len(response.content)} bytes)",
                    EXIT_UNREACHABLE,
                    [NOT_LRSERVE],
                )
        self._problem(response)

    def _problem(self, response: httpx.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            text = response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason_phrase
            fail(f"{response.status_code} from {self.url}: {text}", EXIT_INVALID)
        title = body.get("title") or response.reason_phrase
        detail = body.get("detail") or ""
        details = [f"{e.get('path') or '<root>'}: {e.get('msg')}" for e in body.get("errors") or []]
        details = [line for line in details if line not in detail]  # the detail often quotes the first error
        if response.status_code == 401:
            details.append("pass --token or set LRSERVE_TOKEN (`lrserve token new NAME --scopes ...`)")
        elif response.status_code == 403:
            details.append("this token lacks the scope; writes need 'admin', reads 'read'")
        if "horizon" in body:
            details.append(f"the run has served steps up to {body['horizon']}")
        if "revision" in body and response.status_code in (409, 412):
            details.append(f"the run is now at revision {body['revision']}")
        fail(f"{response.status_code} {title}: {detail}", EXIT_INVALID, details)
