"""Engine: one run trained and evaluated (train), frozen-backbone features computed once (features)."""
