"""GPU throughput: the tool's data path against the bare step, per stage (issue "On the GPU").

Makes an ImageNet-like JPEG pool and target on the machine (``bench/imagenet_like.py``) and
a small VOC-format set (the tests' drawer), then measures, on one device:

  pretrain   images/s of ``condpretrain pretrain`` (epochs read from the image cache, the
             first epoch left out as warm-up: cuDNN autotuning, ``--compile``) against the
             same model, optimizer and AMP stepping on device-resident random batches; for
             supervised ResNet-34 and MoCo-v2 ResNet-50 at each ``--resolutions``; goals
             tool/bare >= 0.9 and 112 px / 224 px >= 3.5; MoCo twice, its colour steps
             in the loader's workers and on the device (``moco-device``, whose bare step
             includes them)
  score      images/s of embedding the pool with a ResNet-18 at 224 px from the JPEG files
             (``select --method knn --features checkpoint:R18``; the shards' own clock)
             against the bare forward; goal >= 0.8; and the hours a 1.28 M-image pool takes;
             then where the input's time goes, stage by stage (``bench/decode_path.py``)
  finetune   images/s of ``condpretrain finetune`` (ResNet-34), same warm-up rule
  detect / segment
             iterations/s of ``condpretrain detect`` / ``segment`` (lines after the first;
             segmentation trains by epochs, as many as make about ``--iterations`` steps)

with the peak GPU memory of each (``torch.cuda.max_memory_allocated``). Every figure is the
median of its repeats (epochs, lines or timed rounds). On a GPU:

    python bench/gpu.py --out /tmp/gpu-bench            # ~10 min on one H100
CPU smoke (what the tests cannot afford, minutes on 2 cores):
    python bench/gpu.py --device cpu --pool-images 96 --target-images 40 --resolutions 32,16 \\
        --supervised-arch resnet10 --moco-arch resnet10 --score-arch resnet10 --batch-size 16 \\
        --epochs 2 --iterations 6 --score-resolution 32 --workers 2 --finetune-resolution 32 \\
        --downstream-preset quick --voc-images 16 --voc-size 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from _util import median_seconds, print_table  # noqa: E402
from decode_path import decode_rows  # noqa: E402
from imagenet_like import make  # noqa: E402
from vocgen import make_voc  # noqa: E402  (the tests' VOC drawer: boxes and masks)

import condpretrain as cp  # noqa: E402
from condpretrain.config import DetectConfig, SegmentConfig  # noqa: E402
from condpretrain.device import autocast, compile_model, prepare_model, resolve_device  # noqa: E402
from condpretrain.models import build_resnet  # noqa: E402
from condpretrain.train.loop import Trainer  # noqa: E402
from condpretrain.train.methods import PRETRAIN_METHODS  # noqa: E402
from condpretrain.train.photometric import blur_sigma, draw_params  # noqa: E402

ROUNDS = 5  # timed rounds of the bare step / forward
STEPS = 10  # steps per round: six pre-training configurations share the stage's time


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> str:
    if device.type != "cuda":
        return "-"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f}"


def timed_rate(step: Callable[[], object], images: int, device: torch.device) -> float:
    """Images/s of the median of ROUNDS rounds of STEPS calls (each round ends when the
    device is done), after one round of warm-up."""
    def one_round() -> None:
        for _ in range(STEPS):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    one_round()
    return images * STEPS / median_seconds(one_round, ROUNDS)


def shown(row: list) -> list:
    """``row``, printed as soon as it is measured: a run stopped by its time limit still
    leaves the figures it got (the table at the end repeats them)."""
    print("measured: " + " | ".join(str(cell) for cell in row if cell != ""), flush=True)
    return row


def line_rates(run: Path, key: str) -> float:
    """Median of a run's metrics.jsonl ``key`` after its first line (the warm-up)."""
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    values = [line[key] for line in lines[1:] or lines if key in line]
    return statistics.median(values) if values else float("nan")


# -- pre-training --------------------------------------------------------------------------

