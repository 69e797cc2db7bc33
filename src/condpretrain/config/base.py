"""What every command's config shares: presets, the one validation, cross-field rules."""

from __future__ import annotations

from typing import Any, ClassVar

from condpretrain.config.options import validate

# The presets every config knows: ``paper`` is the dataclass defaults themselves;
# ``small`` converges on 16-32 px images on a CPU (the demo's); ``quick`` only smoke-tests.
PRESET_NAMES = ("paper", "small", "quick")


class Config:
    """Mixin of the config dataclasses. ``PRESETS[name]`` holds the values a preset
    changes; the field declarations hold everything else about an option."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}}

    def validate(self) -> None:
        """Every field against its declaration, then the rules that tie fields together."""
        validate(self)
        self.check()

    def check(self) -> None:
        """Rules between fields (override); errors name the flags."""
