"""One latent range through explain and score: the interpret stage's library.

- :mod:`interp.interpret.config`: :class:`InterpretConfig` (the ``interpret`` section).
- :mod:`interp.interpret.work`: one latent's draft through both passes, and failures.
- :mod:`interp.interpret.pipeline`: the range's two passes -> :class:`~interp.records.LatentRecord`.
- :mod:`interp.interpret.summary`: the range's manifest summary from its records.

Nothing here reads a ``RunConfig`` or run folder: :mod:`interp.stages.interpret` wires
them in. Submodules are imported explicitly; the package itself imports nothing.
"""
