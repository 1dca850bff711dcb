"""The architecture registry's proof: an architecture defined in this module (a ReLU whose
activations are scaled by a fixed factor), registered at run time, trains through the
real training loop on the tiny model, and its summary and export work."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F

from interp.config import RunConfig, load_run_config
from interp.plan import Task
from interp.runs import RunPaths, is_committed
from interp.sae.base import EncoderOutput, SparseCoder, TrainOutput, dense_to_sparse
from interp.sae.registry import register_architecture, unregister_architecture
from interp.sae.spec import ArchitectureSpec

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class ScaledReLUConfig:
    scale: float = field(default=2.0, metadata={"doc": "activation multiplier", "id": True})
    l1: float = 0.01


class ScaledReLUSAE(SparseCoder):
    """f = scale * relu(pre); loss = FVU + l1 * mean L1 of f."""

    architecture = "scaled_relu"
    Config = ScaledReLUConfig
    scale: float
    l1: float

    def _acts(self, x_ND: torch.Tensor) -> torch.Tensor:
        return self.scale * F.relu(self.pre_acts(x_ND))

    def _encode_flat(self, x_ND: torch.Tensor) -> EncoderOutput:
        return dense_to_sparse(self._acts(x_ND))

    def _train_forward(self, x_ND, y_NE, dead_M, step) -> TrainOutput:
        acts_NM = self._acts(x_ND)
        return self._dense_output(acts_NM, y_NE, {"l1": self.l1 * acts_NM.sum(-1).mean()})


SPEC = ArchitectureSpec(
    name="scaled_relu",
    config=ScaledReLUConfig,
    cls=ScaledReLUSAE,
    sparsity_tag=lambda cfg: (f"s{cfg.part(ScaledReLUConfig).scale:g}", frozenset()),
)


@pytest.fixture
def plugin() -> Iterator[ArchitectureSpec]:
    register_architecture(SPEC)
    yield SPEC
    unregister_architecture(SPEC.name)


def small_config(out_dir) -> RunConfig:
    return load_run_config(
        {
            "name": "p",
            "out_dir": str(out_dir),
            "layer": 2,
            "model": {"name": "tiny-random-llama", "dtype": "float32", "device": "cpu"},
            "data": {"ctx_len": 32, "max_tokens": 8192},
            "sae": {"architecture": "scaled_relu", "expansion_factor": 2, "lr_scale": 5.0},
            "train": {"num_tokens": 4096, "batch_size": 256, "lm_batch_size": 8,
                      "buffer_batches": 4, "warmup_steps": 2, "log_every": 2},
            "collect": {"num_tokens": 1024, "slice_tokens": 1024},
        }
    )  # fmt: skip


def test_an_unregistered_architecture_is_refused_naming_the_registry():
    with pytest.raises(ValueError, match="sae.architecture='scaled_relu' is not one of"):
        load_run_config({"sae": {"architecture": "scaled_relu"}})


def test_a_registered_architecture_trains_saves_and_exports(plugin, tmp_path):
    from interp.sae import load_sae
    from interp.sae.io import CFG_FILE
    from interp.stages import train as stage
    from interp.stages.context import StageContext

    cfg = small_config(tmp_path)
    assert cfg.sae.sae_id.startswith("scaled_relu-x2-s2-")  # lr_scale hashed in
    paths = RunPaths(RunPaths.sweep_root(cfg), cfg)
    stage.run(StageContext.of(cfg, paths, Task(0, 0, 1)))

    assert is_committed(paths.manifest_file("train", 0))
    metrics = [json.loads(line) for line in paths.train_metrics().read_text().splitlines()]
    assert metrics[-1]["fvu"] < metrics[0]["fvu"], "FVU did not decrease"
    assert "l1" in metrics[-1]
    summary = json.loads(paths.train_summary().read_text())
    assert summary["architecture"] == "scaled_relu" and summary["steps"] == 15
    assert all(math.isfinite(summary[k]) for k in ("fvu", "l0", "ce_increase", "kl"))

    saved = json.loads((paths.sae_dir() / CFG_FILE).read_text())
    assert saved == {
        "activation": "scaled_relu",
        "expansion_factor": 2,
        "normalize_decoder": True,
        "num_latents": 512,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": 256,
        "b_dec_init": "mean",
        "scale": 2.0,
        "l1": 0.01,
    }
    sae = load_sae(paths.sae_dir())
    assert isinstance(sae, ScaledReLUSAE) and (sae.d_in, sae.num_latents) == (256, 512)
    x = torch.randn(5, 256)
    code = sae.encode(x)
    torch.testing.assert_close(sae.decode(*code), sae.decode_dense(sae._acts(x)))


def test_registry_refuses_a_second_spec_under_a_taken_name_and_keeps_builtins(plugin):
    from interp.sae.registry import BUILTIN, get_architecture

    register_architecture(SPEC)  # the same spec again: a no-op
    clone = ArchitectureSpec("scaled_relu", ScaledReLUConfig, ScaledReLUSAE, SPEC.sparsity_tag)
    with pytest.raises(ValueError, match="'scaled_relu' is already registered"):
        register_architecture(clone)
    with pytest.raises(ValueError, match="built in"):
        unregister_architecture("topk")
    for spec in BUILTIN:  # a class and its spec agree on the hyperparameters
        assert spec.cls is None or spec.load().Config is spec.config
        assert get_architecture(spec.name) is spec


def test_builtin_sae_config_keys_come_from_the_specs_parts():
    from interp.config import SAEConfig
    from interp.sae.specs.jumprelu import JumpReLUConfig
    from interp.sae.specs.topk import TopKConfig

    cfg = load_run_config({"sae": {"architecture": "jumprelu", "target_l0": 8, "k": 4}}).sae
    assert cfg.params == JumpReLUConfig(target_l0=8.0)
    assert cfg.part(TopKConfig) == TopKConfig(k=4)
    assert cfg.sae_id == "jumprelu-x8-t8"
    with pytest.raises(ValueError, match=r"sae.rotate=true needs sae.architecture=neurons"):
        SAEConfig(rotate=True)
