"""Sparse autoencoders: architectures, encode/decode, save/load (sparsify layout)."""

from interp.sae.io import load_sae, save_sae
from interp.sae.topk import EncoderOutput, ForwardOutput, TopKSAE

__all__ = ["EncoderOutput", "ForwardOutput", "TopKSAE", "load_sae", "save_sae"]
