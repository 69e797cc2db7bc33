"""``select``: score a source pool against a target and keep a budget of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from condpretrain.config import common
from condpretrain.config.base import Config
from condpretrain.config.options import option
from condpretrain.errors import CondPretrainError
from condpretrain.policies import BALANCE_BY, policy_names
from condpretrain.registry import SCORERS

# --block-weights: see condpretrain.features.blocks.
BLOCK_RULES = ("auto", "equal", "separability")


@dataclass
class SelectConfig(Config):
    """Score a source pool against a target and keep a budget of it."""

    method: str = option("domain-classifier", "how pool images are scored (see "
                         "`condpretrain methods`), or fuse:A,B,...: reciprocal-rank fusion "
                         "of the saved scores of methods A, B (see --fuse-from; a part may "
                         "name its features, e.g. knn@classic, as may a method alone: "
                         "knn@classic is knn on --features classic); fusion is "
                         "the suggestion when unsure which method to pick",
                         choices=lambda: method_choices(), parse=lambda v: parse_method(v),
                         grid=True)
    fraction: float | None = option(None, "budget as a share of the pool, e.g. 0.06 or 0.12",
                                    low=0, high=1, low_open=True, grid=True, neutral=True)
    count: int | None = option(None, "budget as a number of images", low=1, grid=True,
                               neutral=True)
    seed: int = common.seed(grid=True,
                            what="random seed (ties, random scores, model initialisation)")
    # Filtering always runs at 224 px in the paper, whatever the pre-training resolution.
    filter_resolution: int = option(224, "resolution (px) images are scored at", low=0,
                                    low_open=True)
    batch_size: int = option(256, "images per batch when scoring and training the scorer "
                             "models", low=0, low_open=True, neutral=True)
    workers: int = common.workers()
    device: str = common.device()
    amp: bool = common.amp(neutral=True)
    # Neutral like amp: the two decoders' resizes differ in the last bits only.
    decode: str = option("auto", "where pool images are decoded when scoring: gpu (JPEGs "
                         "batched by nvJPEG on the scoring device, other files by Pillow), "
                         "cpu (Pillow in the DataLoader workers), auto (gpu on CUDA)",
                         choices=("auto", "cpu", "gpu"), neutral=True)
    deterministic: bool = common.deterministic()
    max_image_pixels: int = common.max_image_pixels()
    cache_dir: str | None = option(None, "where the scorer models are cached (OUT/cache when "
                                   "unset)", grid=True, metavar="DIR")
    # Scores are saved every chunk, so a killed run loses at most one chunk of work.
    chunk_size: int = option(50_000, "images per saved chunk of scores (the resume "
                             "granularity)", low=1, neutral=True)
    dc_arch: str = option("resnet18", "domain classifier architecture")
    dc_epochs: int = option(10, "domain classifier epochs", low=0)
    dc_lr: float = option(0.01, "domain classifier learning rate", low=0, low_open=True)
    target_arch: str = option("resnet18", "architecture of the target-trained model "
                              "(clustering and active learning share it)")
    target_epochs: int = option(30, "target-trained model epochs", low=0)
    target_lr: float = option(0.01, "target-trained model learning rate", low=0, low_open=True)
    features_from: str | None = option(None, "backbone file whose features clustering uses "
                                       "(e.g. MoCo-v2); the target-trained model when unset",
                                       metavar="CKPT")
    clusters: int = option(200, "k-means K", low=0, low_open=True)
    kmeans_iters: int = option(25, "k-means iterations", low=0, low_open=True)
    # The embedding scorers (knn, density-ratio) read pool embeddings computed once per
    # (features, pool) and cached, so every method and budget shares them.
    features: str = option("target", "image features of the embedding scorers (knn, "
                           "density-ratio, and clustering when not target): target, "
                           "classic[:BLOCKS] (colour histogram + layout + gradient "
                           "orientations, or BLOCKS of them joined by +: no weights, no "
                           "training), checkpoint:CKPT, timm:NAME[@WEIGHTS] (any timm model; needs "
                           "condpretrain[timm]), moco:target (a MoCo-v2 backbone trained "
                           "here on the target's images, no labels needed; cached), or "
                           "npy:PATH (rows aligned with pool.csv; the target's in "
                           "PATH.target.npy)",
                           metavar="SOURCE")
    # --features moco:target: the paper's unsupervised features. The other MoCo settings
    # follow the scoring resolution (see condpretrain.features.moco_target).
    moco_epochs: int = option(200, "--features moco:target: MoCo-v2 epochs on the target's "
                              "images", low=1)
    moco_pool_sample: int = option(0, "--features moco:target: pool images (seeded draw) "
                                   "added to the target's for MoCo-v2 training", low=0)
    target_features: str | None = option(None, "the target's train embeddings for --features "
                                         "npy:PATH (default: PATH with .target.npy)",
                                         metavar="NPY")
    knn_k: int = option(10, "knn: how many nearest target embeddings a pool image's "
                        "similarity is averaged over", low=1)
    # Not neutral: the weights change the scores (a saved score chunk of another rule is
    # not reused).
    block_weights: str = option("auto", "knn and density-ratio on a descriptor of several "
                                "blocks (classic): how much each block counts: "
                                "separability (by how well it tells the target's classes "
                                "apart, relative to the median block, at most 1), equal, "
                                "or auto (separability unless --features names the "
                                "blocks, e.g. classic:layout+gradients)",
                                choices=BLOCK_RULES)
    density_pool_sample: int = option(50_000, "density-ratio: pool embeddings (seeded draw) "
                                      "the target-vs-pool classifier is fitted on", low=1)
    # Neutral, like keep_eval_duplicates: the scores do not depend on them, only which
    # images are drawn from the scores (saved score chunks stay valid).
    policy: str = option("top", "how the budget is drawn from the scores: top (the paper's: "
                         "the highest), sample (importance resampling without replacement, "
                         "weights exp(score / temperature)), balanced (at most "
                         "budget/groups per group of the pool (see --balance-by), then "
                         "top-first)",
                         choices=policy_names, neutral=True)
    temperature: float = option(1.0, "--policy sample: scores are divided by it before "
                                "drawing (lower: closer to top)", low=0, low_open=True,
                                neutral=True)
    balance_by: str = option("auto", "--policy balanced: what the groups are: auto (the "
                             "pool's class labels, else its pools), labels, pools, or "
                             "features (k-means clusters of the pool's --features "
                             "embeddings, so near-duplicates share a group)",
                             choices=BALANCE_BY, neutral=True)
    # Fixed rather than relative to the budget: the pool's cluster assignment is cached
    # per K, so one assignment serves every budget re-selected from the same scores (and
    # subsets of two budgets are balanced over the same groups). 1000 clusters of a pool
    # of 10^5-10^7 images hold 10^2-10^4 images each: a pile of near-duplicates is one
    # cluster, a kind of image is several, and the paper's budgets (6-12 % of such a
    # pool) still leave several images per cluster.
    balance_clusters: int = option(1000, "--balance-by features: K, the number of k-means "
                                   "clusters of the pool's embeddings (fitted on a seeded "
                                   "sample of at most 256 per cluster; at most the number "
                                   "of readable images)", low=2, neutral=True)
    # Grid: an experiment grid names each fusion's parts' folders itself.
    fuse_from: str | None = option(None, "--method fuse:A,B: the finished select folders "
                                   "holding the scores of A, B, ... (comma-separated)",
                                   metavar="DIR[,DIR...]", grid=True)
    fuse_k: float = option(60.0, "--method fuse: the k of reciprocal-rank fusion, "
                           "score = sum over methods of 1 / (k + rank)", low=0)
    # Neutral: scores do not depend on it, only which images may be chosen from them.
    keep_eval_duplicates: bool = option(False, "let pool images that are copies (exact, "
                                        "resized, re-encoded or mirrored) of the target's "
                                        "test/val images be selected; they are found and "
                                        "listed either way", neutral=True)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "small": {
            "filter_resolution": 32,
            "batch_size": 128,
            "workers": 0,
            "dc_arch": "resnet10",
            "dc_epochs": 4,
            "dc_lr": 0.05,
            "target_arch": "resnet10",
            "target_epochs": 15,
            "target_lr": 0.05,
            "moco_epochs": 12,
            "clusters": 20,
            "kmeans_iters": 20,
            "chunk_size": 5_000,
        },
        "quick": {
            "filter_resolution": 32,
            "batch_size": 64,
            "workers": 0,
            "dc_arch": "resnet10",
            "dc_epochs": 3,
            "dc_lr": 0.05,
            "target_arch": "resnet10",
            "target_epochs": 5,
            "target_lr": 0.05,
            "moco_epochs": 2,
            "clusters": 20,
            "kmeans_iters": 10,
            "chunk_size": 5_000,
        },
    }

    def check(self) -> None:
        name, features = method_and_features(self.method)
        if features is not None:  # --method knn@classic: knn on --features classic
            self.method, self.features = name, features
        if self.fraction is not None and self.count is not None:
            raise CondPretrainError("give either --fraction or --count, not both")
        if fused_methods(self.method) and not self.fuse_from:
            raise CondPretrainError(f"--fuse-from: --method {self.method} reads saved scores: "
                                    "name the select folders of the fused methods")


# --method fuse:A,B,... ----------------------------------------------------------------
# A fusion is no registered class (it scores nothing), yet it must pass --method's
# choices check, which runs after the option's parse: parse_method validates the parts
# and remembers the fusion, and method_choices lists the fusions (and METHOD@FEATURES)
# validated so far.
FUSE_PREFIX = "fuse:"
# --method knn@classic: knn on --features classic (the features win over --features).
FEATURES_MARK = "@"
_CHECKED: set[str] = set()  # fusions and methods on given features, once checked


def fused_methods(method: str) -> list[str] | None:
    """The methods ``fuse:A,B,...`` names; None for any other method."""
    if not isinstance(method, str) or not method.startswith(FUSE_PREFIX):
        return None
    return [part.strip() for part in method[len(FUSE_PREFIX):].split(",") if part.strip()]


def method_and_features(method: str) -> tuple[str, str | None]:
    """``knn@classic`` -> ('knn', 'classic'): a method on given ``--features``; any other
    method, a fusion included, -> (method, None). Method names have no '@'; features may
    (``timm:NAME@WEIGHTS``), so the first '@' splits."""
    if fused_methods(method) is not None or FEATURES_MARK not in method:
        return method, None
    name, _, features = method.partition(FEATURES_MARK)
    return name, features


def _check_method(value: str, method: str, what: str) -> None:
    name, features = method_and_features(method)
    if name not in SCORERS:
        raise CondPretrainError(f"--method {value!r}: unknown method {name!r}{what} "
                                f"(known: {', '.join(SCORERS.names())})")
    if features == "":
        raise CondPretrainError(f"--method {value!r}: name the features after '@' "
                                f"(e.g. {name}@classic)")


def parse_method(value: Any) -> Any:
    """``fuse:A, B`` -> ``fuse:A,B`` once A and B are checked; ``METHOD@FEATURES`` once
    METHOD is; other values unchanged."""
    parts = fused_methods(value)
    if parts is None:
        if isinstance(value, str) and FEATURES_MARK in value:
            _check_method(value, value, "")
            _CHECKED.add(value)
        return value
    for part in parts:  # a part's features are checked when its folder is read
        _check_method(value, part, " to fuse")
    if len(set(parts)) < 2 or len(set(parts)) != len(parts):
        raise CondPretrainError(f"--method {value!r}: fuse two or more different methods")
    fusion = FUSE_PREFIX + ",".join(parts)
    _CHECKED.add(fusion)
    return fusion


def method_choices() -> list[str]:
    return [*SCORERS.names(), *sorted(_CHECKED)]
