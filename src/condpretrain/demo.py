"""The demo: a small but real Table-2 experiment on data that ships with our dependencies.

* Target: scikit-learn's handwritten digits (1,797 scans of 8x8 px, 10 classes),
  upscaled to ``image_size`` and written as ``target/{train,test}/<digit>/``.
* Pool: characters rendered with the fonts in matplotlib's ``mpl-data/fonts/ttf``
  (DejaVu Sans/Serif/Mono with bold and oblique, STIX, Computer Modern): Latin letters,
  digits, symbols and Greek letters in random sizes, rotations and colours, written as
  ``pool/<class>/``. Digits are about a tenth of it, so a good selection method should
  pick them first and beat random selection.

Nothing is downloaded. The grid is every selection method plus both baselines at two
budgets and two pre-training resolutions, with the ``quick`` preset.
"""

from __future__ import annotations

import os
import string
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFont

from condpretrain import atomic, runlock
from condpretrain.config import PRESET_NAMES, Config, option
from condpretrain.config.load import yaml_loads
from condpretrain.errors import CondPretrainError
from condpretrain.experiment import (
    ExperimentConfig,
    ExperimentResult,
    Steps,
    parse_experiment,
    run,
)
from condpretrain.experiment.schema import parse_fractions
from condpretrain.log import get_logger, progress_bar
from condpretrain.registry import SCORERS
from condpretrain.report import report

if TYPE_CHECKING:  # the report's module loads the plotting libraries: only when it runs
    from condpretrain.report.build import ReportResult

log = get_logger(__name__)

# Fonts that map Unicode code points to the glyphs they name. The Computer Modern
# files use TeX's own encoding outside letters and digits, so they draw only those.
UNICODE_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf", "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
)
ALNUM_FONTS = ("cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmti10.ttf")
SYMBOLS = {
    "plus": "+", "minus": "\u2212", "times": "\u00d7", "divide": "\u00f7", "equals": "=",
    "less": "<", "greater": ">", "percent": "%", "ampersand": "&", "at": "@", "hash": "#",
    "dollar": "$", "question": "?", "exclam": "!", "asterisk": "*", "paren": "(",
    "bracket": "[", "brace": "{", "tilde": "~", "slash": "/", "section": "\u00a7",
    "pilcrow": "\u00b6", "euro": "\u20ac", "infinity": "\u221e", "integral": "\u222b",
    "sum": "\u2211", "sqrt": "\u221a", "arrow": "\u2192",
}
GREEK = {
    "alpha": "\u03b1", "beta": "\u03b2", "gamma": "\u03b3", "delta": "\u03b4",
    "epsilon": "\u03b5", "lambda": "\u03bb", "mu": "\u03bc", "pi": "\u03c0", "sigma": "\u03c3",
    "phi": "\u03c6", "psi": "\u03c8", "omega": "\u03c9", "Delta": "\u0394", "Sigma": "\u03a3",
    "Omega": "\u03a9", "Phi": "\u03a6", "Psi": "\u03a8", "Lambda": "\u039b",
}


def _yaml_mapping(value: Any) -> Any:
    """A section given on the command line as YAML text, e.g. ``--pretrain 'epochs: 5'``."""
    if isinstance(value, str):
        try:
            return yaml_loads(value)
        except yaml.YAMLError:
            pass  # left as text, for the check to refuse naming the flag
    return value


@dataclass
class DemoConfig(Config):
    """Sizes of the demo data and grid; the defaults finish in minutes on a 2-core CPU."""

    image_size: int = option(32, "side of the rendered and target images (px)", low=0,
                             low_open=True)
    pool_per_class: int = option(30, "rendered images per character class (the pool has "
                                 "108 classes, ten of them digits)", low=1)
    target_train_per_class: int = option(30, "digits per class to fine-tune on", low=1)
    target_test_per_class: int = option(20, "digits per class to test on", low=1)
    budgets: list[float] = option(default_factory=lambda: [0.06, 0.12],
                                  help="shares of the pool to select, e.g. 0.06 or 6%",
                                  low=0, high=1, low_open=True, high_open=True,
                                  parse=parse_fractions)
    resolutions: list[int] = option(default_factory=lambda: [32, 16],
                                    help="pre-training resolutions (px)", low=0, low_open=True)
    methods: list[str] = option(default_factory=SCORERS.names, help="selection methods",
                                choices=SCORERS.choices())
    seeds: list[int] = option(default_factory=lambda: [0], help="seeds of the grid's runs")
    seed: int = option(0, "seed of the data generator")
    preset: str = option("quick", "preset of every command's options", choices=PRESET_NAMES)
    select: dict[str, Any] = option(default_factory=lambda: {"dc_epochs": 2, "target_epochs": 4},
                                    help="options of `select`, as YAML", parse=_yaml_mapping,
                                    metavar="YAML")
    pretrain: dict[str, Any] = option(default_factory=lambda: {"epochs": 3},
                                      help="options of `pretrain`, as YAML",
                                      parse=_yaml_mapping, metavar="YAML")
    finetune: dict[str, Any] = option(default_factory=lambda: {"epochs": 3, "lr_step_epochs": 2},
                                      help="options of `finetune`, as YAML",
                                      parse=_yaml_mapping, metavar="YAML")


