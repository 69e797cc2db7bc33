"""Remake the README's picture of report.html, as headless Chromium renders it.

    python docs/screenshot.py OUT/report.html docs/report.png [--width 1280] [--height 900]
    python docs/screenshot.py OUT/report.html docs/report-full.png --full-page

The picture is the report's first screen (title and Findings) unless --full-page.
A browser is needed: Debian's chromium, or $CONDPRETRAIN_BROWSER.
"""

from __future__ import annotations

import argparse
import sys

from condpretrain.errors import CondPretrainError
from condpretrain.report.browser import MAX_CAPTURE_HEIGHT, screenshot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("report", help="the report.html to picture")
    parser.add_argument("png", help="where to write the PNG, e.g. docs/report.png")
    parser.add_argument("--width", type=int, default=1280, help="window width in pixels")
    parser.add_argument("--height", type=int, default=900, help="window height in pixels")
    parser.add_argument("--full-page", action="store_true",
                        help=f"the whole page (at most {MAX_CAPTURE_HEIGHT} pixels tall)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for the browser")
    args = parser.parse_args(argv)
    if args.width <= 0 or args.height <= 0:
        parser.error("--width and --height must be positive")
    try:
        written = screenshot(args.report, args.png, width=args.width, height=args.height,
                             full_page=args.full_page, timeout=args.timeout)
    except CondPretrainError as exc:
        print(f"screenshot: error: {exc}", file=sys.stderr)
        return 2
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
