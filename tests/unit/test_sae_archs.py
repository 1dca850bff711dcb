"""Every dictionary architecture behind the SparseCoder interface: custom gradients,
training on synthetic sparse data, save/load, BatchTopK export, AuxK, Multi-TopK,
transcoders, config validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from interp.config import SAEConfig, load_run_config
from interp.sae import (
    BatchTopKSAE,
    GatedSAE,
    JumpReLUSAE,
    ReLUSAE,
    TopKSAE,
    build_sae,
    load_sae,
    save_sae,
)
from interp.sae.base import auxk_loss, geometric_median
from interp.sae.jumprelu import JumpReLUFunction, StepFunction
from interp.typed import build

CONF = Path(__file__).resolve().parents[2] / "conf" / "sae"
ARCHS = ("topk", "batchtopk", "jumprelu", "relu", "gated")
D, NUM_FEATURES, M = 16, 32, 64


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is fastest and leaves the shared cores alone."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sparse_data(n: int, g: torch.Generator, active: float = 3.0) -> torch.Tensor:
    """[n, D] sums of ~``active`` of NUM_FEATURES fixed unit directions, plus an offset."""
    feats = F.normalize(torch.randn(NUM_FEATURES, D, generator=rng(99)), dim=1)
    on = torch.rand(n, NUM_FEATURES, generator=g) < active / NUM_FEATURES
    mags = 1 + 2 * torch.rand(n, NUM_FEATURES, generator=g)
    return (on * mags) @ feats + 0.5


def config(arch: str, **kw) -> SAEConfig:
    defaults = {
        "topk": {"k": 3},
        "batchtopk": {"k": 3},
        "jumprelu": {"target_l0": 3.0, "bandwidth": 0.05},
        "relu": {"l1_coefficient": 0.3, "normalize_decoder": False},
        "gated": {"l1_coefficient": 0.6},
    }[arch]
    return SAEConfig(architecture=arch, num_latents=M, **{**defaults, **kw})  # type: ignore[arg-type]


def train(sae, steps: int, *, seed: int = 2, lr: float = 3e-3, target=None):
    """A minimal loop through the interface; returns the first and last TrainOutput."""
    g, device = rng(seed), sae.W_dec.device
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    x = sparse_data(128, g).to(device)
    sae.init_from_batch(x, None if target is None else target(x))
    first = last = None
    for step in range(steps):
        x = sparse_data(128, g).to(device)
        out = sae(x, None if target is None else target(x), step=step)
        out.loss.backward()
        sae.before_optimizer_step()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sae.after_optimizer_step()
        first = first or out
        last = out
    return first, last


def perturbed(sae, seed: int = 7):
    """Give every parameter and buffer non-trivial values (biases, thresholds...)."""
    g = rng(seed)
    with torch.no_grad():
        for name, p in [*sae.named_parameters(), *sae.named_buffers()]:
            if name in ("encoder.bias", "b_dec", "b_mag", "r_mag"):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            if name == "threshold":
                p.fill_(0.05)
    return sae


# ------------------------------------------------------------------ JumpReLU STE


def rect(u):
    return ((u > -0.5) & (u < 0.5)).double()


def test_jumprelu_ste_gradients_are_the_specified_pseudo_derivatives():
    eps = 0.1
    pre = torch.tensor([[0.30, 0.52, -1.0, 0.26], [0.49, 0.10, 0.70, 0.33]], dtype=torch.float64)
    theta = torch.tensor([0.25, 0.50, 0.10, 0.30], dtype=torch.float64)
    pre.requires_grad_()
    theta.requires_grad_()
    upstream = torch.tensor([[1.0, -2.0, 3.0, 0.5], [0.7, 1.5, -1.0, 2.0]], dtype=torch.float64)

    f = JumpReLUFunction.apply(pre, theta, eps)
    torch.testing.assert_close(f, pre * (pre > theta))
    g_pre, g_theta = torch.autograd.grad((f * upstream).sum(), (pre, theta))
    torch.testing.assert_close(g_pre, upstream * (pre > theta))
    expected = (upstream * -(theta / eps) * rect((pre - theta) / eps)).sum(0)
    torch.testing.assert_close(g_theta, expected)
    assert g_theta.abs().sum() > 0  # some entries sit within the bandwidth

    h = StepFunction.apply(pre, theta, eps)
    torch.testing.assert_close(h, (pre > theta).double())
    g_pre, g_theta = torch.autograd.grad((h * upstream).sum(), (pre, theta), allow_unused=True)
    assert g_pre is None or not g_pre.any()  # no gradient into the input
    expected = (upstream * -(1 / eps) * rect((pre - theta) / eps)).sum(0)
    torch.testing.assert_close(g_theta, expected)


def test_jumprelu_threshold_is_a_direct_fp32_parameter_and_target_loss_moves_it():
    sae = JumpReLUSAE(D, M, target_l0=2.0, threshold_init=0.05, generator=rng(0))
    assert isinstance(sae.threshold, torch.nn.Parameter) and sae.threshold.dtype == torch.float32
    assert dict(sae.named_parameters())["threshold"] is sae.threshold  # not exp(log theta)
    x = sparse_data(256, rng(1))
    sae.init_from_batch(x)
    out = sae(x)
    assert out.l0 > 2.0  # too dense: the target term must push thresholds up
    (g_theta,) = torch.autograd.grad(out.loss - out.fvu, sae.threshold)  # the L0 term
    assert (g_theta <= 0).all() and (g_theta < 0).any()  # descent raises thresholds


def test_jumprelu_auto_threshold_starts_at_the_target_l0():
    sae = JumpReLUSAE(D, M, target_l0=5.0, generator=rng(0))
    x = sparse_data(200, rng(3))
    sae.init_from_batch(x)
    assert torch.unique(sae.threshold).numel() == 1 and sae.threshold[0] > 0
    assert abs(sae(x).l0.item() - 5.0) < 0.05


def test_jumprelu_sparsity_coefficient_warms_up():
    sae = JumpReLUSAE(D, M, sparsity_loss="l0", l0_coefficient=0.01, sparsity_warmup_steps=10)
    x = sparse_data(64, rng(4))
    sae.init_from_batch(x)
    early, late = sae(x, step=0), sae(x, step=50)
    ratio = early.metrics["sparsity_loss"] / late.metrics["sparsity_loss"]
    torch.testing.assert_close(ratio, torch.tensor(0.1))
    torch.testing.assert_close(late.metrics["sparsity_loss"], 0.01 * late.l0)


# ------------------------------------------------------------------ Gated, ReLU


def reference_gated_loss(sae: GatedSAE, x: torch.Tensor, l1: float) -> torch.Tensor:
    """The paper's loss written out densely, detaching the aux decoder by hand."""
    xc = x - sae.b_dec
    pi_gate = xc @ sae.encoder.weight.T + sae.encoder.bias
    pi_mag = xc @ (sae.encoder.weight * sae.r_mag.exp()[:, None]).T + sae.b_mag
    f = (pi_gate > 0).float() * F.relu(pi_mag)
    tv = (x - x.mean(0)).pow(2).sum()
    fvu = (x - (f @ sae.W_dec + sae.b_dec)).pow(2).sum() / tv
    rms = (tv / x.shape[0]).sqrt()
    penalty = (F.relu(pi_gate) * sae.W_dec.norm(dim=1)).sum(-1).mean() / rms
    aux = (x - (F.relu(pi_gate) @ sae.W_dec.detach() + sae.b_dec.detach())).pow(2).sum() / tv
    return fvu + l1 * penalty + aux


