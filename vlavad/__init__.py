"""VLAVAD: vision-language-model-assisted unsupervised video anomaly detection.

Importing this package is cheap: no model is loaded and torch is imported only by the stages
that need it.
"""

__version__ = "0.1.0"
