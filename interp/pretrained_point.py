"""A sweep point whose dictionary someone else trained (``sae=pretrained``).

Such a point has no train stage (:func:`needs_training`); collect loads its dictionary
through :func:`interp.sae.pretrained.load_pretrained` and keeps a copy in our layout where
the point's dictionary lives (:meth:`interp.runs.RunPaths.sae_dir`, under
``pretrained/<train id>/``), so alignment, the steering scorer and the report read it like
a trained one.

When a sweep is planned, :func:`resolve_points` inspects each source once (headers and a
content hash: no weights are built) and records in the point's config what it found:
``sae.content_hash``, the detected ``sae.format`` and the width ``sae.num_latents``. The
dictionary's run id (``train``, which every later id hashes) is computed from the content
hash, the hookpoint and the model and tokens (:func:`train_id_inputs`), never the path: a
changed file is a new point, an unchanged one resumes, a moved folder keeps its id.
:func:`pretrained_problems` is what preflight refuses, one line each.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.config import RunConfig, id_dict
from interp.runs import RunPaths, atomic_write_json

if TYPE_CHECKING:
    from interp.sae.base import SparseCoder
    from interp.sae.pretrained import PretrainedInfo

log = logging.getLogger(__name__)

TRAIN_ONLY = (
    "expansion_factor", "num_latents", "dead_tokens", "b_dec_init", "normalize_decoder",
    "lr_scale", "k", "multi_topk", "auxk_alpha", "threshold_ema", "bandwidth",
    "sparsity_loss", "l0_coefficient", "target_l0", "threshold_init",
    "sparsity_warmup_steps", "threshold_lr_scale", "l1_coefficient", "rotate",
)  # fmt: skip
"""``sae.*`` keys that describe a dictionary to train: a checkpoint fixes them itself."""


def is_pretrained(cfg: RunConfig) -> bool:
    """Whether the point's dictionary is read from a checkpoint (no train stage)."""
    return cfg.sae.spec.pretrained


def needs_training(cfg: RunConfig) -> bool:
    """The train stage's ``enabled``: every point but a pretrained one."""
    return not is_pretrained(cfg)


def wanted_hookpoint(cfg: RunConfig) -> str:
    """Which dictionary of the source to read: ``sae.hookpoint``, else the point's."""
    return cfg.sae.hookpoint or cfg.hookpoint


def source_label(cfg: RunConfig) -> tuple[str, str]:
    """(source, format) for the table: the path or hub id and its format; ("trained", "")
    for a dictionary the sweep trains or builds."""
    if not is_pretrained(cfg):
        return "trained", ""
    return cfg.sae.path, cfg.sae.format


def inspect_point(cfg: RunConfig) -> PretrainedInfo:
    """What the point's source holds (its headers and content hash; no weights built):
    the dictionary at the point's hookpoint or ``sae.hookpoint``; failing that, the
    source's only dictionary when it holds one (its hookpoint is then checked against the
    point's by :func:`pretrained_problems`, naming both), else the first error."""
    from interp.sae.pretrained import inspect_pretrained

    try:
        return inspect_pretrained(cfg.sae.path, cfg.sae.format, wanted_hookpoint(cfg))
    except Exception as err:
        if cfg.sae.hookpoint:
            raise
        try:
            return inspect_pretrained(cfg.sae.path, cfg.sae.format, None)
        except Exception:
            raise err from None


# ----------------------------------------------------------------------------- run ids


def train_id_inputs(cfg: RunConfig) -> tuple[Any, ...] | None:
    """What names a pretrained point's dictionary (None for a trained point: the train
    stage's declared inputs): its content, the hookpoint it reads, the model and the data
    and training-split size (the collect windows follow the training windows)."""
    from interp.stages.registry import IdInput

    if not is_pretrained(cfg):
        return None
    if not cfg.sae.content_hash:
        raise ValueError(
            f"sae=pretrained point (sae.path={cfg.sae.path!r}) has no sae.content_hash: plan "
            "it through launch/sweep.py, or call interp.pretrained_point.resolve_points first"
        )
    sources = {
        "data": "id:data", "model": "section:model", "layer": "value:layer",
        "hook": "when_set:hook", "pretrained": "value:sae.content_hash",
        "windows": "value:train.num_tokens",
    }  # fmt: skip
    return tuple(IdInput(k, v) for k, v in sources.items())


# ----------------------------------------------------------------------------- planning


