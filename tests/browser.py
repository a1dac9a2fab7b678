"""Debian's headless Chromium driven by Playwright, for the web console's tests.

Never a downloaded browser: `make test` installs /usr/bin/chromium (ops/setup.sh)."""

import contextlib
from pathlib import Path

from playwright.async_api import Page, async_playwright, expect

from tests.servers import PASSWORD

CHROMIUM = "/usr/bin/chromium"
# Flags for a closed network: no background fetches to Google at start-up.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
VIEWPORT = {"width": 1280, "height": 800}

# Counts the tones the page starts, so a test can tell that an SOS was sounded, not only shown.
COUNT_TONES = """
  window.tonesStarted = 0;
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...args) { window.tonesStarted += 1; return start.apply(this, args); };
"""


@contextlib.asynccontextmanager
async def chromium_page(*, autoplay: bool = True):
    """A fresh page of a fresh headless browser, at the desk's usual size. Without `autoplay`, audio
    waits for a click or key press on the page, as in a dispatcher's browser."""
    assert Path(CHROMIUM).exists(), "make test installs Debian's chromium (ops/setup.sh)"
    args = CHROMIUM_ARGS if autoplay else [arg for arg in CHROMIUM_ARGS if not arg.startswith("--autoplay-policy")]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            page = await browser.new_page(viewport=VIEWPORT)
            await page.add_init_script(COUNT_TONES)
            yield page
        finally:
            await browser.close()


async def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Fills the login form and waits until the desk's socket is online."""
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "online", timeout=5000)


async def box(page: Page, selector: str) -> dict:
    """The element's box on screen (x, y, width, height in CSS pixels)."""
    found = await page.locator(selector).first.bounding_box()
    assert found is not None, f"{selector} is not rendered"
    return found


def inside(inner: dict, outer: dict, slack_px: float = 1.0) -> bool:
    return (inner["x"] >= outer["x"] - slack_px and inner["y"] >= outer["y"] - slack_px
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + slack_px
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + slack_px)
