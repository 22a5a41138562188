"""Screenshots of the comparison viewer in headless Chromium, at zoom 1x and 4x.

    python bin/viewer_screenshots.py [PHOTO] [--out docs]

Runs `vqcodec compare` on PHOTO (default: samples/bsds-val-1.png), opens the page in Debian's
Chromium through Selenium (apt-get install chromium chromium-driver; pip install selenium),
moves the split and writes viewer-1x.png and viewer-4x.png into --out.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import chromium, drag_split  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", nargs="?", default=str(ROOT / "samples" / "bsds-val-1.png"))
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--width", type=int, default=1100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "vqcodec", "compare", args.photo, "--out", tmp]
        subprocess.run(cmd, check=True)
        html = next(Path(tmp).glob("*.html"))
        with chromium(args.width, 900) as driver:
            driver.get(html.as_uri())
            drag_split(driver, 0.55)
            driver.save_screenshot(str(Path(args.out) / "viewer-1x.png"))
            driver.find_element("css selector", 'button[data-zoom="4"]').click()
            driver.save_screenshot(str(Path(args.out) / "viewer-4x.png"))
    print(f"wrote {args.out}/viewer-1x.png, {args.out}/viewer-4x.png")


if __name__ == "__main__":
    main()
