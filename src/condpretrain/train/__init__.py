"""Training: one loop (loop.py) and the tasks it trains (classifier, supervised, MoCo)."""