def test_gated_loss_and_gradients_match_the_paper_form():
    sae = perturbed(GatedSAE(D, M, l1_coefficient=0.2, generator=rng(0)))
    x = sparse_data(50, rng(5))
    out = sae(x)
    ref = reference_gated_loss(sae, x, 0.2)
    torch.testing.assert_close(out.loss, ref)
    params = list(sae.parameters())
    grads = torch.autograd.grad(out.loss, params, retain_graph=True)
    grads_ref = torch.autograd.grad(reference_gated_loss(sae, x, 0.2), params)
    for name, g, g_ref in zip([n for n, _ in sae.named_parameters()], grads, grads_ref):
        torch.testing.assert_close(g, g_ref, msg=name)
    # The aux reconstruction trains the gate, not the decoder: W_dec's gradient is that
    # of FVU + penalty alone.
    no_aux = torch.autograd.grad(out.loss - out.metrics["aux_fvu"], sae.W_dec)[0]
    torch.testing.assert_close(grads[params.index(sae.W_dec)], no_aux)


def test_relu_penalty_is_decoder_norm_weighted_l1():
    sae = perturbed(ReLUSAE(D, M, l1_coefficient=0.5, generator=rng(0)))
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.5, 2.0, M)[:, None])  # unequal row norms
    x = sparse_data(40, rng(6))
    out = sae(x)
    f = F.relu((x - sae.b_dec) @ sae.encoder.weight.T + sae.encoder.bias)
    rms = ((x - x.mean(0)).pow(2).sum() / 40).sqrt()
    expected = 0.5 * (f * sae.W_dec.norm(dim=1)).sum(-1).mean() / rms
    torch.testing.assert_close(out.metrics["sparsity_loss"], expected.detach())
    torch.testing.assert_close(out.sae_out, f @ sae.W_dec + sae.b_dec)


