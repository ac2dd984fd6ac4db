"""Indicators (TA-Lib, `ta` fallback), smart-money features, regimes, signals and the analysis report.

Heavy libraries (pandas, numpy, talib, ta) are imported by these modules, which the server imports
only when an analysis tool runs.
"""
