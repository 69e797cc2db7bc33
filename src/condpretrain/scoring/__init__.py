"""Scoring methods: each fits on the target and scores every pool image.

Importing this package registers every built-in method (see :data:`SCORERS`).
"""

from condpretrain.scoring import clustering, density_ratio, domain_classifier, entropy, knn, random  # noqa: F401
from condpretrain.scoring.base import SCORERS, Scorer, create_scorer, register_scorer
from condpretrain.scoring.context import ScoringContext

__all__ = ["SCORERS", "Scorer", "ScoringContext", "create_scorer", "register_scorer"]