# ------------------------------------------------------------------ TopK extras


def test_multi_topk_adds_the_4k_fvu_over_8_without_changing_the_reconstruction():
    plain = perturbed(TopKSAE(D, M, 3, generator=rng(0)))
    multi = perturbed(TopKSAE(D, M, 3, multi_topk=True, generator=rng(0)))
    x = sparse_data(60, rng(7))
    a, b = plain(x), multi(x)
    torch.testing.assert_close(a.sae_out, b.sae_out)  # dense path == sparse kernel path
    pre = F.relu((x - multi.b_dec) @ multi.encoder.weight.T + multi.encoder.bias)
    vals, idx = pre.topk(12, dim=-1)
    x_hat4 = torch.zeros_like(pre).scatter(-1, idx, vals) @ multi.W_dec + multi.b_dec
    mt = (x_hat4 - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    torch.testing.assert_close(b.metrics["multi_topk_fvu"], mt.detach())
    torch.testing.assert_close(b.loss, b.fvu + mt / 8)
    torch.testing.assert_close(a.loss, a.fvu)


def test_auxk_reaches_only_dead_latents_and_does_not_count_b_dec_twice():
    sae = perturbed(TopKSAE(D, M, 3, auxk_alpha=1.0, generator=rng(0)))
    with torch.no_grad():
        sae.b_dec.fill_(3.0)  # a large b_dec: double-counting it would show
    x = sparse_data(80, rng(8)) + 3.0
    dead = torch.zeros(M, dtype=torch.bool)
    dead[torch.arange(0, M, 5)] = True
    out = sae(x, dead_mask=dead)
    e = x - out.sae_out.detach()
    pre = F.relu((x - sae.b_dec) @ sae.encoder.weight.T + sae.encoder.bias).detach()
    k_aux = D // 2
    dead_pre = torch.where(dead, pre, -torch.inf)
    vals, idx = dead_pre.topk(k_aux, dim=-1)
    e_hat = torch.zeros_like(pre).scatter(-1, idx, vals) @ sae.W_dec.detach()  # no b_dec
    tv = (x - x.mean(0)).pow(2).sum()
    scale = min(int(dead.sum()) / k_aux, 1.0)
    expected = scale * (e_hat - e).pow(2).sum() / tv
    torch.testing.assert_close(out.metrics["auxk"], expected)
    wrong = scale * (e_hat + sae.b_dec.detach() - e).pow(2).sum() / tv
    assert not torch.allclose(out.metrics["auxk"], wrong)

    # Only dead latents' encoder rows and decoder rows get a gradient from AuxK.
    aux_term = out.loss - out.fvu
    g_enc, g_dec = torch.autograd.grad(aux_term, (sae.encoder.weight, sae.W_dec))
    live_rows = g_enc[~dead].abs().sum() + g_dec[~dead].abs().sum()
    assert live_rows == 0 and g_dec[dead].abs().sum() > 0
    # No dead latent: no AuxK at all.
    none = sae(x, dead_mask=torch.zeros(M, dtype=torch.bool))
    assert none.metrics["auxk"] == 0 and torch.equal(none.loss, none.fvu)


def test_auxk_caps_k_aux_at_the_number_of_dead_latents():
    pre = torch.rand(10, 20)
    dead = torch.zeros(20, dtype=torch.bool)
    dead[:2] = True
    W = torch.randn(20, 8)
    e = torch.randn(10, 8)
    got = auxk_loss(pre, dead, e, torch.tensor(1.0), W)
    expected = (2 / 4) * ((pre[:, :2] @ W[:2]) - e).pow(2).sum()  # k_aux = min(8//2, 2)
    torch.testing.assert_close(got, expected)


# ------------------------------------------------------------------ training


@pytest.mark.parametrize("arch", ARCHS)
def test_training_lowers_the_loss_and_lands_near_the_sparsity_target(arch):
    sae = build_sae(config(arch), D, generator=rng(0))
    first, last = train(sae, 200)
    assert last.fvu < 0.6 * first.fvu, (first.fvu, last.fvu)
    assert last.loss < first.loss
    if arch in ("topk", "batchtopk"):
        assert last.l0.item() == pytest.approx(3.0, abs=1e-6)
    elif arch == "jumprelu":
        assert 2.0 < last.l0.item() < 4.5, last.l0
    else:  # the L1 architectures: far sparser than the dense start, not collapsed
        assert 1.0 < last.l0.item() < 0.5 * first.l0.item(), (first.l0, last.l0)
    if sae.normalize_decoder:
        torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(M))
    assert last.fired_M.dtype == torch.bool and last.fired_M.shape == (M,)
    assert last.fired_M.sum() >= last.l0  # every active latent counts as fired


