"""Browser tests: headless Chromium driven by Playwright, never a downloaded browser.

Chromium comes from the system (``apt-get install chromium``; ``PRIVGUARD_CHROMIUM``
names another binary) and Playwright from PyPI. Never run ``playwright install``. When
either is missing the browser tests are skipped with the reason, except where
``CI=true``: there they fail, so a CI machine cannot pass without running them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium_path() -> str | None:
    wanted = os.environ.get("PRIVGUARD_CHROMIUM", "/usr/bin/chromium")
    if os.path.isfile(wanted) and os.access(wanted, os.X_OK):
        return wanted
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (.venv/bin/pip install playwright)"
    if _chromium_path() is None:
        return "Chromium is not installed (apt-get install -y chromium)"
    return None


def _unavailable(reason: str) -> None:
    message = f"browser tests need Chromium and Playwright: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


#: Chromium's own Global Privacy Control (Chromium 13x+): ``navigator.globalPrivacyControl``
#: is true and every request, beacons from an unloading page included, says ``Sec-GPC: 1``.
GPC_ARGS = ["--enable-features=GlobalPrivacyControl,GlobalPrivacyControlForce"]


# Module scope, not session: Playwright's sync API keeps an event loop running in this
# thread while it lives, and the asyncio tests that run after these need it gone.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    reason = _missing()
    if reason is not None:
        _unavailable(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    """One headless Chromium per module (launching costs about a second)."""
    chromium = playwright.chromium.launch(executable_path=_chromium_path(), args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="module")
def gpc_browser(playwright: Any) -> Iterator[Any]:
    """A headless Chromium with Global Privacy Control turned on, as a person would."""
    chromium = playwright.chromium.launch(
        executable_path=_chromium_path(), args=[*CHROMIUM_ARGS, *GPC_ARGS]
    )
    try:
        yield chromium
    finally:
        chromium.close()
