"""OHIF behind AUTH_MODE=required logs in through the identity provider (oidc-provider
8.8.1's login and consent pages, authorization code + PKCE, VIEWER_OIDC_CLIENT_ID), lists
the studies and draws a CT and a radiograph, with zero failed requests and no token in
the gateway's log. Same cohort, build and browser as test_ohif.py."""
from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Study

if importlib.util.find_spec("playwright") is None:
    if os.environ.get("CI"):
        raise ImportError("playwright is required in CI (requirements.txt)")
    pytest.skip("Playwright for Python is not installed", allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402

from tests.e2e import ohif_page as ui  # noqa: E402
from tests.support.oidc_idp import DEFAULT_AUDIENCE, start_oidc  # noqa: E402
from tests.support.procs import start_gateway  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def secured(tmp_path_factory, e2e_data_dir: Path, artifacts_dir: Path) -> Iterator[tuple]:
    idp = start_oidc(artifacts_dir / "logs")
    data = tmp_path_factory.mktemp("e2e-secured") / "data"
    shutil.copytree(e2e_data_dir, data)
    env = {"GATEWAY_AUTH_MODE": "required", "GATEWAY_AUTH_ISSUER": idp.issuer,
           "GATEWAY_AUTH_AUDIENCE": DEFAULT_AUDIENCE,
           "GATEWAY_CORS_ORIGINS": "http://viewer.invalid",  # same origin: no CORS needed
           "GATEWAY_VIEWER_OIDC_CLIENT_ID": "viewer", "GATEWAY_LOG_LEVEL": "INFO"}
    server = start_gateway(data, artifacts_dir / "logs", env=env)
    # The viewer's callback is known now; the issuer URL and keys stay the same.
    idp.point_at(redirect_uris=[server.url + "/viewer/callback",
                                server.url + "/viewer/silent-refresh.html"])
    try:
        yield server, idp
    finally:
        server.stop()
        idp.close()


@pytest.fixture
def page(browser_context) -> Iterator[Page]:
    page = browser_context.new_page()
    page.add_init_script(ui.PROBE_JS)
    page.watch = ui.Watch().attach(page)
    yield page
    page.close()


def _login(page: Page, base_url: str) -> None:
    page.goto(base_url + "/viewer/")
    page.locator("input[name=login]").fill("radiologist")
    page.locator("input[name=password]").fill("any")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(base_url + "/viewer/**", timeout=60_000)


def test_viewer_logs_in_lists_and_draws_behind_required(page: Page, secured, e2e_studies,
                                                        shots) -> None:
    server, _idp = secured
    _login(page, server.url)
    # What the provider's own development pages asked for (web fonts on the closed network)
    # is not the viewer's: count from the moment the viewer has the token.
    # The redirects of the login navigate away from /viewer/ while it still loads its lazy
    # bundles: the browser aborts those (net::ERR_ABORTED, no answer was refused). Every
    # answer the gateway gave must still be a success.
    ours = [f for f in page.watch.failed if f.split(" ", 2)[1].startswith(server.url)
            and not f.endswith("net::ERR_ABORTED")]
    assert not ours, f"the gateway failed requests during the login: {ours}"
    page.watch.failed.clear()
    page.watch.console_errors.clear()
    for pid in sorted({s.patient_id for s in e2e_studies}):
        expect(ui.study_rows(page, pid).first).to_be_visible(timeout=60_000)
    notice = page.get_by_role("button", name="Confirm and hide")
    if notice.is_visible():
        notice.click()
    page.screenshot(path=shots / "login-study-list.png")
    for want in ({"modality": "CR"}, {"modality": "CT"}):  # CT last: no navigation cuts its frames
        study = next(s for s in e2e_studies
                     if all(getattr(s, k) == v for k, v in want.items()))
        ui.skip_tour(page)
        ui.launch_basic_viewer(page, study.accession)
        ui.skip_tour(page)
        ui.wait_first_image(page, 90_000)
        ui.assert_real_images(ui.canvas_stats(page), f"{want} behind login")
        page.screenshot(path=shots / f"login-{want['modality']}.png")
        if want["modality"] != "CT":
            page.goto(server.url + "/viewer/")  # the signed-in user is kept by the tab
            expect(ui.study_rows(page, study.accession).first).to_be_visible(timeout=60_000)
            ui.skip_tour(page)
    # Going back to the list navigates away while the viewer may still load a lazy bundle:
    # the browser aborts that static file (no answer was refused; CI of stop 18 saw one).
    page.watch.failed[:] = [f for f in page.watch.failed if not _aborted_bundle(f)]
    page.watch.assert_clean()  # no failed request, no HTTP error (401/403 included)
    log = server.proc.log.read_text()
    assert "Bearer ey" not in log and "access_token=ey" not in log


def _aborted_bundle(failure: str) -> bool:
    """A static file of the viewer the browser gave up on (net::ERR_ABORTED): not an answer."""
    url = failure.split(" ", 2)[1].rstrip(":").split("?")[0]
    return (failure.endswith("net::ERR_ABORTED") and "/viewer/" in url
            and url.endswith((".js", ".css", ".wasm", ".map")))