def test_decoder_stays_unit_norm_and_parallel_gradient_is_removed():
    sae = build_sae(config("jumprelu"), D, generator=rng(0))
    x = sparse_data(64, rng(9))
    sae.init_from_batch(x)
    sae(x).loss.backward()
    sae.before_optimizer_step()
    parallel = (sae.W_dec.grad * sae.W_dec).sum(1)
    torch.testing.assert_close(parallel, torch.zeros(M), atol=1e-7, rtol=0)
    torch.optim.SGD(sae.parameters(), lr=0.5).step()
    sae.after_optimizer_step()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(M))
    assert (sae.threshold >= 0).all()


def test_param_groups_scale_the_learning_rate():
    cfg = config("jumprelu", lr_scale=2.0, threshold_lr_scale=50.0)
    sae = build_sae(cfg, D)
    groups = sae.param_groups(1e-3)
    assert sorted(g["lr"] for g in groups) == pytest.approx([2e-3, 0.1])
    (thr_group,) = [g for g in groups if any(p is sae.threshold for p in g["params"])]
    assert thr_group["params"] == [sae.threshold] and thr_group["lr"] == pytest.approx(0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(sae.parameters()))
    opt = torch.optim.Adam(sae.param_groups(1e-3))  # what a trainer does
    assert len(opt.param_groups) == 2
    plain = build_sae(config("topk"), D).param_groups(1e-3)
    assert len(plain) == 1 and plain[0]["lr"] == 1e-3


# ------------------------------------------------------------------ BatchTopK export


def test_batchtopk_threshold_is_an_ema_of_the_smallest_kept_activation():
    sae = BatchTopKSAE(D, M, 3, threshold_ema=0.5, generator=rng(0))
    x1, x2 = sparse_data(32, rng(10)), sparse_data(32, rng(11))
    sae.init_from_batch(x1)

    def smallest_kept(x):
        pre = F.relu(sae.pre_acts(x)).detach().flatten()
        return pre.topk(3 * 32).values.min()

    m1 = smallest_kept(x1)
    sae(x1)
    sae.after_optimizer_step()
    torch.testing.assert_close(sae.threshold, m1)  # first estimate: taken as is
    m2 = smallest_kept(x2)
    sae(x2)
    sae.after_optimizer_step()
    torch.testing.assert_close(sae.threshold, 0.5 * m1 + 0.5 * m2)


