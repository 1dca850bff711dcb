"""Gated SAE (Rajamanoharan et al. 2024): spec. Its config part is relu's L1 penalty;
the class is :class:`interp.sae.gated.GatedSAE`."""

from __future__ import annotations

from interp.sae.spec import ArchitectureSpec
from interp.sae.specs._shared import l1_tag
from interp.sae.specs.relu import L1Config

SPEC = ArchitectureSpec(
    name="gated",
    config=L1Config,
    cls="interp.sae.gated:GatedSAE",
    sparsity_tag=l1_tag,
    saelens="gated",
    saelens_bias="b_gate",
    saelens_tensors=("b_mag", "r_mag"),
    norm_scaled=("b_mag",),
)
