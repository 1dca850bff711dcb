"""Neurons (and their randomly rotated control) as dictionaries through the same path."""

from __future__ import annotations

import pytest
import torch

from interp.config import load_run_config
from interp.models import hookpoint_width
from interp.plan import plan_point
from interp.runs import RunPaths
from interp.sae.neurons import neuron_dictionary, random_rotation

pytestmark = pytest.mark.unit


def test_identity_basis_keeps_each_tokens_k_largest_positive_neurons() -> None:
    x = torch.randn(50, 40, generator=torch.Generator().manual_seed(0))
    sae = neuron_dictionary(40, 5)
    acts, idx = sae.encode(x)
    want = x.relu().topk(5, dim=-1)
    assert torch.equal(acts.sort(-1).values, want.values.sort(-1).values)
    dense = torch.zeros_like(x).scatter(-1, idx, acts)
    torch.testing.assert_close(sae.decode(acts, idx), dense)  # the top-k part of x itself


def test_rotated_control_is_a_seeded_orthogonal_basis() -> None:
    r1 = random_rotation(32, torch.Generator().manual_seed(3))
    r2 = random_rotation(32, torch.Generator().manual_seed(3))
    assert torch.equal(r1, r2)
    torch.testing.assert_close(r1 @ r1.T, torch.eye(32), atol=1e-5, rtol=0)
    assert not torch.allclose(r1, random_rotation(32, torch.Generator().manual_seed(4)))
    sae = neuron_dictionary(32, 4, rotate=True, generator=torch.Generator().manual_seed(3))
    x = torch.randn(10, 32, generator=torch.Generator().manual_seed(1))
    acts, _ = sae.encode(x)
    want = (x @ r1.T).relu().topk(4, dim=-1).values
    torch.testing.assert_close(acts.sort(-1).values, want.sort(-1).values, atol=1e-5, rtol=0)
    # a latent mixes many neurons: no basis row is close to one-hot
    assert sae.W_dec.abs().max(dim=1).values.max() < 0.9


def test_config_refuses_widths_and_rotation_outside_neurons() -> None:
    with pytest.raises(ValueError, match="expansion_factor=1"):
        load_run_config({"sae": {"architecture": "neurons"}})  # default expansion 8
    with pytest.raises(ValueError, match="rotate=true needs sae.architecture=neurons"):
        load_run_config({"sae": {"rotate": True}})
    plain = load_run_config({"sae": {"architecture": "neurons", "expansion_factor": 1}})
    rot = load_run_config(
        {"sae": {"architecture": "neurons", "expansion_factor": 1, "rotate": True}}
    )
    assert plain.sae.sae_id.startswith("neurons-") and "rot" not in plain.sae.sae_id
    assert "rot" in rot.sae.sae_id


def test_mlp_neuron_hookpoints_plan_the_mlp_width() -> None:
    assert hookpoint_width("smollm2-135m", "layers.3.mlp.down_proj:input") == 1536
    assert hookpoint_width("smollm2-135m", "layers.3.mlp") == 576
    cfg = load_run_config(
        {
            "hook": "layers.3.mlp.down_proj:input",
            "sae": {"architecture": "neurons", "expansion_factor": 1},
            "collect": {"range_latents": 1000},
        }
    )
    compact = plan_point(cfg, hookpoint_width(cfg.model.name, cfg.hookpoint))[2]
    assert compact.tasks[-1].stop == 1536


def test_train_stage_builds_neurons_beside_a_trained_sae(tmp_path) -> None:
    from interp.sae import load_sae
    from interp.stages.train import train_group

    def config(**top):
        return load_run_config(
            {
                "name": "n",
                "out_dir": str(tmp_path),
                "layer": 1,
                "model": {"name": "tiny-random-llama", "dtype": "float32", "device": "cpu"},
                "data": {"ctx_len": 32, "max_tokens": 8192},
                "train": {"num_tokens": 1024, "batch_size": 256, "lm_batch_size": 8,
                          "buffer_batches": 2, "warmup_steps": 1},
                "collect": {"num_tokens": 1024, "slice_tokens": 1024},
                **top,
            }
        )  # fmt: skip

    neurons = config(hook="layers.1.mlp.down_proj:input",
                     sae={"architecture": "neurons", "expansion_factor": 1, "k": 8})  # fmt: skip
    sae = config(sae={"expansion_factor": 2, "k": 8})
    members = [(c, RunPaths(RunPaths.sweep_root(c), c)) for c in (neurons, sae)]
    built, trained = train_group(members)
    assert built is not None and trained is not None
    assert built["steps"] == 0 and built["num_latents"] == 512 and built["dead_pct"] is None
    assert trained["steps"] > 0 and 0 < built["fvu"] < 1
    saved = load_sae(members[0][1].sae_dir())
    assert torch.equal(saved.encoder.weight, torch.eye(512)) and saved.k == 8
