"""Scoring methods: each fits on the target and scores every pool image.

Importing this package registers every built-in method (see :data:`SCORERS`).
"""

from condpretrain.scoring import clustering, domain_classifier, entropy, random  # noqa: F401
from condpretrain.scoring.base import SCORERS, Scorer, ScoringContext, create_scorer

__all__ = ["SCORERS", "Scorer", "ScoringContext", "create_scorer"]
