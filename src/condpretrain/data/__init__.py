"""Where images come from (pools, targets, manifests) and how they are decoded."""