def bare_pretrain_rate(config: cp.PretrainConfig, device: torch.device) -> float:
    """The method's model, SGD and AMP on one device-resident random batch, over and over."""
    method = PRETRAIN_METHODS.get_class(config.mode)(config)
    model = prepare_model(method.build(10, 100_000, config.batch_size), device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trainer = Trainer(method.task(compile_model(model, config.compile)), optimizer, None,
                      device, config.amp)
    size = (config.batch_size, 3, config.resolution, config.resolution)
    if method.views == 2:
        views = torch.randint(0, 256, (config.batch_size, 2, *size[1:]), dtype=torch.uint8)
        views = views.to(device)
        if config.moco_augment_on == "device":  # the colour steps are part of the step
            sigma = blur_sigma(config.resolution)
            params = torch.stack([draw_params(sigma) for _ in range(2 * config.batch_size)])
            views = (views, params.view(config.batch_size, 2, -1).to(device))
        batch = (views, None, None, [""] * config.batch_size)
    else:
        batch = (torch.randint(0, 256, size, dtype=torch.uint8, device=device),
                 torch.randint(0, 10, (config.batch_size,), device=device), None,
                 [""] * config.batch_size)
    return timed_rate(lambda: trainer.train_step(batch), config.batch_size, device)


def pretrain_rows(args: argparse.Namespace, pool: str, device: torch.device) -> list[list]:
    rows, by_res = [], {}
    archs = {"supervised": args.supervised_arch, "moco": args.moco_arch,
             "moco-device": args.moco_arch}
    for mode in args.modes:
        arch = archs[mode]
        for res in args.resolutions:
            config = cp.build_config(cp.PretrainConfig, "paper", mode=mode.split("-")[0],
                                     arch=arch, resolution=res, epochs=args.epochs,
                                     batch_size=args.batch_size, workers=args.workers,
                                     device=str(device), compile=args.compile,
                                     moco_augment_on="device" if mode.endswith("-device")
                                     else "workers")
            out = Path(args.out) / "runs" / f"pretrain-{mode}-{res}"
            peak_reset(device)
            cp.pretrain([pool], out, config, resume=True)
            tool, memory = line_rates(out, "images_per_s"), peak_gib(device)
            bare = bare_pretrain_rate(config, device)
            by_res[(mode, res)] = tool
            rows.append(shown([f"pretrain {mode} {arch} {res}px", f"{tool:,.0f}",
                               f"{bare:,.0f}", f"{tool / bare:.2f}", ">= 0.9", memory]))
        low, high = min(args.resolutions), max(args.resolutions)
        if low != high:
            ratio = by_res[(mode, low)] / by_res[(mode, high)]
            rows.append(shown([f"pretrain {mode} {low} vs {high} px (tool)", "", "",
                               f"{ratio:.2f}", ">= 3.5", ""]))
    return rows


# -- scoring, fine-tuning, downstream -----------------------------------------------------

def score_rows(args: argparse.Namespace, pool: str, target: str, device: torch.device
               ) -> list[list]:
    weights = Path(args.out) / f"{args.score_arch}.pt"
    torch.save(build_resnet(args.score_arch).state_dict(), weights)  # random: speed only
    out = Path(args.out) / "runs" / "score"
    config = cp.build_config(cp.SelectConfig, "paper", method="knn",
                             features=f"checkpoint:{weights}", fraction=0.1,
                             filter_resolution=args.score_resolution, device=str(device),
                             workers=args.workers, batch_size=args.batch_size,
                             cache_dir=str(out / "cache"))
    peak_reset(device)
    cp.select([pool], target, out, config)
    memory = peak_gib(device)
    shards = [json.loads(p.read_text()) for p in (out / "cache").glob("embeddings-*/shard-*.json")]
    tool = sum(s["rows"] for s in shards) / sum(s["seconds"] for s in shards)
    model = prepare_model(build_resnet(args.score_arch), device).eval()
    images = torch.randn(args.batch_size, 3, args.score_resolution, args.score_resolution,
                         device=device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def forward() -> None:
        with autocast(device, True):
            model(images)
    bare = timed_rate(forward, args.batch_size, device)
    rows = [shown([f"score {args.score_arch} {args.score_resolution}px from JPEG",
                   f"{tool:,.0f}", f"{bare:,.0f}", f"{tool / bare:.2f}", ">= 0.8", memory]),
            shown([f"  -> 1.28 M images: {1.28e6 / tool / 3600:.2f} h", "", "", "", "", ""])]
    paths = sorted(str(p) for p in Path(pool).rglob("*.jpg"))[:args.decode_images]
    with torch.inference_mode():  # where the input's time goes (bench/decode_path.py)
        stages = decode_rows(paths, resolution=args.score_resolution,
                             batch_size=args.batch_size, workers=args.workers, device=device)
    return rows + [shown([f"  input: {stage}", f"{rate:,.0f}", "", "", "", ""])
                   for stage, rate in stages]


def finetune_rows(args: argparse.Namespace, target: str, device: torch.device) -> list[list]:
    out = Path(args.out) / "runs" / "finetune"
    config = cp.build_config(cp.FinetuneConfig, "paper", arch=args.supervised_arch,
                             resolution=args.finetune_resolution,
                             epochs=args.epochs, batch_size=args.batch_size,
                             workers=args.workers, device=str(device), compile=args.compile)
    peak_reset(device)
    cp.finetune(target, out, config, resume=True)
    return [shown([f"finetune {args.supervised_arch} {config.resolution}px",
                   f"{line_rates(out, 'images_per_s'):,.0f}", "", "", "", peak_gib(device)])]


def downstream_rows(args: argparse.Namespace, device: torch.device) -> list[list]:
    """Detection trains by iterations; segmentation (PSANet's recipe) by epochs of the VOC
    set, as many as make about ``--iterations`` steps."""
    voc = Path(args.out) / "voc"
    if not (voc / "ImageSets").is_dir():
        make_voc(voc, train=args.voc_images, test=8, size=args.voc_size)
    rows = []
    detect_config = cp.build_config(DetectConfig, args.downstream_preset, iterations=args.iterations,
                                    lr_steps=(), log_every=max(args.iterations // 5, 1),
                                    workers=args.workers, device=str(device),
                                    # the precise-BN pass run, not timed: a few batches
                                    precise_bn=max(args.iterations // 10, 1))
    segment_config = cp.build_config(SegmentConfig, args.downstream_preset, workers=args.workers,
                                     device=str(device), epochs=max(2, -(-args.iterations * 16
                                                                        // args.voc_images)))
    for name, command, config in (("detect", cp.detect, detect_config),
                                  ("segment", cp.segment, segment_config)):
        out = Path(args.out) / "runs" / name
        peak_reset(device)
        command(str(voc), out, config, resume=True)
        rate = line_rates(out, "iterations_per_s")  # both write a line per few iterations
        rows.append(shown([f"{name} ({args.downstream_preset} preset, batch {config.batch_size})",
                           f"{rate:,.2f} it/s", "", "", "", peak_gib(device)]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/condpretrain-gpu")
    parser.add_argument("--data", default=None,
                        help="where the synthetic pool and target go (default OUT/data); a "
                             "second run with other flags reuses them")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pool-images", type=int, default=20000)
    parser.add_argument("--target-images", type=int, default=500, help="target train images")
    parser.add_argument("--resolutions", default="224,112")
    parser.add_argument("--modes", default="supervised,moco,moco-device",
                        help="pre-training modes timed (moco-device: --moco-augment-on device)")
    parser.add_argument("--supervised-arch", default="resnet34")
    parser.add_argument("--moco-arch", default="resnet50")
    parser.add_argument("--score-arch", default="resnet18")
    parser.add_argument("--score-resolution", type=int, default=224)
    parser.add_argument("--decode-images", type=int, default=4096,
                        help="pool JPEGs the input-path breakdown reads (bench/decode_path.py)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3, help="the first is warm-up")
    parser.add_argument("--iterations", type=int, default=200, help="detect/segment")
    parser.add_argument("--voc-images", type=int, default=64)
    parser.add_argument("--voc-size", type=int, default=480)
    parser.add_argument("--downstream-preset", default="paper",
                        help="detect/segment preset (the paper's recipes; quick for a CPU smoke)")
    parser.add_argument("--finetune-resolution", type=int, default=224)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--compile", action="store_true", help="pretrain/finetune --compile")
    parser.add_argument("--only", default="score,pretrain,finetune,downstream",
                        help="stages, in this order (score first: it is the quickest)")
    args = parser.parse_args()
    args.resolutions = [int(r) for r in args.resolutions.split(",")]
    args.modes = args.modes.split(",")
    device = resolve_device(args.device)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = Path(args.data or Path(args.out) / "data")
    made = make(data, args.pool_images, 100, args.target_images,
                max(args.target_images // 5, 10), 10,
                workers=max(args.workers, 1))
    pool, target = str(data / "pool"), str(data / "target")
    stages = {"pretrain": lambda: pretrain_rows(args, pool, device),
              "score": lambda: score_rows(args, pool, target, device),
              "finetune": lambda: finetune_rows(args, target, device),
              "downstream": lambda: downstream_rows(args, device)}
    rows = [row for name in args.only.split(",") for row in stages[name]()]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"\ndevice: {name}; torch {torch.__version__}; pool {made['files']} JPEGs "
          f"({made['mean_kb']} KB mean); batch {args.batch_size}; workers {args.workers}; "
          f"compile {args.compile}; {time.perf_counter() - started:.0f} s in all")
    print_table("Throughput, medians (tool = the command's own data path; bare = the same "
                "model on device-resident random tensors)",
                ["stage", "tool (img/s)", "bare (img/s)", "tool / bare", "goal",
                 "peak GPU GiB"], rows)


if __name__ == "__main__":
    main()