def test_batchtopk_keeps_k_per_token_on_average_and_its_gradient_is_the_masked_one():
    sae = perturbed(BatchTopKSAE(D, M, 3, generator=rng(0)))
    x = sparse_data(40, rng(15))
    out = sae(x)
    pre = F.relu((x - sae.b_dec) @ sae.encoder.weight.T + sae.encoder.bias)
    cut = pre.detach().flatten().topk(3 * 40).values.min()
    acts = pre * (pre.detach() >= cut)
    ref = (x - (acts @ sae.W_dec + sae.b_dec)).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    torch.testing.assert_close(out.loss, ref)
    assert out.l0.item() == pytest.approx(3.0) and (out.acts_NM > 0).sum(-1).max() > 3
    params = list(sae.parameters())
    for g, g_ref in zip(torch.autograd.grad(out.loss, params), torch.autograd.grad(ref, params)):
        torch.testing.assert_close(g, g_ref)


def test_batchtopk_exports_to_an_equal_jumprelu(tmp_path):
    sae = build_sae(config("batchtopk"), D, generator=rng(0))
    train(sae, 30)
    assert sae.threshold > 0
    jr = sae.to_inference()
    assert isinstance(jr, JumpReLUSAE) and jr.architecture == "jumprelu"
    torch.testing.assert_close(jr.threshold, sae.threshold.expand(M))
    x = sparse_data(100, rng(12))
    a, b = sae.encode(x), jr.encode(x)
    assert torch.equal(a.top_acts, b.top_acts) and torch.equal(a.top_idx, b.top_idx)
    assert torch.equal(sae.decode(*a), jr.decode(*b))
    # On average the threshold keeps about k latents per token.
    assert 1.5 < (a.top_acts > 0).sum(-1).float().mean() < 6
    save_sae(jr, tmp_path / "jr")
    assert json.loads((tmp_path / "jr" / "cfg.json").read_text())["activation"] == "jumprelu"
    loaded = load_sae(tmp_path / "jr")
    assert torch.equal(loaded.encode(x).top_acts, a.top_acts)