def resolve_points(cfgs: Sequence[RunConfig]) -> tuple[list[RunConfig], list[str]]:
    """Each config with its source's content hash, format and width recorded (trained
    points unchanged), and one line per source that cannot be inspected."""
    out, problems, seen = [], [], {}
    for cfg in cfgs:
        if not is_pretrained(cfg):
            out.append(cfg)
            continue
        key = (cfg.sae.path, cfg.sae.format, wanted_hookpoint(cfg))
        if not cfg.sae.path:
            seen[key] = NO_PATH
        if key not in seen:
            try:
                seen[key] = inspect_point(cfg)
            except Exception as err:  # noqa: BLE001 - any failure to read it is the user's
                seen[key] = _source_problem(cfg, err)
        if isinstance(seen[key], str):
            problems.append(seen[key])
            out.append(cfg)
            continue
        out.append(resolve(cfg, seen[key]))
    return out, list(dict.fromkeys(problems))


NO_PATH = "sae=pretrained needs sae.path=<checkpoint folder or hub id>: set it"

SOURCE_KEYS = ("path", "format", "hookpoint")
"""The ``sae.*`` keys naming a checkpoint: a trained point ignores them."""


def drop_repeats(
    cfgs: Sequence[RunConfig], overrides: Sequence[Any] | None = None
) -> tuple[list[RunConfig], list[Any] | None]:
    """The points with the checkpoint keys of trained points cleared, each once.

    ``-m sae=topk,pretrained sae.path=A,B`` makes two topk points that differ only in the
    ``sae.path`` they ignore: they are one point (planned once, the first's overrides
    kept). Points that repeat for any other reason stay (the collision check names them).
    """
    out: list[RunConfig] = []
    kept: list[Any] = []
    seen: set[str] = set()
    for i, cfg in enumerate(cfgs):
        cleared = _clear_source(cfg)
        key = repr(cleared)
        if cleared is not cfg and key in seen:
            log.info("point %d repeats another once sae.path is ignored: planned once", i)
            continue
        seen.add(key)
        out.append(cleared)
        kept.append(overrides[i] if overrides is not None else None)
    return out, (kept if overrides is not None else None)


def _clear_source(cfg: RunConfig) -> RunConfig:
    if is_pretrained(cfg):
        return cfg
    blank = type(cfg.sae)()
    if all(getattr(cfg.sae, k) == getattr(blank, k) for k in SOURCE_KEYS):
        return cfg
    sae = dataclasses.replace(cfg.sae, **{k: getattr(blank, k) for k in SOURCE_KEYS})
    return dataclasses.replace(cfg, sae=sae)


def resolve(cfg: RunConfig, info: PretrainedInfo) -> RunConfig:
    """``cfg`` with what :func:`inspect_point` found recorded in its ``sae`` section (a
    local path made absolute, so tasks find it from any directory). A transcoder's
    ``sae.transcode`` and ``target_hookpoint`` (where it writes: the steering scorer
    intervenes there) come from the file; a ``target_hookpoint`` the user set is kept
    for :func:`pretrained_problems` to compare with the file's."""
    local = Path(cfg.sae.path).expanduser()
    path = str(local.resolve()) if local.exists() else cfg.sae.path
    sae = dataclasses.replace(cfg.sae, path=path, content_hash=info.content_hash,
                              format=info.format, num_latents=info.num_latents,
                              transcode=cfg.sae.transcode or info.transcode)  # fmt: skip
    target = cfg.target_hookpoint or (info.target_hookpoint if info.transcode else "")
    return dataclasses.replace(cfg, sae=sae, target_hookpoint=target)


