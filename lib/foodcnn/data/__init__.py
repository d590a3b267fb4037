"""Data: the Food-101 layout, reading images, class subsets and splits, transforms, the synthetic set, checks."""
