"""Leaves: parameters, models, data, transforms, statistics, figures, run directories, atomic files.

Each module owns one concern and imports nothing from the layers above (engine, views, orchestration).
"""
