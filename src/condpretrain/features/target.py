"""``target``: the classifier trained on the target's labels (the default source).

Its penultimate features are the ones the paper clusters. The classifier is the one
(inverse) active learning also uses, trained once and cached by the scoring context.
"""

from __future__ import annotations

from torch import nn

from condpretrain.data.sources import Target
from condpretrain.errors import CondPretrainError
from condpretrain.features.base import FEATURES, FeatureContext, FeatureSource


@FEATURES.register
class TargetFeatures(FeatureSource):
    name = "target"
    summary = "the target-trained classifier (trained on the target's labels, cached)"
    order = 0

    def network(self, target: Target | None, context: FeatureContext) -> nn.Module:
        if target is None or not target.labelled:
            name = target.name if target is not None else "(none)"
            raise CondPretrainError(
                f"target {name!r} is unlabelled: give --features-from CKPT (e.g. a "
                "MoCo-v2 backbone) so clustering has features without a target-trained model"
            )
        model = context.target_classifier(target)
        context.models_used["features"] = {"from": "target_model"}
        return model
