"""condpretrain: efficient conditional pre-training for transfer learning.

Score a large source pool for relevance to a target dataset, select a budget of the
best images, pre-train on them (optionally at reduced resolution) and fine-tune on the
target. See :mod:`condpretrain.api` for the Python entry points, which mirror the CLI.
"""

from __future__ import annotations

from condpretrain.api import *  # noqa: E402,F401,F403
from condpretrain.api import __all__  # noqa: E402,F401
from condpretrain.version import __version__  # noqa: F401
