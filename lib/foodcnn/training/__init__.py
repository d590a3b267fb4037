"""Training: the run loop, epochs, data streams, frozen-backbone features, checkpoints, machine helpers."""
