"""Characters drawn with the fonts that ship in matplotlib (``mpl-data/fonts/ttf``):
DejaVu Sans/Serif/Mono with bold and oblique, STIX, Computer Modern. Each image is one
character in a random font, scale, rotation, offset and contrasting colour pair.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from condpretrain.errors import CondPretrainError

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


def digit_classes() -> dict[str, str]:
    """Class folder name -> character, for the ten digits."""
    return {f"digit-{c}": c for c in string.digits}


def character_classes() -> dict[str, str]:
    """Class folder name -> character, for everything but digits. Names stay distinct on
    case-insensitive disks."""
    classes = {f"upper-{c}": c for c in string.ascii_uppercase}
    classes.update({f"lower-{c}": c for c in string.ascii_lowercase})
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


SCAN_SIDE = 8  # scikit-learn's digits are 8x8 scans


def render_scan(char: str, fonts: list[ImageFont.FreeTypeFont], size: int,
                rng: np.random.Generator) -> Image.Image:
    """A character as the target's digits look: light on black, drawn at 8x8 and
    upscaled (the blur of a coarse scan)."""
    small = render_char(char, fonts, SCAN_SIDE, rng, colours=((0, 0, 0), (255, 255, 255)))
    return small.resize((size, size), Image.Resampling.BILINEAR)


def render_char(char: str, fonts: list[ImageFont.FreeTypeFont], size: int,
                rng: np.random.Generator,
                colours: tuple[tuple[int, ...], tuple[int, ...]] | None = None) -> Image.Image:
    """One character: random font, scale, rotation, offset and (unless given) a random
    contrasting colour pair."""
    canvas = max(size * 2, 32)  # drawn large, then downsized: smooth edges like a photo's
    background, foreground = colours or _colours(rng)
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


