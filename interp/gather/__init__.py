"""The gather's library: check a sweep folder is committed, then write its table,
summary and exports (the ``gather`` stage, :mod:`interp.stages.gather`, is the wiring).

- :mod:`interp.gather.complete`: which array tasks of which points are not committed,
  and what to do about them; the fingerprint of what is committed.
- :mod:`interp.gather.points`: each point's columns and record files, as plain values.
- :mod:`interp.gather.outputs`: table, summary, exports and the ``AFTER_TABLE`` hooks,
  from those plain values.
- :mod:`interp.gather.sweep`: the whole gather of one folder, its failure mark and commit.
"""
