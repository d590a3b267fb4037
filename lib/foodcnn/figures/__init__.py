"""Figures: every picture of a run or of the study, and the probes (hooks, Grad-CAM) they draw from."""
