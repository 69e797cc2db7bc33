"""``condpretrain select`` and ``condpretrain methods``."""

from __future__ import annotations

import argparse

from condpretrain.cli.common import add_common_flags, overrides
from condpretrain.config import SelectConfig, build_config
from condpretrain.errors import CondPretrainError
from condpretrain.scoring import SCORERS
from condpretrain.selection import reselect, select, write_subset_shards
from condpretrain.train.dist import is_main_process

# Flags whose value maps 1:1 onto a SelectConfig field of the same name.
_CONFIG_FLAGS = [
    "method", "fraction", "count", "seed", "filter_resolution", "batch_size", "workers", "device",
    "cache_dir", "dc_arch", "dc_epochs", "dc_lr", "target_arch", "target_epochs", "target_lr",
    "features_from", "clusters", "kmeans_iters", "max_image_pixels", "chunk_size",
]


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "select", help="score a source pool for a target and write the chosen subset",
        description="Score every pool image for relevance to the target and keep a budget.",
    )
    parser.add_argument("--source", action="append", metavar="[NAME=]POOL",
                        help="an ImageFolder, flat image folder or path,label CSV; repeat to union")
    parser.add_argument("--target", metavar="[NAME=]TARGET",
                        help="ROOT/{train,test}/<class>/..., a manifest with a split column, "
                             "or a flat folder (unlabelled)")
    parser.add_argument("--method", choices=sorted(SCORERS), default=None)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--fraction", type=float, default=None, help="e.g. 0.06 or 0.12")
    budget.add_argument("--count", type=int, default=None, help="a number of images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--scores", metavar="SELECTION_DIR", default=None,
                        help="re-select from a finished selection's saved scores (no scoring)")
    parser.add_argument("--filter-resolution", type=int, default=None, help="default 224")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--cache-dir", default=None,
                        help="where the target-trained model is cached (default OUT/cache)")
    parser.add_argument("--dc-arch", default=None, help="domain classifier (default resnet18)")
    parser.add_argument("--dc-epochs", type=int, default=None)
    parser.add_argument("--dc-lr", type=float, default=None)
    parser.add_argument("--target-arch", default=None, help="target-trained model (resnet18)")
    parser.add_argument("--target-epochs", type=int, default=None)
    parser.add_argument("--target-lr", type=float, default=None)
    parser.add_argument("--features-from", metavar="CKPT", default=None,
                        help="backbone state_dict whose features clustering uses (e.g. MoCo-v2)")
    parser.add_argument("--clusters", type=int, default=None, help="k-means K (default 200)")
    parser.add_argument("--kmeans-iters", type=int, default=None)
    parser.add_argument("--write-shards", action="store_true",
                        help="also write the subset as WebDataset shards under OUT/shards/")
    parser.add_argument("--images-per-shard", type=int, default=10_000)
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="images per saved chunk of scores (resume granularity; 50000)")
    parser.add_argument("--max-image-pixels", type=int, default=None,
                        help="skip larger images as decompression bombs (default Pillow's)")
    add_common_flags(parser)
    parser.set_defaults(handler=run_select)

    methods = commands.add_parser("methods", help="list the scoring methods")
    methods.set_defaults(handler=run_methods)


def run_select(args: argparse.Namespace) -> int:
    if args.scores:
        result = reselect(args.scores, args.out, args.fraction, args.count, args.seed)
    else:
        if not args.source:
            raise CondPretrainError("--source: give at least one image pool (or --scores DIR)")
        config = build_config(SelectConfig, args.preset, args.config,
                              **overrides(args, _CONFIG_FLAGS))
        result = select(args.source, args.target, args.out, config)
    if not is_main_process():
        return 0
    print(f"selected {result.selected} of {result.pool_size} images -> {result.subset_csv}")
    if args.write_shards:
        shards = write_subset_shards(result.out_dir, args.images_per_shard)
        print(f"wrote {len(shards)} shards -> {result.out_dir / 'shards'}")
    return 0


def run_methods(args: argparse.Namespace) -> int:
    width = max(len(name) for name in SCORERS)
    for name in sorted(SCORERS):
        print(f"{name:<{width}}  {SCORERS[name].summary}")
    return 0
