"""fibroclass: disease score and drug rescue of STAT4 GoF fibroblast disorganization from plates."""

__version__ = "0.1.0"
