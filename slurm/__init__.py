"""The cluster edge: executors (submitit local / SLURM), array submission, signals.

Only this package and ``launch/`` know about submitit, signals and job arrays; the
library in ``interp/`` sees a ``should_stop()`` callable and nothing else.
"""
