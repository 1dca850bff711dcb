"""The built-in architectures' specs and config parts, one light module each (no torch:
``interp.config`` imports them); their classes live in ``interp.sae.<name>``."""