# ------------------------------------------------------------------ save / load


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("transcode", [False, True])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, arch, transcode):
    d_out = 12 if transcode else None
    sae = perturbed(build_sae(config(arch, transcode=transcode), D, d_out, generator=rng(0)))
    if transcode:
        with torch.no_grad():
            sae.W_dec.normal_(generator=rng(1))
    save_sae(sae, tmp_path / "sae")
    loaded = load_sae(tmp_path / "sae")
    assert type(loaded) is type(sae)
    assert loaded.config_dict() == sae.config_dict()
    for (n1, t1), (n2, t2) in zip(sae.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(t1, t2), n1
    x = sparse_data(30, rng(13))
    y = torch.randn(30, 12) if transcode else None
    a, b = sae.encode(x), loaded.encode(x)
    assert torch.equal(a.top_acts, b.top_acts) and torch.equal(a.top_idx, b.top_idx)
    assert torch.equal(sae(x, y).sae_out, loaded(x, y).sae_out)
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["activation"] == arch and cfg["transcode"] is transcode
    assert cfg.get("d_out", D) == (12 if transcode else D)


def test_non_topk_layout_keeps_sparsify_tensors_and_adds_their_own(tmp_path):
    from safetensors.torch import load_file

    names = {}
    for arch in ARCHS:
        save_sae(build_sae(config(arch), D), tmp_path / arch)
        names[arch] = set(load_file(str(tmp_path / arch / "sae.safetensors")))
    base = {"encoder.weight", "encoder.bias", "W_dec", "b_dec"}
    assert names["topk"] == base and names["relu"] == base
    assert names["jumprelu"] == names["batchtopk"] == base | {"threshold"}
    assert names["gated"] == base | {"r_mag", "b_mag"}


def test_encode_of_threshold_architectures_pads_to_the_batch_max():
    sae = perturbed(ReLUSAE(D, M, generator=rng(0)))
    x = sparse_data(20, rng(14))
    acts, idx = sae.encode(x.reshape(4, 5, D))
    dense = F.relu(sae.pre_acts(x))
    assert acts.shape[:2] == (4, 5) and acts.shape[-1] == (dense > 0).sum(-1).max()
    rebuilt = torch.zeros(20, M).scatter_add(-1, idx.reshape(20, -1), acts.reshape(20, -1))
    torch.testing.assert_close(rebuilt, dense)
    out = sae(x)
    torch.testing.assert_close(sae.decode(out.top_acts, out.top_idx), out.sae_out)
    assert sae.max_active is None and TopKSAE(D, M, 3).max_active == 3


# ------------------------------------------------------------------ transcoders


def test_transcoder_maps_x_to_a_wider_or_narrower_y():
    W_true = torch.randn(D, 10, generator=rng(20)) / 4
    sae = build_sae(config("topk", transcode=True, k=4), D, 10, generator=rng(0))
    assert sae.d_out == 10 and sae.W_dec.shape == (M, 10) and not sae.W_dec.any()
    with pytest.raises(ValueError, match="needs its target y"):
        sae(sparse_data(4, rng(0)))
    x0 = sparse_data(128, rng(21))
    sae.init_from_batch(x0, x0 @ W_true)
    torch.testing.assert_close(sae.encoder.bias, -(x0.mean(0) @ sae.encoder.weight.T))
    torch.testing.assert_close(sae.b_dec.detach(), (x0 @ W_true).mean(0))
    first, last = train(sae, 150, target=lambda x: x @ W_true)
    assert last.fvu < 0.5 * first.fvu
    # The input is not centred by b_dec: shifting b_dec leaves the code unchanged.
    code = sae.encode(x0)
    with torch.no_grad():
        sae.b_dec.add_(1.0)
    assert torch.equal(sae.encode(x0).top_idx, code.top_idx)


def test_widths_are_checked():
    with pytest.raises(ValueError, match="set sae.transcode=true"):
        build_sae(config("topk"), D, 12)
    with pytest.raises(ValueError, match="only a transcoder"):
        TopKSAE(D, M, 3, d_out=12)
    sae = build_sae(config("gated", transcode=True), D, 12)
    with pytest.raises(ValueError, match="d_out=12"):
        sae(torch.randn(3, D), torch.randn(3, D))
    with pytest.raises(ValueError, match="dead_mask"):
        build_sae(config("topk"), D)(torch.randn(3, D), dead_mask=torch.zeros(3, dtype=bool))


# ------------------------------------------------------------------ init


def test_geometric_median_is_weiszfelds_fixed_point_and_robust():
    g = rng(30)
    x = torch.randn(200, 5, generator=g)
    x[:20] += 100.0  # outliers drag the mean, not the median
    med = geometric_median(x, max_iter=500, tol=1e-10)
    unit = F.normalize((x.double() - med), dim=1)
    assert unit.sum(0).norm() < 1e-4  # gradient of the sum of distances vanishes
    assert med.norm() < 0.5 < x.mean(0).norm()


def test_b_dec_init_choices():
    x = sparse_data(100, rng(31))
    for init, expected in [
        ("mean", x.mean(0)),
        ("geometric_median", geometric_median(x).float()),
        ("zeros", torch.zeros(D)),
    ]:
        sae = build_sae(config("topk", b_dec_init=init), D, generator=rng(0))
        sae.init_from_batch(x)
        torch.testing.assert_close(sae.b_dec.detach(), expected)


def test_tied_init_for_every_architecture():
    for arch in ARCHS:
        sae = build_sae(config(arch), D, generator=rng(0))
        torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(M))
        cos = F.cosine_similarity(sae.W_dec, sae.encoder.weight, dim=1)
        torch.testing.assert_close(cos, torch.ones(M))
        again = build_sae(config(arch), D, generator=rng(0))
        assert torch.equal(sae.encoder.weight, again.encoder.weight)


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"architecture": "sparse"}, "sae.architecture='sparse' is not one of"),
        ({"num_latents": 64, "k": 64}, "sae.k=64 must be smaller than sae.num_latents=64"),
        ({"architecture": "jumprelu", "target_l0": 0}, "sae.target_l0=0.0 must be > 0"),
        ({"architecture": "jumprelu", "bandwidth": -0.1}, "sae.bandwidth=-0.1 must be > 0"),
        ({"architecture": "relu", "multi_topk": True}, "multi_topk=true needs"),
        ({"architecture": "gated", "auxk_alpha": 0.1}, "auxk_alpha > 0 needs"),
        ({"threshold_ema": 0.0}, "threshold_ema=0.0 must be in (0, 1]"),
        ({"l1_coefficient": -1}, "sae.l1_coefficient=-1.0 must be >= 0"),
        ({"lr_scale": 0}, "sae.lr_scale=0.0 must be > 0"),
        ({"threshold_lr_scale": -1}, "sae.threshold_lr_scale=-1.0 must be > 0"),
    ],
)
def test_bad_sae_configs_are_refused_with_the_key_named(raw, message):
    with pytest.raises(ValueError) as err:
        load_run_config({"sae": raw})
    assert message in str(err.value)


