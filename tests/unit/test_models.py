from __future__ import annotations

import pytest
import torch

from interp.config import ModelConfig
from interp.models import (
    ModelNotFoundError,
    decoder_layers,
    hidden_size,
    load_causal_lm,
    load_subject,
    resolve_model,
)
from interp.models.provision import embedding_model_path

TINY = "tiny-random-llama"


def test_unknown_model_error_says_what_to_use() -> None:
    with pytest.raises(ModelNotFoundError, match="smollm2-135m"):
        resolve_model("no-such-model")


def test_hidden_sizes_without_loading() -> None:
    assert hidden_size("smollm2-135m") == 576
    assert hidden_size(resolve_model(TINY)) == 256  # read from the folder's config.json


def test_subject_model_stops_at_the_hookpoint_and_matches_the_full_model() -> None:
    subject = load_subject(ModelConfig(name=TINY, dtype="float32", device="cpu"), layer=1)
    assert len(decoder_layers(subject.model)) == 2
    full = load_causal_lm(TINY, "float32", "cpu")
    ids = torch.randint(0, 1000, (2, 16))
    with torch.inference_mode():
        want = full(input_ids=ids, output_hidden_states=True).hidden_states[2]
    got = subject.hidden(ids)
    assert got.shape == (2, 16, 256) and got.dtype == torch.float32
    torch.testing.assert_close(got, want)


def test_subject_model_refuses_a_layer_it_does_not_have() -> None:
    with pytest.raises(ValueError, match="layers 0..3"):
        load_subject(ModelConfig(name=TINY, dtype="float32", device="cpu"), layer=9)


def test_embedding_model_is_offline() -> None:
    path = embedding_model_path()
    assert path.endswith("model")
