"""The built-in LLM backends' specs, one light module each (see :mod:`interp.llm.spec`);
their clients live in heavier modules imported only when a client is built."""
