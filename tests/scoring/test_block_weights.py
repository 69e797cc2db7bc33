"""--block-weights on the classic descriptor, end to end: a target whose classes differ in
form but share one colour scheme finds the pool's same forms in other colours once the
colour block, which does not tell its classes apart, counts less."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selectkit import picked_families, quick

from condpretrain.selection import select

SIZE = 24


def stripes(vertical: bool, ink: tuple[int, int, int], paper: tuple[int, int, int],
            rng: np.random.Generator, band: int = 3) -> Image.Image:
    """Bands of ``band`` pixels, ink and paper alternating, with a little noise."""
    line = (np.arange(SIZE) // band) % 2 == 0
    mask = np.broadcast_to(line[None, :] if vertical else line[:, None], (SIZE, SIZE))
    rgb = np.where(mask[..., None], np.array(ink), np.array(paper))
    rgb = rgb + rng.normal(0, 8, (SIZE, SIZE, 3))
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def blotches(ink: tuple[int, int, int], paper: tuple[int, int, int],
             rng: np.random.Generator) -> Image.Image:
    """The target's two colours blended in smooth random blobs: no stripes."""
    coarse = Image.fromarray((rng.random((4, 4)) * 255).astype(np.uint8))
    mix = np.asarray(coarse.resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float64)[..., None] / 255
    rgb = mix * np.array(ink) + (1 - mix) * np.array(paper)
    return Image.fromarray(rgb.astype(np.uint8))


def write(folder: Path, make, count: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        make(rng).save(folder / f"{i:03d}.png")


# The pool's stripes: other colours, the same light-on-dark polarity (the grey image's).
RED, BLACK, YELLOW, NAVY = (220, 30, 30), (10, 10, 10), (230, 200, 40), (20, 20, 80)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("blocks")
    for split, count, seed in (("train", 16, 1), ("test", 4, 2)):
        for name, vertical in (("vertical", True), ("horizontal", False)):
            write(root / "target" / split / name,
                  lambda rng, v=vertical: stripes(v, RED, BLACK, rng), count, seed + vertical)
    for name, vertical in (("form_vertical", True), ("form_horizontal", False)):
        write(root / "pool" / name,
              lambda rng, v=vertical: stripes(v, YELLOW, NAVY, rng, band=2), 24, 3 + vertical)
    write(root / "pool" / "colour_blotches", lambda rng: blotches(RED, BLACK, rng), 48, 5)
    return root / "pool", root / "target"


def run(data: tuple[Path, Path], out: Path, **options) -> tuple[int, dict]:
    pool, target = data
    select([str(pool)], str(target), out, quick(method="knn", count=48, **options))
    record = json.loads((out / "selection.json").read_text())
    return picked_families(out / "subset.csv")["form"], record["models"]["block_weights"]


def test_separability_finds_the_form_that_equal_weights_miss(data, tmp_path):
    equal_form, equal = run(data, tmp_path / "equal", features="classic",
                            block_weights="equal")
    weighted_form, weighted = run(data, tmp_path / "auto", features="classic")
    assert equal == {"rule": "equal", "weights": dict.fromkeys(equal["weights"], 1.0)}
    # The colour block is the one the target's two classes share: it counts (nearly) nothing.
    assert weighted["rule"] == "separability"
    assert weighted["weights"]["colour"] < 0.01
    assert weighted["weights"]["layout"] == weighted["weights"]["gradients"] == 1.0
    assert equal_form < 30 and weighted_form == 48


def test_blocks_named_on_the_command_line_count_equally(data, tmp_path):
    _, auto = run(data, tmp_path / "named", features="classic:layout+gradients")
    assert auto == {"rule": "equal", "weights": {"layout": 1.0, "gradients": 1.0}}
    _, asked = run(data, tmp_path / "asked", features="classic:layout+gradients",
                   block_weights="separability")
    assert asked["rule"] == "separability" and set(asked["weights"]) == {"layout", "gradients"}


def test_density_ratio_reads_the_same_weighted_rows(data, tmp_path):
    """A linear classifier can scale a block back up: the weights act on it only through
    its regularisation, so only that they are applied is checked here."""
    pool, target = data
    scores = {}
    for rule in ("equal", "auto"):
        out = tmp_path / rule
        select([str(pool)], str(target), out, quick(method="density-ratio", count=48,
                                                    features="classic", block_weights=rule))
        record = json.loads((out / "selection.json").read_text())
        assert record["models"]["block_weights"]["rule"] == \
            ("equal" if rule == "equal" else "separability")
        scores[rule] = np.load(out / "scores.npy")
    assert not np.allclose(scores["equal"], scores["auto"])
