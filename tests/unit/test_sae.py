"""TopK SAE: kernel parity with a dense computation, decoder constraints, sparsify I/O."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from interp.sae import EncoderOutput, ForwardOutput, TopKSAE, load_sae, save_sae
from interp_kernels import topk_decode, topk_encode

pytestmark = pytest.mark.unit

SPARSIFY_KEYS = {
    "activation", "expansion_factor", "normalize_decoder", "num_latents", "k",
    "multi_topk", "skip_connection", "transcode", "d_in",
}  # fmt: skip


def dense_encode(x, W, b, b_dec, k):
    """The naive computation: dense pre-activations, topk, scattered into [N, M]."""
    pre = F.relu((x - b_dec) @ W.T + b)
    vals, idx = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, idx, vals)


def leaves(*shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_() for s in shapes]


@pytest.mark.parametrize(("n", "d", "m", "k"), [(37, 23, 61, 7), (5, 3, 11, 11), (64, 16, 40, 1)])
def test_encode_matches_dense_values_and_gradients(n, d, m, k):
    x, W, b, b_dec = leaves((n, d), (m, d), (m,), (d,))
    with torch.no_grad():
        b[: m // 3] -= 4.0  # many negative pre-activations: rows with < k positive values
    acts, idx = topk_encode(x, W, b, b_dec, k)
    z = torch.zeros(n, m, dtype=x.dtype).scatter(-1, idx, acts)
    z_ref = dense_encode(x, W, b, b_dec, k)
    torch.testing.assert_close(z, z_ref, rtol=0, atol=1e-12)
    assert (acts >= 0).all() and idx.dtype == torch.int64

    weight = torch.randn(n, m, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((z * weight).sum(), (x, W, b, b_dec))
    grads_ref = torch.autograd.grad((z_ref * weight).sum(), (x, W, b, b_dec))
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("n", "d", "m", "k"), [(37, 23, 61, 7), (1, 5, 9, 9)])
def test_decode_matches_dense_values_and_gradients(n, d, m, k):
    acts, W_dec = leaves((n, k), (m, d), seed=2)
    idx = torch.stack(
        [torch.randperm(m, generator=torch.Generator().manual_seed(i))[:k] for i in range(n)]
    )
    out = topk_decode(idx, acts, W_dec)
    out_ref = torch.zeros(n, m, dtype=acts.dtype).scatter(-1, idx, acts) @ W_dec
    torch.testing.assert_close(out, out_ref, rtol=1e-12, atol=1e-12)
    weight = torch.randn(n, d, dtype=acts.dtype)
    grads = torch.autograd.grad((out * weight).sum(), (acts, W_dec))
    grads_ref = torch.autograd.grad((out_ref * weight).sum(), (acts, W_dec))
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)


def test_backend_is_an_explicit_choice():
    x, W, b, b_dec = leaves((4, 3), (6, 3), (6,), (3,))
    with pytest.raises(ValueError, match="unknown kernel backend 'cuBLAS'"):
        topk_encode(x, W, b, b_dec, 2, backend="cuBLAS")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k=7"):
        topk_encode(x, W, b, b_dec, 7)


def make_sae(d_in=24, num_latents=72, k=5, seed=0) -> TopKSAE:
    return TopKSAE(d_in, num_latents, k, generator=torch.Generator().manual_seed(seed))


def test_sae_forward_is_encode_then_decode():
    sae = make_sae()
    x = torch.randn(33, 24)
    enc = sae.encode(x)
    assert isinstance(enc, EncoderOutput) and enc.top_acts.shape == (33, 5)
    out = sae(x)
    assert isinstance(out, ForwardOutput)
    torch.testing.assert_close(out.sae_out, sae.decode(*enc))
    dense = dense_encode(x, sae.encoder.weight, sae.encoder.bias, sae.b_dec, 5)
    torch.testing.assert_close(out.sae_out, dense @ sae.W_dec + sae.b_dec)
    fvu = (x - out.sae_out).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    torch.testing.assert_close(out.fvu, fvu)
    acts_btk, idx_btk = sae.encode(x.reshape(3, 11, 24))  # leading dims are kept
    assert acts_btk.shape == (3, 11, 5) and torch.equal(idx_btk.reshape(33, 5), enc.top_idx)
    flat = sae(x.reshape(3, 11, 24))  # forward flattens: FVU over all 33 vectors
    assert flat.sae_out.shape == (33, 24) and torch.equal(flat.fvu, out.fvu)


def test_init_is_tied_unit_norm_seeded_and_leaves_global_rng_alone():
    before = torch.random.get_rng_state()
    sae, again = make_sae(seed=3), make_sae(seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(sae.W_dec, again.W_dec)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(72))
    cos = F.cosine_similarity(sae.W_dec, sae.encoder.weight, dim=1)
    torch.testing.assert_close(cos, torch.ones(72))
    assert not sae.encoder.bias.any() and not sae.b_dec.any()


def test_gradient_projection_removes_the_parallel_component():
    sae = make_sae()
    sae(torch.randn(50, 24)).fvu.backward()
    grad = sae.W_dec.grad.clone()
    sae.remove_gradient_parallel_to_decoder_directions()
    parallel = (sae.W_dec.grad * sae.W_dec).sum(dim=1)
    torch.testing.assert_close(parallel, torch.zeros(72), atol=1e-7, rtol=0)
    # Only the parallel part went: the difference is along the decoder rows.
    removed = grad - sae.W_dec.grad
    torch.testing.assert_close(
        removed, (grad * sae.W_dec).sum(1, keepdim=True) * sae.W_dec, atol=1e-7, rtol=0
    )


def test_decoder_rows_stay_unit_norm_after_a_step():
    sae = make_sae()
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    sae(torch.randn(50, 24) * 3).fvu.backward()
    sae.remove_gradient_parallel_to_decoder_directions()
    w_before = sae.W_dec.detach().clone()
    opt.step()
    sae.set_decoder_norm_to_unit_norm()
    assert not torch.equal(sae.W_dec, w_before)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(72))


def test_invalid_shapes_raise_value_errors():
    with pytest.raises(ValueError, match="k=9"):
        TopKSAE(4, 8, 9)
    with pytest.raises(ValueError, match="d_in=24"):
        make_sae().encode(torch.randn(3, 7))


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    sae = make_sae(d_in=24, num_latents=53, k=4)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.encoder.bias.normal_()
    save_sae(sae, tmp_path / "layers.3")
    loaded = load_sae(tmp_path / "layers.3")
    assert (loaded.d_in, loaded.num_latents, loaded.k) == (24, 53, 4)
    x = torch.randn(20, 24)
    a, b = sae(x), loaded(x)
    assert torch.equal(a.sae_out, b.sae_out) and torch.equal(a.top_idx, b.top_idx)
    assert not list(tmp_path.glob("*.tmp-*"))  # built under a temporary name


def test_saved_layout_is_sparsify_exactly(tmp_path):
    save_sae(make_sae(d_in=24, num_latents=96, k=5), tmp_path / "sae")
    assert sorted(p.name for p in (tmp_path / "sae").iterdir()) == ["cfg.json", "sae.safetensors"]
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert set(cfg) == SPARSIFY_KEYS
    assert cfg == {
        "activation": "topk", "expansion_factor": 4, "normalize_decoder": True,
        "num_latents": 96, "k": 5, "multi_topk": False, "skip_connection": False,
        "transcode": False, "d_in": 24,
    }  # fmt: skip
    tensors = load_file(str(tmp_path / "sae" / "sae.safetensors"))
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    assert shapes == {"encoder.weight": (96, 24), "encoder.bias": (96,), "W_dec": (96, 24),
                      "b_dec": (24,)}  # fmt: skip
    assert all(t.dtype == torch.float32 for t in tensors.values())


def test_loads_a_sparsify_written_folder(tmp_path):
    """sparsify writes num_latents=0 (= d_in * expansion_factor), compact JSON, maybe bf16."""
    d_in, ef, k = 8, 4, 3
    g = torch.Generator().manual_seed(5)
    tensors = {
        "encoder.weight": torch.randn(d_in * ef, d_in, generator=g),
        "encoder.bias": torch.randn(d_in * ef, generator=g),
        "W_dec": F.normalize(torch.randn(d_in * ef, d_in, generator=g), dim=1),
        "b_dec": torch.randn(d_in, generator=g),
    }
    folder = tmp_path / "layers.6"
    folder.mkdir()
    save_file({n: t.bfloat16() for n, t in tensors.items()}, str(folder / "sae.safetensors"),
              metadata={"format": "pt"})  # fmt: skip
    cfg = {"activation": "topk", "expansion_factor": ef, "normalize_decoder": True,
           "num_latents": 0, "k": k, "multi_topk": False, "skip_connection": False,
           "transcode": False, "d_in": d_in}  # fmt: skip
    (folder / "cfg.json").write_text(json.dumps(cfg))
    sae = load_sae(folder)
    assert (sae.num_latents, sae.k, sae.W_dec.dtype) == (32, 3, torch.float32)
    x = torch.randn(6, d_in)
    expected = tensors_bf16_forward(tensors, x, k)
    torch.testing.assert_close(sae(x).sae_out, expected)


def tensors_bf16_forward(tensors, x, k):
    t = {n: v.bfloat16().float() for n, v in tensors.items()}
    z = dense_encode(x, t["encoder.weight"], t["encoder.bias"], t["b_dec"], k)
    return z @ t["W_dec"] + t["b_dec"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"activation": "groupmax"}, "activation='groupmax' cannot be loaded"),
        ({"skip_connection": True}, "skip_connection=true"),
    ],
)
def test_load_refuses_unsupported_sparsify_variants(tmp_path, change, message):
    save_sae(make_sae(), tmp_path / "sae")
    cfg_file = tmp_path / "sae" / "cfg.json"
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), **change}))
    with pytest.raises(ValueError, match=message):
        load_sae(tmp_path / "sae")
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        load_sae(tmp_path / "missing")
