"""A fast fuzz pass over the decoders (the few-thousand-file one is bench/fuzz_decode.py):
damaged files of every format the tool reads, and damaged cache records, may be decoded
or skipped as unreadable, never raise anything else."""

from __future__ import annotations

import itertools
import warnings

from fuzzgen import FORMATS, corpus, damaged_records, decode_all


def test_no_exception_but_unreadable_escapes_the_decoders(tmp_path):
    samples = itertools.chain(corpus(seed=0, per_format=40), damaged_records(seed=0, count=60))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # libtiff and Pillow warn about the damage: expected
        tallies, escapes = decode_all(samples, str(tmp_path), max_pixels=4_000_000)
    assert escapes == []
    assert set(tallies) == {*FORMATS, "record"}
    for fmt, tally in tallies.items():
        assert tally.files >= 40 and tally.decoded > 0 and tally.skipped > 0, (fmt, tally)
        assert tally.decoded + tally.skipped == tally.files
