"""Fuzz the image decoders with a few thousand damaged files of every format the tool reads.

    python bench/fuzz_decode.py                      # 500 per format, seed 0
    python bench/fuzz_decode.py --per-format 2000 --seed 3 --max-pixels 178956970

Each format (JPEG, PNG, GIF, BMP, TIFF, WEBP, PPM) starts from a few valid files and is
damaged (truncated, bytes flipped, header bytes flipped, declared sizes edited to zero,
huge or 1,000,000 x 1, chunks repeated or cut, zero-length, garbage behind the magic);
cache records (the cache's own JPEGs) are damaged too. Every file goes through
``load_rgb`` and the cache's ``prepare``, every record through ``decode_record``. A file
may decode or be skipped as unreadable; any other exception escaping is a bug: they are
printed and the exit status is 1. The corpus is ``tests/data/fuzzgen.py``'s, which the
fast test (``tests/data/test_fuzz_decode.py``) runs with a few hundred files.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import print_table  # noqa: E402
from fuzzgen import corpus, damaged_records, decode_all  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-format", type=int, default=500, help="damaged files per format")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-pixels", type=int, default=178_956_970,
                        help="the pixel limit (the tool's default); declared sizes under it "
                        "are decoded for real, so peak memory grows with it")
    args = parser.parse_args()
    samples = itertools.chain(corpus(args.seed, args.per_format),
                              damaged_records(args.seed, args.per_format))
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow and libtiff warn about the damage: expected
        tallies, escapes = decode_all(samples, folder, args.max_pixels)
    rows = [[fmt, t.files, t.decoded, t.skipped, t.escaped, t.seconds]
            for fmt, t in tallies.items()]
    rows.append(["all", *(sum(r[i] for r in rows) for i in range(1, 6))])
    print_table(f"decoder fuzz: seed {args.seed}, pixel limit {args.max_pixels:,}",
                ["format", "files", "decoded ok", "skipped", "exceptions escaped", "seconds"],
                rows)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory {peak_mb:,.0f} MB")
    for line in escapes:
        print(f"ESCAPED {line}")
    return 1 if escapes else 0


if __name__ == "__main__":
    sys.exit(main())
