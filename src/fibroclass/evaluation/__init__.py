"""Evaluation on arrays/DataFrames (no torch): metrics, calibration, classical baseline, plots.

`metrics`, `calibration` and `baseline` are numpy/scipy/scikit-learn; `plots` adds matplotlib.
"""
