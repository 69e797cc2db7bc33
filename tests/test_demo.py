from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from fake_steps import FakePipeline
from PIL import Image

from condpretrain.demo import DemoConfig, demo, make_demo_data
from condpretrain.demo.data import TARGET_KIND, images_per_class, pool_kinds
from condpretrain.demo.glyphs import fonts_for, render_char

TINY = {"image_size": 16, "pool_images": 400, "target_share": 0.05,
        "target_train_per_class": 3, "target_test_per_class": 2}


def test_demo_pool_has_distinct_kinds_with_the_target_kind_a_small_part(tmp_path: Path):
    started = time.perf_counter()
    pools, target = make_demo_data(tmp_path / "data", DemoConfig(**TINY))
    assert time.perf_counter() - started < 30
    assert sorted(pools) == sorted(k.name for k in pool_kinds())
    counts = {name: len(list(folder.rglob("*.png"))) for name, folder in pools.items()}
    total = sum(counts.values())
    assert abs(total - 400) < 120  # rounding per class, at least one image each
    assert counts[TARGET_KIND] / total < 0.1  # like cars in ImageNet: a small part
    assert all(n > 0 for n in counts.values())
    per_class = images_per_class(400, 0.05)
    for kind in pool_kinds():
        folders = sorted(p.name for p in pools[kind.name].iterdir())
        assert folders == sorted(kind.classes)
        assert all(len(list((pools[kind.name] / c).glob("*.png"))) == per_class[kind.name]
                   for c in folders)
    for split, count in (("train", 3), ("test", 2)):
        folders = sorted(p.name for p in (target / split).iterdir())
        assert folders == [str(d) for d in range(10)]
        assert all(len(list((target / split / d).glob("*.png"))) == count for d in folders)
    image = Image.open(next((pools[TARGET_KIND] / "digit-7").glob("*.png")))
    assert image.size == (16, 16) and image.mode == "RGB"
    assert Image.open(next((target / "train" / "3").glob("*.png"))).size == (16, 16)


def test_demo_kinds_look_different(tmp_path: Path):
    """Photos are textured colour, shapes flat colour on noise, glyphs two colours: the
    kinds must differ in simple statistics, or selecting one could not matter."""
    pools, _ = make_demo_data(tmp_path / "data", DemoConfig(**TINY))

    def colours(kind: str) -> float:
        images = [np.asarray(Image.open(p)) for p in sorted(pools[kind].rglob("*.png"))[:20]]
        return float(np.mean([len(np.unique(i.reshape(-1, 3), axis=0)) for i in images]))

    assert colours("photos") > colours("characters")
    assert colours("shapes") > colours("characters")


def test_demo_data_is_reused_only_with_the_same_settings(tmp_path: Path):
    pools, _ = make_demo_data(tmp_path / "data", DemoConfig(**TINY))
    first = next((pools["characters"] / "upper-A").glob("*.png"))
    stamp = first.stat().st_mtime_ns
    make_demo_data(tmp_path / "data", DemoConfig(**TINY))
    assert first.stat().st_mtime_ns == stamp
    make_demo_data(tmp_path / "data", DemoConfig(**{**TINY, "pool_images": 200}))
    assert len(list((pools["shapes"] / "shape-circle").glob("*.png"))) == \
        images_per_class(200, 0.05)["shapes"]


def test_fonts_really_draw_the_character():
    digit_fonts = fonts_for("7", 32)
    arrow_fonts = fonts_for("\u2192", 32)
    assert len(digit_fonts) > len(arrow_fonts) >= 4  # Computer Modern draws alphanumerics only
    rng = np.random.default_rng(0)
    pixels = np.asarray(render_char("Q", digit_fonts, 24, rng))
    assert pixels.shape == (24, 24, 3) and pixels.std() > 10  # a glyph, not a blank square


def test_scaled_down_demo_writes_report(tmp_path: Path):
    fake = FakePipeline()
    config = DemoConfig(**TINY, methods=["random", "clustering-avg"], seeds=[0, 1])
    result = demo(tmp_path / "demo", config, steps=fake.steps())
    # per seed: 1 random-init + 2 resolutions x (entire pool + 2 budgets x 2 methods)
    assert result.experiment.ran == 2 * (1 + 2 * (1 + 4))
    assert result.report.html.is_file() and "Random Init." in result.report.table_text
    assert result.report.table_text.startswith(result.report.findings_text)
    assert (tmp_path / "demo" / "experiment.yaml").is_file()


def test_full_demo_runs_every_method():
    from condpretrain.registry import SCORERS

    assert DemoConfig(full=True).grid_methods() == SCORERS.names()
    assert set(DemoConfig().grid_methods()) < set(SCORERS.names())


def test_demo_resumes_but_refuses_other_settings(tmp_path: Path):
    import pytest

    from condpretrain.errors import CondPretrainError

    config = DemoConfig(**TINY, methods=["random"], resolutions=[16])
    demo(tmp_path / "demo", config, steps=FakePipeline().steps())
    again = FakePipeline()
    assert demo(tmp_path / "demo", config, steps=again.steps()).experiment.ran == 0
    assert sum(again.calls.values()) == 0
    with pytest.raises(CondPretrainError, match="pool_images"):
        demo(tmp_path / "demo", DemoConfig(**{**TINY, "pool_images": 300}),
             steps=FakePipeline().steps())


def test_reduced_real_demo_states_findings_from_its_own_results(tmp_path: Path):
    """The real pipeline on a reduced grid: two seeds, so every finding that pairs seeds
    has an interval, and the printed findings are those of this run's results.csv."""
    from condpretrain.experiment.results import read_results

    config = DemoConfig(image_size=16, pool_images=120, target_share=0.1,
                        target_train_per_class=2, target_test_per_class=2,
                        methods=["random", "domain-classifier"], budgets=[0.2],
                        resolutions=[16, 8], seeds=[0, 1], preset="quick",
                        select={"dc_epochs": 1, "target_epochs": 1},
                        pretrain={"epochs": 1, "flip": False},
                        finetune={"epochs": 1, "flip": False})
    result = demo(tmp_path / "demo", config)
    rows = read_results(tmp_path / "demo" / "results.csv")
    assert len(rows) == 2 * (1 + 2 * (1 + 2))  # per seed: random init + 2 res x (pool + 2)
    text = result.report.findings_text
    for letter in "abdef":
        assert f"({letter})" in text
    assert "n=2" in text and "95 % CI" in text
    assert "by pool source" in text  # (f): the demo's pool is four sources
    html = result.report.html.read_text(encoding="utf-8")
    assert html.index('id="findings"') < html.index("Table 2")
