"""Orchestration: the command line, batches of notebooks (papermill, Ray) and rendering (nbconvert, Chromium)."""
