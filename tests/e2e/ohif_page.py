"""Driving OHIF 3.13 like a user: the study list, "Basic Viewer", the viewport canvases.

Everything waits for a condition (an element, a request, a pixel), never for a time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from playwright.sync_api import Page, Request, Response, expect

# Installed before any page script: scans the viewport canvases on every animation frame
# once armed, and stamps performance.now() when one first holds an image.
PROBE_JS = """
(() => {
  const probe = window.__tciaProbe = {armedAt: null, firstImageAt: null};
  try { performance.setResourceTimingBufferSize(10000); } catch (e) {}
  let sample = null;
  function drawn(canvas) {
    if (!canvas.width || !canvas.height) return false;
    sample = sample || Object.assign(document.createElement('canvas'), {width: 64, height: 64});
    const ctx = sample.getContext('2d', {willReadFrequently: true});
    ctx.clearRect(0, 0, 64, 64);
    ctx.drawImage(canvas, 0, 0, 64, 64);
    const d = ctx.getImageData(0, 0, 64, 64).data;
    const levels = new Set();
    let lit = 0;
    for (let i = 0; i < d.length; i += 4) {
      const g = (d[i] + d[i + 1] + d[i + 2]) / 3 | 0;
      levels.add(g);
      if (g > 16) lit++;
    }
    return levels.size >= 8 && lit > 64 * 64 * 0.02;
  }
  function tick() {
    if (probe.armedAt !== null && probe.firstImageAt === null) {
      for (const c of document.querySelectorAll('canvas.cornerstone-canvas')) {
        if (drawn(c)) { probe.firstImageAt = performance.now(); break; }
      }
    }
    requestAnimationFrame(tick);
  }
  requestAnimationFrame(tick);
})();
"""

ARM_JS = """() => { const p = window.__tciaProbe; p.firstImageAt = null;
                   p.armedAt = performance.now(); return p.armedAt; }"""

# Each visible viewport canvas, downsampled to 256 x 256 grey levels: what a user sees.
CANVAS_STATS_JS = """
() => Array.from(document.querySelectorAll('canvas.cornerstone-canvas'))
  .filter(c => c.offsetParent !== null && c.width > 0 && c.height > 0)
  .map(c => {
    const s = Object.assign(document.createElement('canvas'), {width: 256, height: 256});
    const ctx = s.getContext('2d', {willReadFrequently: true});
    ctx.drawImage(c, 0, 0, 256, 256);
    const d = ctx.getImageData(0, 0, 256, 256).data;
    let n = 0, sum = 0, sq = 0, lit = 0;
    const levels = new Set();
    for (let i = 0; i < d.length; i += 4) {
      const g = (d[i] + d[i + 1] + d[i + 2]) / 3 | 0;
      n++; sum += g; sq += g * g; levels.add(g); if (g > 16) lit++;
    }
    const mean = sum / n;
    return {width: c.width, height: c.height, mean: mean,
            std: Math.sqrt(Math.max(sq / n - mean * mean, 0)), levels: levels.size, lit: lit / n,
            ...chestRegions(d, 256)};
  })
"""

# Inside the lit bounding box (the body on a chest film): the mean grey of the central
# strip (spine, mediastinum) and of the two lateral strips (lung fields). A radiograph
# shown with the wrong polarity (MONOCHROME1 ignored) has dark centre, bright sides.
CHEST_REGIONS_JS = """
function chestRegions(d, size) {
  const grey = (x, y) => { const i = (y * size + x) * 4; return (d[i] + d[i + 1] + d[i + 2]) / 3; };
  let x0 = size, x1 = -1, y0 = size, y1 = -1;
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
    if (grey(x, y) > 16) {
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
  }
  if (x1 < x0) return {centre: 0, sides: 0};
  const w = x1 - x0 + 1, h = y1 - y0 + 1;
  const mean = (fx0, fx1, fy0, fy1) => {
    let s = 0, n = 0;
    for (let y = y0 + (fy0 * h | 0); y < y0 + (fy1 * h | 0); y++)
      for (let x = x0 + (fx0 * w | 0); x < x0 + (fx1 * w | 0); x++) { s += grey(x, y); n++; }
    return n ? s / n : 0;
  };
  return {centre: mean(0.47, 0.53, 0.3, 0.7),
          sides: (mean(0.25, 0.35, 0.3, 0.6) + mean(0.65, 0.75, 0.3, 0.6)) / 2};
}
"""

FRAMES_LOADED_JS = """
(series) => performance.getEntriesByType('resource')
  .filter(e => e.name.includes('/series/' + series + '/') && e.name.includes('/frames/'))
  .map(e => e.responseEnd)