@dataclass
class DemoResult:
    out_dir: Path
    experiment: ExperimentResult
    report: ReportResult
    seconds: float


def pool_classes() -> dict[str, str]:
    """Class folder name -> character. Names stay distinct on case-insensitive disks."""
    classes = {f"upper-{c}": c for c in string.ascii_uppercase}
    classes.update({f"lower-{c}": c for c in string.ascii_lowercase})
    classes.update({f"digit-{c}": c for c in string.digits})
    classes.update({f"symbol-{name}": c for name, c in SYMBOLS.items()})
    classes.update({f"greek-{name}": c for name, c in GREEK.items()})
    return classes


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def fonts_for(char: str, size: int) -> list[ImageFont.FreeTypeFont]:
    """The bundled fonts that really draw ``char`` (not a blank or a missing-glyph box)."""
    names = UNICODE_FONTS + (ALNUM_FONTS if char in string.ascii_letters + string.digits else ())
    found = []
    for name in names:
        path = font_dir() / name
        if path.is_file():
            font = _font(str(path), size)
            if _draws(font, char):
                found.append(font)
    if not found:
        raise CondPretrainError(f"demo: no bundled matplotlib font draws {char!r}")
    return found


_FONT_CACHE: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}


def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    key = (path, size)
    if key not in _FONT_CACHE:
        _FONT_CACHE[key] = ImageFont.truetype(path, size)
    return _FONT_CACHE[key]


def _draws(font: ImageFont.FreeTypeFont, char: str) -> bool:
    mask = font.getmask(char)
    missing = font.getmask("\ue000")  # a private-use code point: the font's .notdef box
    return mask.getbbox() is not None and (mask.size, bytes(mask)) != (missing.size, bytes(missing))


def render_char(char: str, fonts: list[ImageFont.FreeTypeFont], size: int,
                rng: np.random.Generator) -> Image.Image:
    """One character: random font, scale, rotation, offset and a contrasting colour pair."""
    canvas = size * 2  # drawn large, then downsized: smooth edges like a real photo's
    background, foreground = _colours(rng)
    image = Image.new("RGB", (canvas, canvas), background)
    layer = Image.new("L", (canvas, canvas), 0)
    font = fonts[int(rng.integers(len(fonts)))]
    draw = ImageDraw.Draw(layer)
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
    scale = rng.uniform(0.55, 0.9) * canvas / max(right - left, bottom - top, 1)
    glyph = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(glyph).text((1 - left, 1 - top), char, fill=255, font=font)
    glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
                         Image.Resampling.BILINEAR)
    glyph = glyph.rotate(float(rng.uniform(-20, 20)), resample=Image.Resampling.BILINEAR,
                         expand=True)
    jitter = canvas // 10
    x = (canvas - glyph.width) // 2 + int(rng.integers(-jitter, jitter + 1))
    y = (canvas - glyph.height) // 2 + int(rng.integers(-jitter, jitter + 1))
    layer.paste(glyph, (x, y))
    image.paste(Image.new("RGB", (canvas, canvas), foreground), (0, 0), layer)
    return image.resize((size, size), Image.Resampling.BILINEAR)


def _colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A background and a foreground whose brightness differs clearly; a third are grey,
    as scans are, so colour alone does not give the target away."""
    grey = rng.random() < 0.3
    while True:
        bg, fg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        if grey:
            bg, fg = bg[:1].repeat(3), fg[:1].repeat(3)
        if abs(_luma(bg) - _luma(fg)) > 90:
            return tuple(int(v) for v in bg), tuple(int(v) for v in fg)


def _luma(rgb: np.ndarray) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def write_pool(root: str | Path, per_class: int, size: int = 32, seed: int = 0) -> Path:
    """``root/<class>/<i>.png`` for every character class."""
    root = Path(root)
    classes = pool_classes()
    with progress_bar(len(classes) * per_class, desc="demo pool", unit="img") as bar:
        for index, (name, char) in enumerate(classes.items()):
            rng = np.random.default_rng([seed, index])
            fonts = fonts_for(char, size * 2)
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                render_char(char, fonts, size, rng).save(folder / f"{name}_{i:04d}.png")
            bar.update(per_class)
    return root


def write_digits_target(root: str | Path, train_per_class: int, test_per_class: int,
                        size: int = 32, seed: int = 0) -> Path:
    """scikit-learn's digits as ``root/{train,test}/<digit>/<i>.png``, upscaled to ``size``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = Path(root)
    rng = np.random.default_rng(seed)
    for label in range(10):
        indices = rng.permutation(np.flatnonzero(digits.target == label))
        if len(indices) < train_per_class + test_per_class:
            raise CondPretrainError(
                f"demo: digit {label} has only {len(indices)} images; ask for fewer per class")
        for split, chosen in (("train", indices[:train_per_class]),
                              ("test", indices[train_per_class:train_per_class + test_per_class])):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                pixels = (digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
                image = Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.BILINEAR)
                image.convert("RGB").save(folder / f"digit_{i:04d}.png")
    return root


