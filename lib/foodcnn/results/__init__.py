"""Results: run directories, metrics, statistics, the reports' claims and the study's tables."""
