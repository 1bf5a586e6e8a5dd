"""The web page in real headless Chromium against a real server (uvicorn, SQLite), runs made through the API."""

from __future__ import annotations

import math
import re
import time
from typing import TYPE_CHECKING

import pytest

from tests.web.conftest import (
    ONECYCLE,
    SHOTS,
    TOKEN_NAMES,
    TOKENS,
    create_run,
    new_id,
    post_metrics,
    serve_steps,
)
from tests.web.live import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser


def expect(target: object) -> object:  # imported lazily: playwright is a test extra
    from playwright.sync_api import expect as _expect

    return _expect(target)  # type: ignore[arg-type]


def polyline_points(page: Page, selector: str) -> int:
    """Points drawn by the polylines matching ``selector``."""
    counts: list[int] = page.eval_on_selector_all(
        selector, "els => els.map(e => e.getAttribute('points').trim().split(/\\s+/).length)"
    )
    return sum(counts)


def screenshot(page: Page, name: str) -> None:
    """A screenshot of an intermediate state (the fixture takes one at the end of every test)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_run(page: Page, server: LiveServer, run_id: str) -> None:
    page.goto(f"{server.url}/#/runs/{run_id}")
    page.wait_for_selector("svg.lr-chart polyline.series")


def test_runs_list_shows_runs_filters_by_label_and_refreshes_live(page: Page, live_server: LiveServer) -> None:
    team = new_id("team")
    a, b = new_id("list-a"), new_id("list-b")
    with live_server.client() as http:
        create_run(http, a, team=team, model="resnet")
        create_run(http, b, team=team, model="vit")
        serve_steps(http, a, 10)
        post_metrics(http, a, [(5, 0.75)])
    page.goto(f"{live_server.url}/#/?label=team:{team}")
    row_a = page.locator(f"tr[data-run='{a}']")
    expect(row_a).to_contain_text("CosineAnnealingLR")
    expect(row_a).to_contain_text("backbone")
    expect(row_a).to_contain_text("val_loss = 0.75")
    expect(row_a.locator("td").nth(3)).to_contain_text("9")  # horizon
    expect(page.locator("tr[data-run]")).to_have_count(2)

    page.fill("#label-filter", f"team:{team} model:vit")
    page.press("#label-filter", "Enter")
    expect(page.locator("tr[data-run]")).to_have_count(1)
    expect(page.locator(f"tr[data-run='{b}']")).to_be_visible()

    # live refresh: a run created meanwhile shows up without reloading the page
    c = new_id("list-c")
    with live_server.client() as http:
        create_run(http, c, team=team, model="vit")
    expect(page.locator(f"tr[data-run='{c}']")).to_be_visible()
    page.click(f"tr[data-run='{c}'] a")
    expect(page.locator("h1")).to_contain_text(c)


def test_run_page_draws_served_and_planned_curve_markers_metrics(page: Page, live_server: LiveServer) -> None:
    run_id = new_id("curve")
    with live_server.client() as http:
        create_run(http, run_id, team="web")
        serve_steps(http, run_id, 100)
        post_metrics(http, run_id, [(10, 1.0), (20, 1.1), (30, 1.2), (40, 1.3)])  # patience 1: reductions
        change = {"op": "scale", "factor": 0.5, "from_step": 200, "reason": "too hot"}
        assert http.post(f"/v1/runs/{run_id}/changes", json=change).status_code == 200
    open_run(page, live_server, run_id)

    assert polyline_points(page, "svg.lr-chart polyline.past") > 50
    assert polyline_points(page, "svg.lr-chart polyline.future") > 50
    expect(page.locator("svg.lr-chart polyline.past")).to_have_count(2)  # one per group
    expect(page.locator("svg.lr-chart .marker-reduction").first).to_be_attached()
    expect(page.locator("svg.lr-chart .marker-change")).to_have_count(1)
    expect(page.locator("svg.lr-chart .horizon")).to_have_count(1)

    page.locator("svg.lr-chart .marker-change rect").hover()
    tip = page.locator("#tooltip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("scale x0.5")
    expect(tip).to_contain_text("reason: too hot")
    expect(tip).to_contain_text("by: anonymous")

    # the plateau metric is plotted under the curve
    expect(page.locator("#metric-select")).to_have_value("val_loss")
    assert polyline_points(page, "svg.metric-chart polyline.series") == 4
    # linear y redraws
    page.uncheck("#log-y")
    expect(page.locator("svg.lr-chart polyline.past")).to_have_count(2)
    # the events table lists the change and the reductions, newest first
    events = page.locator("#events tbody tr")
    expect(events.first).to_contain_text("scale ×0.5 from step 200")
    expect(page.locator("#events tbody tr[data-kind='reduction']").first).to_be_visible()


def test_change_with_preview_then_apply_shows_in_events(page: Page, live_server: LiveServer) -> None:
    run_id = new_id("change")
    with live_server.client() as http:
        create_run(http, run_id)
        serve_steps(http, run_id, 50)
    open_run(page, live_server, run_id)
    expect(page.locator("#apply-change")).to_be_disabled()
    page.select_option("#change-op", "scale")
    page.fill("#change-factor", "0.25")
    page.fill("#change-reason", "from the browser")
    page.click("#preview-change")
    expect(page.locator("#change-status")).to_contain_text("takes effect from step 50")
    assert polyline_points(page, "svg.lr-chart polyline.proposed") > 10
    screenshot(page, "test_change_with_preview_then_apply_shows_in_events-preview")
    with live_server.client() as http:
        assert http.get(f"/v1/runs/{run_id}").json()["revision"] == 0  # a preview records nothing

    page.click("#apply-change")
    expect(page.locator("#change-status")).to_contain_text("Applied: revision 1, from step 50")
    row = page.locator("#events tbody tr[data-kind='change']")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("from the browser")
    expect(row).to_contain_text("scale ×0.25 from step 50")
    expect(page.locator("svg.lr-chart .marker-change")).to_have_count(1)
    expect(page.locator("svg.lr-chart polyline.proposed")).to_have_count(0)
    with live_server.client() as http:
        run = http.get(f"/v1/runs/{run_id}").json()
    assert run["revision"] == 1
    assert run["scale"] == [0.25, 0.25]


def test_change_form_shows_server_errors_next_to_fields(page: Page, live_server: LiveServer) -> None:
    run_id = new_id("errors")
    with live_server.client() as http:
        create_run(http, run_id)
        serve_steps(http, run_id, 30)
    open_run(page, live_server, run_id)

    page.fill("#change-factor", "-2")
    page.click("#preview-change")
    expect(page.locator("#error-factor")).to_contain_text("greater than 0")
    expect(page.locator("#change-factor")).to_have_class(re.compile("invalid"))

    page.fill("#change-factor", "0.5")
    page.fill("#change-from_step", "10")
    page.click("#preview-change")
    expect(page.locator("#error-from_step")).to_contain_text("horizon 29")
    expect(page.locator("#change-status")).to_contain_text("served steps up to 29")
    expect(page.locator("#error-factor")).to_have_text("")

    page.fill("#change-from_step", "")
    page.select_option("#change-op", "replace")
    page.fill("#change-schedule", "type: StepLR\nstep_size: 0")  # YAML, parsed by the server
    page.click("#preview-change")
    expect(page.locator("#error-schedule")).to_contain_text("schedule.step_size")

    page.select_option("#change-op", "set")
    page.fill("#change-lr", "0.1, 0.2, 0.3")  # three values for two groups
    page.click("#preview-change")
    expect(page.locator("#error-lr")).to_contain_text("2 values")
    expect(page.locator("#apply-change")).to_be_disabled()


def test_momentum_and_a_million_steps_drawn_from_a_few_thousand_points(page: Page, live_server: LiveServer) -> None:
    run_id = new_id("big")
    spec = {**ONECYCLE, "schedule": {**ONECYCLE["schedule"], "total_steps": 1_000_000}}
    with live_server.client() as http:
        create_run(http, run_id, spec)
        serve_steps(http, run_id, 100_000)
    began = time.perf_counter()
    open_run(page, live_server, run_id)
    elapsed = time.perf_counter() - began
    drawn = polyline_points(page, "svg.lr-chart polyline.series")
    assert 1_000 < drawn < 6_000, drawn  # two points per pixel column, not a million
    expect(page.locator("svg.momentum-chart polyline.series").first).to_be_attached()
    expect(page.locator("#charts")).to_contain_text("250,000 steps evaluated (stride 4)")
    assert elapsed < 10, elapsed

    # drag to zoom: a narrower range is fetched and drawn
    box = page.locator("svg.lr-chart").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 100, y)
    page.mouse.down()
    page.mouse.move(box["x"] + 300, y, steps=5)
    page.mouse.up()
    expect(page.locator("#range-stop")).not_to_have_value("1000000")


def _range_test_losses(num_steps: int) -> list[tuple[int, float]]:
    """A loss that falls between 1e-5 and 1e-2 and blows up past 0.05 (start 1e-6, end 1, exponential)."""
    out = []
    for step in range(num_steps):
        lr = 1e-6 * 1e6 ** (step / (num_steps - 1))
        out.append((step, 2.3 - 1.5 / (1 + math.exp(-(math.log10(lr) + 3.5) * 2)) + (0 if lr < 0.05 else lr * 30)))
    return out


RANGE_TEST = {
    "param_groups": [{"name": "all"}],
    "schedule": {"type": "LRRangeTest", "start_lr": 1e-6, "end_lr": 1.0, "num_steps": 100},
}


def test_range_test_shows_loss_vs_lr_suggestions_and_creates_the_follow_up(page: Page, live_server: LiveServer) -> None:
    run_id = new_id("range")
    with live_server.client() as http:
        create_run(http, run_id, RANGE_TEST)
        serve_steps(http, run_id, 100)
        post_metrics(http, run_id, _range_test_losses(100), name="loss")
    open_run(page, live_server, run_id)
    expect(page.locator("svg.range-chart polyline.series")).to_have_count(2)  # loss and smoothed
    expect(page.locator("svg.range-chart .vline")).to_have_count(4)  # three rules and the CLR lower bound
    expect(page.locator("#range-status")).to_contain_text("diverged at step")
    expect(page.locator("#picks li[data-rule='valley']")).to_contain_text("fastai")
    expect(page.locator("#clr-bounds")).to_contain_text("lower = upper / 6")
    page.locator("svg.range-chart .vline rect, svg.range-chart .vline line").first.hover(force=True)

    # CyclicLR needs a half cycle: the server's error is shown, then the one-cycle follow-up is created
    page.fill("#followup-id", f"{run_id}-train")
    page.click("#followup")
    expect(page.locator("#followup-status")).to_contain_text("step_size_up")
    expect(page.locator("#followup-policy")).to_have_class(re.compile("invalid"))
    page.select_option("#followup-policy", "one_cycle")
    page.fill("#followup-total_steps", "5000")
    page.click("#followup")
    expect(page.locator("#followup-status")).to_contain_text("OneCycleLR")
    with live_server.client() as http:
        follow = http.get(f"/v1/runs/{run_id}-train").json()
    assert follow["labels"]["derived_from"] == run_id
    assert follow["total_steps"] == 5000
    screenshot(page, "test_range_test_shows_loss_vs_lr_suggestions_and_creates_the_follow_up-suggestions")
    page.click("#followup-status a")
    expect(page.locator("h1")).to_contain_text(f"{run_id}-train")


def test_range_test_before_its_first_loss_says_so(page: Page, live_server: LiveServer) -> None:
    run_id = new_id("range-empty")
    with live_server.client() as http:
        create_run(http, run_id, RANGE_TEST)
    open_run(page, live_server, run_id)
    expect(page.locator("#range-chart-box")).to_contain_text("No loss posted yet")
    expect(page.locator("#suggestion-placeholder")).to_contain_text("No suggestion yet")


def test_spec_playground_shows_errors_with_paths_then_the_curve(page: Page, live_server: LiveServer) -> None:
    page.goto(f"{live_server.url}/#/playground")
    expect(page.locator("#spec-ok")).to_contain_text("OneCycleLR")  # the example spec
    page.fill("#spec-text", "param_groups: [{name: a, lr: 0.1}]\nschedule: {type: StepLR, step_size: -3}\n")
    page.click("#spec-draw")
    expect(page.locator("#spec-error")).to_be_visible()
    expect(page.locator("#spec-result")).to_contain_text("schedule.step_size")
    page.fill(
        "#spec-text", '{"param_groups": [{"name": "a", "lr": 0.1}], "schedule": {"type": "StepLR", "step_size": 30}}'
    )
    page.fill("#spec-steps", "120")
    page.click("#spec-draw")
    expect(page.locator("#spec-ok")).to_contain_text("StepLR, 1 group(s), steps 0..119")
    assert polyline_points(page, "#spec-chart svg.lr-chart polyline.series") == 120
    page.fill("#spec-text", "schedule: {type: StepLR, step_size: 10\n")  # a YAML syntax error
    page.click("#spec-draw")
    expect(page.locator("#spec-result")).to_contain_text("line")


def test_tokens_read_only_cannot_write_admin_can(page: Page, token_server: LiveServer) -> None:
    run_id = new_id("tok")
    with token_server.client(TOKENS["train"]) as http:
        create_run(http, run_id)
        serve_steps(http, run_id, 20)
    page.goto(f"{token_server.url}/#/")
    expect(page.locator("#whoami")).to_contain_text("needs a token")
    expect(page.locator("#runs-table")).to_contain_text("requires a valid token")

    page.fill("#token-input", TOKENS["read"])
    page.click("#token-form button[type=submit]")
    expect(page.locator("#whoami")).to_contain_text(f"{TOKEN_NAMES['read']}: read")
    expect(page.locator(f"tr[data-run='{run_id}']")).to_be_visible()
    page.click(f"tr[data-run='{run_id}'] a")
    page.wait_for_selector("svg.lr-chart polyline.series")
    expect(page.locator("#preview-change")).to_be_disabled()
    expect(page.locator("#delete-run")).to_be_disabled()
    expect(page.locator("#change-status")).to_contain_text("admin scope")
    screenshot(page, "test_tokens_read_only_cannot_write_admin_can-read-only")

    page.fill("#token-input", TOKENS["admin"])
    page.click("#token-form button[type=submit]")
    expect(page.locator("#whoami")).to_contain_text(f"{TOKEN_NAMES['admin']}: admin")
    assert page.evaluate("localStorage.getItem('lrserve.token')") == TOKENS["admin"]
    page.fill("#change-factor", "0.5")
    page.click("#preview-change")
    page.click("#apply-change")
    row = page.locator("#events tbody tr[data-kind='change']")
    expect(row).to_contain_text(TOKEN_NAMES["admin"])  # the actor is the token's name

    page.fill("#token-input", "wrong")
    page.click("#token-form button[type=submit]")
    expect(page.locator("#whoami")).to_contain_text("token refused")


def test_delete_from_the_run_page(page: Page, live_server: LiveServer) -> None:
    run_id = new_id("gone")
    with live_server.client() as http:
        create_run(http, run_id)
    open_run(page, live_server, run_id)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#delete-run")
    expect(page.locator("h1")).to_have_text("Runs")
    with live_server.client() as http:
        assert http.get(f"/v1/runs/{run_id}").status_code == 404
