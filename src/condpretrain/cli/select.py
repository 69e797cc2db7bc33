"""``condpretrain select`` and ``condpretrain methods``."""

from __future__ import annotations

import argparse

from condpretrain.cli.flags import add_config_flags, add_preset_flags, config_from_args, flag_values
from condpretrain.config import SelectConfig
from condpretrain.config.select import fused_methods
from condpretrain.dist import is_main_process
from condpretrain.errors import CondPretrainError
from condpretrain.multi_target import parse_mix, select_multi, target_names
from condpretrain.registry import SCORERS
from condpretrain.selection import reselect, select, write_subset_shards


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "select", help="score a source pool for a target and write the chosen subset",
        description="Score every pool image for relevance to the target and keep a budget.",
    )
    parser.add_argument("--source", action="append", metavar="[NAME=]POOL",
                        help="an ImageFolder, flat image folder or path,label CSV; repeat to union")
    parser.add_argument("--target", action="append", metavar="[NAME=]TARGET",
                        help="ROOT/{train,test}/<class>/..., a manifest with a split column, "
                             "or a flat folder (unlabelled); repeat for one subset serving "
                             "several targets (each selected in OUT/targets/NAME)")
    # A flag of this command, not a SelectConfig option: it means something only with
    # several targets, and select(), --scores and experiment files take one target each.
    parser.add_argument("--mix", metavar="SHARE,SHARE,...", default=None,
                        help="several targets: each one's share of the budget, in --target "
                             "order, summing to 1 (default: equal shares)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--scores", metavar="SELECTION_DIR", default=None,
                        help="re-select from a finished selection's saved scores (no scoring)")
    parser.add_argument("--write-shards", action="store_true",
                        help="also write the subset as WebDataset shards under OUT/shards/")
    parser.add_argument("--images-per-shard", type=int, default=10_000,
                        help="images per shard with --write-shards (default 10000)")
    add_preset_flags(parser)
    add_config_flags(parser, SelectConfig)
    parser.set_defaults(handler=run_select)

    methods = commands.add_parser("methods", help="list the scoring methods")
    methods.set_defaults(handler=run_methods)


def run_select(args: argparse.Namespace) -> int:
    if args.images_per_shard < 1:
        raise CondPretrainError("--images-per-shard must be at least 1")
    targets = args.target or []
    if args.mix is not None and len(targets) < 2:
        raise CondPretrainError("--mix: shares the budget among several targets; "
                                "give two or more --target")
    if args.scores:
        if len(targets) > 1:
            raise CondPretrainError("--scores: re-selects one selection's scores; "
                                    "give at most one --target")
        given = flag_values(args, SelectConfig)
        result = reselect(args.scores, args.out, given.get("fraction"), given.get("count"),
                          given.get("seed"), given.get("keep_eval_duplicates"),
                          policy=given.get("policy"), temperature=given.get("temperature"),
                          balance_by=given.get("balance_by"),
                          balance_clusters=given.get("balance_clusters"))
    else:
        config = config_from_args(args, SelectConfig)
        # a fusion reads the pool from the fused selections' saved scores
        if not args.source and not fused_methods(config.method):
            raise CondPretrainError("--source: give at least one image pool (or --scores DIR)")
        if len(targets) > 1:
            named = target_names(targets)
            result = select_multi(args.source or [], named, args.out, config,
                                  parse_mix(args.mix, len(named)))
        else:
            result = select(args.source or [], targets[0] if targets else None, args.out,
                            config)
    if not is_main_process():
        return 0
    print(f"selected {result.selected} of {result.pool_size} images -> {result.subset_csv}")
    if args.write_shards:
        shards = write_subset_shards(result.out_dir, args.images_per_shard)
        print(f"wrote {len(shards)} shards -> {result.out_dir / 'shards'}")
    return 0


def run_methods(args: argparse.Namespace) -> int:
    names = SCORERS.names()
    width = max(len(name) for name in names)
    for name in names:
        print(f"{name:<{width}}  {SCORERS[name].summary}")
    return 0
