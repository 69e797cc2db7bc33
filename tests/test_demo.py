from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from fake_steps import FakePipeline
from PIL import Image

from condpretrain.demo import (
    DemoConfig,
    demo,
    fonts_for,
    make_demo_data,
    pool_classes,
    render_char,
)

TINY = {"image_size": 16, "pool_per_class": 2, "target_train_per_class": 3,
        "target_test_per_class": 2}


def test_demo_data_layout_and_counts(tmp_path: Path):
    started = time.perf_counter()
    pool, target = make_demo_data(tmp_path / "data", DemoConfig(**TINY))
    assert time.perf_counter() - started < 30
    classes = sorted(p.name for p in pool.iterdir())
    assert classes == sorted(pool_classes()) and len(classes) > 100
    assert all(len(list((pool / c).glob("*.png"))) == 2 for c in classes)
    digits = [c for c in classes if c.startswith("digit-")]
    assert len(digits) == 10 and len(digits) / len(classes) < 0.15  # digits: a small part
    for split, count in (("train", 3), ("test", 2)):
        folders = sorted(p.name for p in (target / split).iterdir())
        assert folders == [str(d) for d in range(10)]
        assert all(len(list((target / split / d).glob("*.png"))) == count for d in folders)
    image = Image.open(next((pool / "digit-7").glob("*.png")))
    assert image.size == (16, 16) and image.mode == "RGB"
    assert Image.open(next((target / "train" / "3").glob("*.png"))).size == (16, 16)


def test_demo_data_is_reused_only_with_the_same_settings(tmp_path: Path):
    pool, _ = make_demo_data(tmp_path / "data", DemoConfig(**TINY))
    first = next((pool / "upper-A").glob("*.png"))
    stamp = first.stat().st_mtime_ns
    make_demo_data(tmp_path / "data", DemoConfig(**TINY))
    assert first.stat().st_mtime_ns == stamp
    make_demo_data(tmp_path / "data", DemoConfig(**{**TINY, "pool_per_class": 1}))
    assert len(list((pool / "upper-A").glob("*.png"))) == 1


def test_fonts_really_draw_the_character():
    digit_fonts = fonts_for("7", 32)
    arrow_fonts = fonts_for("\u2192", 32)
    assert len(digit_fonts) > len(arrow_fonts) >= 4  # Computer Modern draws alphanumerics only
    rng = np.random.default_rng(0)
    pixels = np.asarray(render_char("Q", digit_fonts, 24, rng))
    assert pixels.shape == (24, 24, 3) and pixels.std() > 10  # a glyph, not a blank square


def test_scaled_down_demo_writes_report(tmp_path: Path):
    fake = FakePipeline()
    config = DemoConfig(**TINY, methods=["random", "clustering-avg"])
    result = demo(tmp_path / "demo", config, steps=fake.steps())
    # 1 random-init + 2 resolutions x (entire pool + 2 budgets x 2 methods)
    assert result.experiment.ran == 1 + 2 * (1 + 4)
    assert result.report.html.is_file() and "Random Init." in result.report.table_text
    assert (tmp_path / "demo" / "experiment.yaml").is_file()


def test_demo_resumes_but_refuses_other_settings(tmp_path: Path):
    import pytest

    from condpretrain.errors import CondPretrainError

    config = DemoConfig(**TINY, methods=["random"], resolutions=[16])
    demo(tmp_path / "demo", config, steps=FakePipeline().steps())
    again = FakePipeline()
    assert demo(tmp_path / "demo", config, steps=again.steps()).experiment.ran == 0
    assert sum(again.calls.values()) == 0
    with pytest.raises(CondPretrainError, match="pool_per_class"):
        demo(tmp_path / "demo", DemoConfig(**{**TINY, "pool_per_class": 3}),
             steps=FakePipeline().steps())
