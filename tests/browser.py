"""Headless Chromium for tests: Debian's chromium and chromedriver, driven by Selenium.

Nothing is downloaded: the browser and its driver are the system's
(``make test`` apt-installs the Debian packages ``chromium`` and
``chromium-driver`` when they are missing), Selenium is the pinned package of
the ``test`` extra, and Selenium Manager is kept offline.

Run as a script it saves a screenshot of a page at a step:
``python tests/browser.py PAGE.html STEP OUT.png`` (what ``make screenshot`` does).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import sys
import zlib
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def skip_reason() -> str | None:
    """Why a browser test cannot run here (``None``: it can)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"no {path} (Debian package {package}; `make test` installs it as root)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the test extra: pip install -e '.[test]')"
    return None


@contextlib.contextmanager
def chromium(width: int = 1500, height: int = 1100):
    """A headless Chromium WebDriver session, quit on leaving."""
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) pixels of an 8-bit, non-interlaced PNG (as Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and colour in (2, 6) and not interlace, (depth, colour, interlace)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def ink(data: bytes, step: int = 7) -> tuple[float, int]:
    """How much of a screenshot is not its background: (fraction of sampled pixels, distinct colours)."""
    width, height, rows = png_pixels(data)
    bpp = len(rows[0]) // width
    samples = [rows[y][x * bpp:x * bpp + 3] for y in range(0, height, step) for x in range(0, width, step)]
    background = max(set(samples), key=samples.count)
    return sum(s != background for s in samples) / len(samples), len(set(samples))


def screenshot(page: Path, step: int, out: Path) -> None:
    """Save a screenshot of ``page`` at ``step``."""
    with chromium() as d:
        d.get(page.resolve().as_uri() + f"#step={step}")
        out.write_bytes(d.get_screenshot_as_png())


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python tests/browser.py PAGE.html STEP OUT.png")
    why = skip_reason()
    if why:
        sys.exit(f"browser.py: {why}")
    screenshot(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
