"""VLAVAD: vision-language-model-assisted unsupervised video anomaly detection.

Importing this package is cheap: no model is loaded and torch is imported only by the stages
that need it.
"""

import os

__version__ = "0.2.0"

# OpenMP threads that wait for work spin on their core by default. When anything else runs on
# the machine (a shared server, the other stages, a second request), the spinning threads fight
# it for the cores: on 2 shared cores the detector ran 15x slower with 2 threads than with 1.
# Waiting passively costs little on an idle machine. It must be set before torch loads OpenMP;
# a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
