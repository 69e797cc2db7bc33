"""The device's share of ``--moco-augment-on device``: ``photometric.apply`` (jitter in each
view's own order, greyscale, blur) on a batch of views, against a floor: every step run
once over the whole batch with no per-view choice (what the work would cost if all views
shared one order).

    python bench/photometric.py                                   # CPU, one thread
    python bench/photometric.py --device cuda --views 512 --resolution 224   # a GPU

Prints the median ms per batch of each and their ratio, and ms per view.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _util import median_seconds, print_table  # noqa: E402

from condpretrain.train import photometric as ph  # noqa: E402


def floor(images: torch.Tensor, params: torch.Tensor, kernel: int) -> torch.Tensor:
    factor = params[:, ph.BRIGHTNESS].view(-1, 1, 1, 1)
    grey = ph._grey(images)
    images = ph._blend(images, torch.zeros_like(grey), factor)
    images = ph._blend(images, ph._grey(images).mean(dim=(1, 2, 3), keepdim=True), factor)
    images = ph._blend(images, ph._grey(images), factor)
    images = ph._hue(images, params[:, ph.HUE].view(-1, 1, 1, 1))
    images = ph._grey(images).expand_as(images)
    return ph._blur(images, params[:, ph.SIGMA], kernel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--views", type=int, default=64, help="views per batch (2 per image)")
    parser.add_argument("--resolution", type=int, default=112)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    images = torch.rand(args.views, 3, args.resolution, args.resolution, device=device)
    sigma = ph.blur_sigma(args.resolution)
    params = torch.stack([ph.draw_params(sigma) for _ in range(args.views)]).to(device)
    kernel = ph.blur_kernel_size(args.resolution)

    def timed(fn) -> float:
        def call() -> None:
            fn(images, params, kernel)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        call()
        return median_seconds(call, args.repeats) * 1000

    with torch.inference_mode():
        applied, lower = timed(ph.apply), timed(floor)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; {args.views} views at "
          f"{args.resolution} px; threads {args.threads}")
    print_table("Colour steps on the device, median ms per batch",
                ["", "ms / batch", "ms / view"],
                [["apply (each view its own order)", applied, applied / args.views],
                 ["floor (every step once, one order)", lower, lower / args.views],
                 ["apply / floor", f"{applied / lower:.2f}x", ""]])


if __name__ == "__main__":
    main()
