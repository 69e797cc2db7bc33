"""``--features moco:target``: a MoCo-v2 backbone trained once on the target's images,
cached under the selection cache, reused (with its pool embeddings) by a second method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from condpretrain.config import SelectConfig, build_config
from condpretrain.data.sources import ImageIndex, open_target
from condpretrain.errors import CondPretrainError
from condpretrain.features import moco_target
from condpretrain.features.embeddings import parse_features
from condpretrain.selection import select


def quick(**overrides) -> SelectConfig:
    return build_config(SelectConfig, "quick", device="cpu", **overrides)


def moco_quick(cache: Path, method: str):
    return quick(method=method, features="moco:target", moco_epochs=1, filter_resolution=16,
                 fraction=0.25, cache_dir=str(cache))


def shared_by_kind(out: Path) -> dict[str, dict]:
    """selection.json's charged shared models, by what they are (moco run, embeddings)."""
    shared = json.loads((out / "selection.json").read_text())["cost"]["shared"]
    return {entry["key"].split("-")[0]: entry for entry in shared}


def test_trained_once_then_reused_with_its_embeddings(two_part_pool, stripes_target, tmp_path,
                                                       monkeypatch):
    calls = []
    real_pretrain = moco_target.pretrain

    def counting(*args, **kwargs):
        calls.append(args)
        return real_pretrain(*args, **kwargs)

    monkeypatch.setattr(moco_target, "pretrain", counting)
    cache = tmp_path / "cache"
    first = select([str(two_part_pool)], str(stripes_target), tmp_path / "knn",
                   moco_quick(cache, "knn"))
    assert first.selected == 24 and len(calls) == 1
    runs = sorted(cache.glob("moco-target-*/backbone.pt"))
    assert len(runs) == 1
    meta = json.loads((tmp_path / "knn" / "selection.json").read_text())
    assert meta["models"]["features"]["from"] == "moco:target"
    assert meta["models"]["features"]["backbone"] == str(runs[0])
    charged = shared_by_kind(tmp_path / "knn")
    assert charged["moco"]["trained_here"] and charged["moco"]["seconds"] > 0
    assert charged["embeddings"]["trained_here"]
    stamp = runs[0].stat().st_mtime_ns

    select([str(two_part_pool)], str(stripes_target), tmp_path / "avg",
           moco_quick(cache, "clustering-avg"))
    assert len(calls) == 1  # no second training
    assert runs[0].stat().st_mtime_ns == stamp
    assert len(list(cache.glob("embeddings-*"))) == 1  # the same embeddings, read back
    charged_again = shared_by_kind(tmp_path / "avg")
    # Still charged what training cost, though loaded: the model was needed all the same.
    assert not charged_again["moco"]["trained_here"]
    assert charged_again["moco"]["seconds"] == charged["moco"]["seconds"]
    assert not charged_again["embeddings"]["trained_here"]


def test_bad_argument_is_a_one_line_error(two_part_pool, stripes_target, tmp_path):
    for text in ("moco:pool", "moco"):
        with pytest.raises(CondPretrainError) as caught:
            parse_features(text)
        assert "moco:target" in str(caught.value) and "\n" not in str(caught.value)
    config = quick(method="knn", features="moco:pool", fraction=0.25,
                   cache_dir=str(tmp_path / "cache"))
    with pytest.raises(CondPretrainError, match="moco takes only 'target'"):
        select([str(two_part_pool)], str(stripes_target), tmp_path / "out", config)
    assert not list((tmp_path / "cache").glob("moco-target-*"))  # refused before training


def test_pool_sample_is_a_seeded_draw_added_to_the_target(stripes_target):
    target = open_target(str(stripes_target))
    pool = ImageIndex([f"/pool/{i:03d}.png" for i in range(50)], [""] * 50, ["p"] * 50)
    none = moco_target.training_images(target, pool, quick(moco_pool_sample=0))
    assert none == list(target.train.paths)
    drawn = moco_target.training_images(target, pool, quick(moco_pool_sample=7))
    assert drawn[:len(target.train)] == list(target.train.paths)
    extra = drawn[len(target.train):]
    assert len(set(extra)) == 7 and set(extra) <= set(pool.paths) and extra == sorted(extra)
    assert drawn == moco_target.training_images(target, pool, quick(moco_pool_sample=7))
    assert drawn != moco_target.training_images(target, pool,
                                                quick(moco_pool_sample=7, seed=1))
    with pytest.raises(CondPretrainError, match="--moco-pool-sample"):
        moco_target.training_images(target, None, quick(moco_pool_sample=7))


def test_recipe_follows_the_scoring_resolution():
    small = moco_target.moco_config(quick(filter_resolution=16), images=32, world_size=2)
    assert (small.mode, small.arch, small.resolution, small.batch_size) == (
        "moco", "resnet10", 16, 16)  # a batch fits each process's share (MoCo drops the rest)
    assert small.moco_queue == 1024  # the pretrain small preset's, tuned for tiny images
    paper = moco_target.moco_config(quick(filter_resolution=224), images=1000, world_size=1)
    assert paper.moco_queue == 65536 and paper.batch_size == 64
    with pytest.raises(CondPretrainError, match="too few"):
        moco_target.moco_config(quick(), images=3, world_size=2)


def test_pool_sample_joins_the_target_images(two_part_pool, stripes_target, tmp_path,
                                              monkeypatch):
    trained_on = []
    real_pretrain = moco_target.pretrain

    def recording(sources, out, config, **kwargs):
        trained_on.append(str(sources))
        return real_pretrain(sources, out, config, **kwargs)

    monkeypatch.setattr(moco_target, "pretrain", recording)
    config = quick(method="knn", features="moco:target", moco_epochs=1, moco_pool_sample=8,
                   filter_resolution=16, fraction=0.25, cache_dir=str(tmp_path / "cache"))
    select([str(two_part_pool)], str(stripes_target), tmp_path / "out", config)
    manifest = Path(trained_on[0])
    rows = manifest.read_text().strip().splitlines()[1:]
    assert len(rows) == len(open_target(str(stripes_target)).train) + 8
