"""foodcnn: a reproducible, notebook-driven study of convolutional networks on a 20-class subset of Food-101."""

__version__ = "0.1.0"
