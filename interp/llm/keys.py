"""API keys are never put in a config: ``llm.api_key_env`` names the variable holding one.

Shared by the ``llm`` config's check and the command line's pre-Hydra check (a pasted
key must be refused before Hydra writes the command line into the run folder).
"""

from __future__ import annotations

KEY_PREFIXES = ("sk-", "sk_", "gsk_", "hf_", "xai-", "pk_", "rk_", "ghp_", "gho_", "glpat-",
                "github_pat_", "AIza", "nvapi-", "pplx-", "r8_", "fw_")  # fmt: skip
"""How API keys of common providers start (OpenAI, Stripe-style, Groq, Hugging Face, xAI,
GitHub, GitLab, Google, NVIDIA, Perplexity, Replicate, Fireworks)."""


API_KEY_ENV_ERROR = (
    "llm.api_key_env must be the NAME of an environment variable (e.g. OPENROUTER_API_KEY), "
    "never the key itself"
)


def is_variable_name(value: str) -> bool:
    """Whether ``value`` can be an environment variable's name and does not look like a
    pasted key: an identifier, no provider key prefix, and not a long mix of lower-case
    letters and digits (names are conventionally UPPER_CASE)."""
    if not value.isidentifier() or value.startswith(KEY_PREFIXES):
        return False
    mixed = any(c.islower() for c in value) and sum(c.isdigit() for c in value) >= 4
    return not (mixed and len(value) >= 20)
