"""A target that is a mix of other targets of the file: one subset serving them all.

    targets: {cars: /data/cars, birds: /data/birds,
              cars+birds: {mix: {cars: 0.5, birds: 0.5}}}

``cars+birds`` selects one subset from its parts' saved scores (the merge of
:mod:`condpretrain.multi_target`, each part's share of the budget as given), pre-trains
on it once, and fine-tunes on each part. It has no folder, no options and no baselines of
its own: its rows are its parts' (``results.csv``'s ``subset_for`` names the mix).
Checked here, each error one line naming the key.
"""

from __future__ import annotations

from typing import Any

from condpretrain.errors import CondPretrainError
from condpretrain.multi_target import check_mix

MIX = "mix"
# The merge takes each target's shares top-first (see multi_target).
MIX_POLICY = "top"


def is_mix(spec: Any) -> bool:
    return isinstance(spec, dict) and MIX in spec


def parse_mix_spec(spec: dict[str, Any], key: str) -> dict[str, dict[str, float]]:
    """``{mix: {part: share, ...}}``, the shares numbers; nothing else may be set."""
    for name in spec:
        if name != MIX:
            raise CondPretrainError(f"{key}.{name}: a mix of targets has only '{MIX}' (it "
                                    "fine-tunes as its parts, with their options)")
    shares = spec[MIX]
    if not isinstance(shares, dict):
        raise CondPretrainError(f"{key}.{MIX}: expected a mapping of target: share, "
                                f"got {shares!r}")
    parsed = {}
    for part, share in shares.items():
        if isinstance(share, bool) or not isinstance(share, (int, float)):
            raise CondPretrainError(f"{key}.{MIX}.{part}: expected a number, got {share!r}")
        parsed[str(part)] = float(share)
    return {MIX: parsed}


def check_mixes(targets: dict[str, Any], where: str) -> None:
    """Each mix names two or more targets of the file, none a mix itself, with shares
    in (0, 1] summing to 1."""
    for name, spec in targets.items():
        if not is_mix(spec):
            continue
        key = f"{where}: targets.{name}.{MIX}"
        shares = spec[MIX]
        if len(shares) < 2:
            raise CondPretrainError(f"{key}: one subset serves several targets; name two "
                                    f"or more, got {len(shares)}")
        for part in shares:
            if part not in targets:
                raise CondPretrainError(f"{key}.{part}: not a target of the file (known: "
                                        f"{', '.join(t for t in targets if t != name)})")
            if is_mix(targets[part]):
                raise CondPretrainError(f"{key}.{part}: a mix of targets, not a target; "
                                        "name the targets it mixes")
        try:
            check_mix(list(shares.values()), len(shares))
        except CondPretrainError as exc:
            raise CondPretrainError(f"{key}: {str(exc).removeprefix('--mix: ')}") from None


def check_mix_policy(targets: dict[str, Any], policy: str, where: str) -> None:
    """A mix needs the ``top`` policy, which its merge uses."""
    mixes = [name for name, spec in targets.items() if is_mix(spec)]
    if mixes and policy != MIX_POLICY:
        raise CondPretrainError(f"{where}: select.policy: targets.{mixes[0]} takes each "
                                f"target's share top-first, so it needs '{MIX_POLICY}', "
                                f"got {policy!r}")


__all__ = ["MIX", "is_mix", "parse_mix_spec", "check_mixes", "check_mix_policy"]