def demo_data_dirs(data_dir: Path) -> tuple[Path, Path]:
    """Where the demo's pool and target go inside its data folder."""
    return data_dir / "pool", data_dir / "target"


def make_demo_data(data_dir: str | Path, config: DemoConfig) -> tuple[Path, Path]:
    """Write (or reuse, when made with the same settings) the demo pool and target."""
    data_dir = Path(data_dir)
    stamp = data_dir / "made.json"
    settings = {k: getattr(config, k) for k in ("image_size", "pool_per_class",
                                                "target_train_per_class",
                                                "target_test_per_class", "seed")}
    pool, target = demo_data_dirs(data_dir)
    if atomic.read_json(stamp, default=None) == settings:
        return pool, target
    if data_dir.exists() and any(data_dir.iterdir()):
        _clear_demo_data(data_dir)
    write_digits_target(target, config.target_train_per_class, config.target_test_per_class,
                        config.image_size, config.seed)
    write_pool(pool, config.pool_per_class, config.image_size, config.seed)
    atomic.write_json(stamp, settings)  # last: a half-written data folder is never reused
    return pool, target


def _clear_demo_data(data_dir: Path) -> None:
    """Remove images of an earlier demo data folder (only what the generator writes)."""
    for folder in (data_dir / "pool", data_dir / "target"):
        for current, _dirs, files in os.walk(folder, topdown=False):
            for name in files:
                if name.endswith(".png"):
                    os.unlink(os.path.join(current, name))
            if not os.listdir(current):
                os.rmdir(current)
    (data_dir / "made.json").unlink(missing_ok=True)


def _check_same_demo(saved: Path, settings: dict) -> None:
    """Resuming a demo is fine; resuming it with other data or settings would mix results."""
    before = atomic.read_json(saved, default=None)
    if not isinstance(before, dict):
        return
    changed = [k for k in settings if k in before and before[k] != settings[k]]
    if changed:
        raise CondPretrainError(f"--out {saved.parent} holds a demo run with another "
                                f"{changed[0]!r}; choose another --out")


def demo_experiment(pool: Path, target: Path, config: DemoConfig) -> ExperimentConfig:
    """The demo's grid, checked like an experiment file (errors name it ``demo``)."""
    return parse_experiment({
        "name": "demo: digits from rendered characters",
        # Absolute: the experiment.yaml saved in the output folder must work from anywhere.
        "pool": [f"fonts={pool.resolve()}"],
        "targets": {"digits": str(target.resolve())},
        "preset": config.preset,
        "methods": list(config.methods),
        "budgets": list(config.budgets),
        "resolutions": list(config.resolutions),
        "seeds": list(config.seeds),
        "select": dict(config.select),
        "pretrain": dict(config.pretrain),
        "finetune": dict(config.finetune),
    }, where="demo")


def demo(out: str | Path = "condpretrain-demo", config: DemoConfig | None = None,
         steps: Steps | None = None) -> DemoResult:
    """Make the data, run the grid (resumable), write the report."""
    config = config or DemoConfig()
    config.validate()
    out = Path(out)
    started = time.perf_counter()
    # Checked before any image is written: a bad option fails in seconds, not minutes.
    experiment = demo_experiment(*demo_data_dirs(out / "data"), config)
    with runlock.hold(out):  # one demo per folder; the grid's own hold nests in it
        _check_same_demo(out / "demo.json", asdict(config))
        log.info("demo: writing the embedded data under %s", out / "data")
        make_demo_data(out / "data", config)
        atomic.write_json(out / "demo.json", asdict(config))
        result = run(experiment, out, steps)
        written = report(out)
    return DemoResult(out, result, written, time.perf_counter() - started)


__all__ = ["DemoConfig", "DemoResult", "demo", "demo_experiment", "make_demo_data"]