def _source_problem(cfg: RunConfig, err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    fix = (
        "pass a sparsify run or hookpoint folder, a SAELens folder (cfg.json + "
        "sae_weights.safetensors), a Gemma Scope params.npz folder or a hub id, with "
        "sae.format=auto|sparsify|saelens|gemmascope and layer= (or sae.hookpoint=) "
        "naming one of its dictionaries"
    )
    return f"sae.path={cfg.sae.path!r} cannot be read ({line[:300]}): {fix}"


def pretrained_problems(cfg: RunConfig, *, trained_points: bool = False) -> list[str]:
    """One line per reason a pretrained point would fail (empty for a trained point).
    ``trained_points``: the sweep also trains, so ``sae.*`` training keys may be meant for
    those points and are only ignored here, not refused."""
    if not is_pretrained(cfg):
        return []
    if not cfg.sae.path:
        return [NO_PATH]
    try:
        info = inspect_point(cfg)
    except Exception as err:  # noqa: BLE001
        return [_source_problem(cfg, err)]
    out = _match_problems(cfg, info)
    if not trained_points:
        out += _train_key_problems(cfg)
    return out


def _match_problems(cfg: RunConfig, info: PretrainedInfo) -> list[str]:
    """The checkpoint against the point: its hookpoint, width, transcoding and content."""
    from interp.models.provision import hookpoint_width

    src, out = f"sae.path={cfg.sae.path!r}", []
    if info.hookpoint and info.hookpoint != cfg.hookpoint:
        key = "hook" if cfg.hook else "layer"
        out.append(
            f"{src} holds a dictionary of {info.hookpoint} (file: {info.file_hookpoint!r}) but "
            f"{key}={cfg.hook or cfg.layer} reads {cfg.hookpoint}: set "
            f"{_hook_fix(info.hookpoint)} (or sae.hookpoint= for another of its dictionaries)"
        )
    width = hookpoint_width(cfg.model.name, cfg.hookpoint)
    if info.d_in != width:
        out.append(
            f"{src} reads {info.d_in}-wide activations but {cfg.model.name} is {width} wide at "
            f"{cfg.hookpoint}: use the model the dictionary was trained on (model.name=)"
        )
    if cfg.sae.num_latents not in (0, info.num_latents):
        out.append(
            f"sae.num_latents={cfg.sae.num_latents} but {src} has {info.num_latents} latents: "
            "drop sae.num_latents (a pretrained dictionary's width is its own)"
        )
    out += _transcoder_problems(cfg, info, src)
    if cfg.sae.content_hash and cfg.sae.content_hash != info.content_hash:
        out.append(
            f"{src} changed since this point was planned (content hash "
            f"{cfg.sae.content_hash[:12]} then, {info.content_hash[:12]} now): run "
            "launch/sweep.py again to make the new file a new point, or restore the old file"
        )
    return out


def _transcoder_problems(cfg: RunConfig, info: PretrainedInfo, src: str) -> list[str]:
    """``sae.transcode`` / ``target_hookpoint`` against the file (resolve copies the file's)."""
    if not info.transcode:
        keys = [k for k, v in (("sae.transcode", cfg.sae.transcode),
                               ("target_hookpoint", cfg.target_hookpoint)) if v]  # fmt: skip
        return [f"{k} is set but {src} is not a transcoder: drop {k}" for k in keys]
    ours, theirs = cfg.target_hookpoint, info.target_hookpoint
    if ours and theirs and ours != theirs:
        return [
            f"target_hookpoint={ours} but {src} is a transcoder writing {theirs} (file: "
            f"{info.file_hookpoint!r}): drop target_hookpoint (the file's is used)"
        ]
    if not ours and not theirs:
        return [
            f"{src} is a transcoder whose file does not say where it writes: set "
            "target_hookpoint=<the module whose output it predicts> (e.g. layers.3.mlp)"
        ]
    return []


def _hook_fix(hookpoint: str) -> str:
    layer = hookpoint.removeprefix("layers.")
    return f"layer={layer}" if layer.isdigit() else f"hook={hookpoint}"


def _train_key_problems(cfg: RunConfig) -> list[str]:
    defaults = id_dict(type(cfg.sae)())
    ours = id_dict(cfg.sae)
    set_keys = [k for k in TRAIN_ONLY if k != "num_latents" and ours.get(k) != defaults.get(k)]
    return [
        f"sae.{k}={ours[k]!r} is a training setting but sae=pretrained reads its dictionary "
        f"from sae.path={cfg.sae.path!r}: drop sae.{k}"
        for k in set_keys
    ]


# ----------------------------------------------------------------------------- collect


def measured_target(cfg: RunConfig) -> str | None:
    """Where collect measures a pretrained point's reconstruction (its target: the input,
    or a transcoder's output hookpoint); None for a trained point (train measured it) or
    a transcoder whose output hookpoint is unknown."""
    if not is_pretrained(cfg) or (cfg.sae.transcode and not cfg.target_hookpoint):
        return None
    return cfg.target


def load_point_dictionary(cfg: RunConfig, paths: RunPaths, device: Any = "cpu") -> SparseCoder:
    """The point's dictionary: trained (its train folder) or pretrained (its copy in our
    layout, written on first use after checking the content is what was planned)."""
    from interp.sae import load_sae  # the package's name: tests substitute it
    from interp.sae.io import WEIGHTS_FILE, save_sae

    folder = paths.sae_dir()
    if not is_pretrained(cfg) or (folder / WEIGHTS_FILE).is_file():
        return load_sae(folder, device=device)
    from interp.sae.pretrained import load_pretrained

    info = inspect_point(cfg)
    problems = _match_problems(cfg, info)
    if problems:
        raise ValueError(problems[0])
    sae = load_pretrained(info, device=device)
    atomic_write_json(paths.pretrained_source_file(), _describe(info))
    save_sae(sae, folder)
    log.info("loaded %s (%s, %s) into %s", cfg.sae.path, info.format, info.file_hookpoint, folder)
    return sae


def _describe(info: PretrainedInfo) -> dict[str, Any]:
    return {
        f.name: str(v) if f.name == "path" else v
        for f in dataclasses.fields(info)
        for v in [getattr(info, f.name)]
    }
