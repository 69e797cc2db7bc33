"""Feature sources: where the features that clustering compares come from.

Importing this package registers every built-in source (see :data:`FEATURES`).
"""

from condpretrain.features import (  # noqa: F401
    checkpoint,
    classic,
    moco_target,
    npy,
    target,
    timm_source,
)
from condpretrain.features.base import (
    FEATURES,
    FeatureContext,
    FeatureSource,
    feature_extractor,
    feature_source,
)
from condpretrain.features.checkpoint import infer_arch

__all__ = ["FEATURES", "FeatureContext", "FeatureSource", "feature_extractor", "feature_source",
           "infer_arch"]