"""


@dataclass
class Watch:
    """Every failed request, HTTP error and console error a page produced."""

    failed: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    timers: dict[str, float] = field(default_factory=dict)
    frames: dict[str, Response] = field(default_factory=dict)

    def attach(self, page: Page) -> "Watch":
        page.on("requestfailed", self._failed)
        page.on("response", self._response)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.console_errors.append(f"pageerror: {exc}"))
        return self

    def _failed(self, request: Request) -> None:
        self.failed.append(f"{request.method} {request.url}: {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.request.method} {response.url}: HTTP {response.status}")
        if "/frames/" in response.url:
            self.frames[response.url] = response

    def _console(self, message) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)
        match = re.match(r"(\w+): ([\d.]+) ms", message.text)
        if message.type == "timeEnd" and match:     # OHIF's own console.time() marks
            self.timers[match.group(1)] = float(match.group(2))

    def frame_part_types(self) -> set[str]:
        """Content-Type of the first part of every frame response the browser received."""
        types = set()
        for response in self.frames.values():
            head = response.body()[:512].split(b"\r\n\r\n", 1)[0].decode("latin-1")
            types.update(line.split(":", 1)[1].strip() for line in head.split("\r\n")
                         if line.lower().startswith("content-type:"))
        return types

    def assert_clean(self) -> None:
        assert not self.failed, "failed network requests:\n" + "\n".join(self.failed)
        assert not self.console_errors, "console errors:\n" + "\n".join(self.console_errors)


def open_study_list(page: Page, base_url: str, patient_ids: list[str]) -> None:
    """Load /viewer/, wait until every patient is listed, confirm OHIF's notice."""
    page.goto(base_url + "/viewer/")
    for pid in patient_ids:
        expect(study_rows(page, pid).first).to_be_visible(timeout=60_000)
    notice = page.get_by_role("button", name="Confirm and hide")
    if notice.is_visible():
        notice.click()


def study_rows(page: Page, text: str):
    return page.locator("tbody tr", has_text=text)


def column_filter(page: Page, header: str):
    """The filter input under the study list column titled ``header``."""
    titles = [t.strip() for t in page.locator("thead th").all_inner_texts()]
    assert header in titles, f"study list has no {header!r} column: {titles}"
    filter_row = page.locator("tbody tr", has=page.locator("input")).first
    return filter_row.locator("td").nth(titles.index(header)).locator("input")


def launch_basic_viewer(page: Page, accession: str) -> float:
    """Select the study row, press "Basic Viewer"; return performance.now() at the press."""
    study_rows(page, accession).first.click()
    button = page.get_by_role("button", name="Basic Viewer")
    expect(button).to_be_enabled()
    armed = page.evaluate(ARM_JS)
    button.click()
    return armed


def wait_first_image(page: Page, timeout_ms: float = 60_000) -> float:
    """performance.now() when a viewport canvas first held an image."""
    page.wait_for_function("() => window.__tciaProbe.firstImageAt !== null", timeout=timeout_ms)
    return page.evaluate("() => window.__tciaProbe.firstImageAt")


def wait_all_frames(page: Page, series_uid: str, count: int, timeout_ms: float = 120_000) -> float:
    """performance.now() when the last of ``count`` frames of the series had arrived."""
    page.wait_for_function(f"(s) => ({FRAMES_LOADED_JS})(s).length >= {count}", arg=series_uid,
                           timeout=timeout_ms)
    return max(page.evaluate(FRAMES_LOADED_JS, series_uid))


def skip_tour(page: Page) -> None:
    """OHIF's first-visit tour pops over the viewport; a user would skip it."""
    skip = page.get_by_role("button", name="Skip all")
    if skip.is_visible():
        skip.click()


def canvas_stats(page: Page) -> list[dict]:
    return page.evaluate(f"(() => {{ {CHEST_REGIONS_JS}; return ({CANVAS_STATS_JS})(); }})()")


def assert_real_images(stats: list[dict], what: str) -> None:
    """Each viewport shows an image: lit, varied, many grey levels (not a blank or flat fill)."""
    assert stats, f"{what}: no viewport canvas on the page"
    for i, s in enumerate(stats):
        assert s["lit"] > 0.05 and s["std"] > 10 and s["levels"] >= 32, \
            f"{what}: viewport {i} does not hold a real image: {s}"