def test_k_against_the_width_known_only_from_d_in():
    with pytest.raises(ValueError, match="k=32 must be smaller than the dictionary width 32"):
        build_sae(SAEConfig(k=32, expansion_factor=2), 16)
    with pytest.raises(ValueError, match="sae.architecture='sparse' is not one of"):
        SAEConfig(architecture="sparse")  # type: ignore[arg-type]


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_conf_sae_file_builds_a_dictionary(path):
    import yaml

    raw = yaml.safe_load(path.read_text())
    cfg = build(SAEConfig, raw, "sae")
    if cfg.spec.pretrained:  # read from sae.path, never built (tests/unit/test_pretrained_point)
        assert cfg.sae_id.startswith("pretrained-")
        return
    sae = build_sae(cfg, 64, 20 if cfg.transcode else None)
    assert sae.architecture in (cfg.architecture, "topk")
    assert cfg.sae_id.startswith(cfg.architecture)


def test_sae_ids_name_what_the_dictionary_computes():
    assert SAEConfig().sae_id == "topk-x8-k32"
    ids = {
        SAEConfig(architecture="jumprelu").sae_id,
        SAEConfig(architecture="jumprelu", bandwidth=0.01).sae_id,
        SAEConfig(architecture="jumprelu", sparsity_loss="l0", l0_coefficient=0.1).sae_id,
        SAEConfig(multi_topk=True).sae_id,
        SAEConfig(transcode=True).sae_id,
        SAEConfig(architecture="gated").sae_id,
    }
    assert len(ids) == 6
    # Fields the architecture does not read do not change its id.
    assert SAEConfig(bandwidth=0.3).sae_id == SAEConfig().sae_id


# ------------------------------------------------------------------ GPU (skipped on CPU)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("arch", ARCHS)
def test_cuda_matches_cpu_and_trains(arch, tmp_path):
    """Same init on every device (drawn on the CPU); the CUDA forward, backward, step
    hooks, export and save/load run and agree with the CPU within float tolerance."""
    torch.backends.cuda.matmul.allow_tf32 = False
    cpu = build_sae(config(arch, multi_topk=arch == "topk"), D, generator=rng(0))
    gpu = build_sae(config(arch, multi_topk=arch == "topk"), D, generator=rng(0), device="cuda")
    assert torch.equal(cpu.encoder.weight, gpu.encoder.weight.cpu())
    x = sparse_data(128, rng(40))
    for sae, xx in ((cpu, x), (gpu, x.cuda())):
        sae.init_from_batch(xx)
    a, b = (
        cpu(x, dead_mask=torch.ones(M, dtype=torch.bool)),
        gpu(x.cuda(), dead_mask=torch.ones(M, dtype=torch.bool, device="cuda")),
    )
    torch.testing.assert_close(a.loss, b.loss.cpu(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.sae_out, b.sae_out.cpu(), rtol=1e-4, atol=1e-4)
    first, last = train(gpu, 100)
    assert last.fvu < first.fvu and last.sae_out.is_cuda
    inference = gpu.to_inference()
    acts, idx = inference.encode(x.cuda())
    assert acts.is_cuda and idx.dtype == torch.int64
    save_sae(inference, tmp_path / "sae")
    loaded = load_sae(tmp_path / "sae", device="cuda")
    assert torch.equal(loaded.encode(x.cuda()).top_acts, acts)
