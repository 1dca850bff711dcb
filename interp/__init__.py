"""interp: automated interpretability of language models at cluster scale.

The library. It never imports hydra, submitit, ``launch`` or ``slurm``, and nothing
here runs at import time.
"""

__version__ = "0.1.0"
