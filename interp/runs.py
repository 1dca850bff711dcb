"""Run ids, every path of the run folder, and atomic commits.

This is the only module that builds paths. A sweep folder looks like::

    <out_dir>/<name>/                     the sweep folder
      .lock                               held by the one command writing it (sweep_lock)
      points/<point_id>/config.json       resolved config of each sweep point
      data/<data_id>/tokens.npy           tokenised, packed, shuffled corpus windows
      train/<train_id>/                   one point's training (its outputs)
        sae/<hookpoint>/<sae_id>/         cfg.json + sae.safetensors (sparsify layout)
        metrics.jsonl  summary.json
      pretrained/<train_id>/              a pretrained point's dictionary (no train stage):
        source.json                       what it was read from (path, format, content hash)
        sae/<hookpoint>/<sae_id>/         a copy in our layout, written by collect
      train/groups/<group_id>/checkpoints/  resume state of a train group (one or more
                                          points' SAEs trained from one LM forward)
      store/<collect_id>/latents.zarr/    the latent store
        slices/s00000/                    per token slice, latent-sorted (collect)
        ranges/r00000/                    per latent range, latent-major (compact)
      interpret/<interpret_id>/
        records/r00000.jsonl              one record per selected latent of the task
        llm_cache/                        content-addressed LLM responses
        llm_ledger/r00000.a0001.jsonl     tokens each attempt of a range paid the LLM
      <stage dir>/manifest/<task>.json    one file per committed array task
      gather/latents.parquet  summary.json
      gather/FAILED.json                  only after a failed gather: its outputs are stale

Run ids are hashes of what a stage computes (its config and its inputs' ids), so
submitting the same thing twice resumes instead of duplicating. A task is committed
when its manifest file exists; its outputs were renamed into place before that.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.config import RunConfig


def short_hash(obj: Any, n: int = 10) -> str:
    """Stable hash of a JSON-serialisable object."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


@dataclass(frozen=True)
class RunIds:
    """Content ids of each stage of one sweep point."""

    data: str
    train: str
    collect: str
    interpret: str
    point: str
    extra: tuple[tuple[str, str], ...] = ()
    """(name, id) of the ids of stages registered beyond the built-in ones."""

    @classmethod
    def of(cls, cfg: RunConfig) -> RunIds:
        """Hash each id's declared inputs (:mod:`interp.stages.registry`), upstream first."""
        from interp.stages.registry import DATA_INPUTS, POINT_ID, id_stages

        ids = {"data": _hash_inputs(cfg, DATA_INPUTS, {})}
        for spec in id_stages():
            inputs = (spec.inputs_for(cfg) if spec.inputs_for else None) or spec.inputs
            ids[spec.run_id] = _hash_inputs(cfg, inputs, ids)
        named = {k: ids.pop(k) for k in ("data", "train", "collect", "interpret")}
        return cls(**named, point=named[POINT_ID], extra=tuple(ids.items()))

    def get(self, name: str) -> str:
        """The id called ``name`` (a built-in field or a registered stage's)."""
        extra = dict(self.extra)
        return extra[name] if name in extra else getattr(self, name)


def _hash_inputs(cfg: RunConfig, inputs: tuple[Any, ...], ids: dict[str, str]) -> str:
    entries = {i.key: value for i in inputs for present, value in [i.entry(cfg, ids)] if present}
    return short_hash(entries)


@dataclass(frozen=True)
class RunPaths:
    """Every path of one sweep point inside sweep folder ``root``."""

    root: Path
    cfg: RunConfig

    @property
    def ids(self) -> RunIds:
        return RunIds.of(self.cfg)

    # sweep-level -----------------------------------------------------------------
    @staticmethod
    def sweep_root(cfg: RunConfig) -> Path:
        return Path(cfg.out_dir).expanduser().resolve() / cfg.name

    def point_dir(self) -> Path:
        return self.root / "points" / self.ids.point

    def point_config(self) -> Path:
        return self.point_dir() / "config.json"

    def point_overrides(self) -> Path:
        """The Hydra overrides that made this point (multiruns only): compare lines up
        points of several multiruns by them."""
        return self.point_dir() / "overrides.json"

    # stages --------------------------------------------------------------------------
    def stage_dir(self, stage: str) -> Path:
        """The folder stage ``stage`` writes (its spec's folder, then its run id if any)."""
        from interp.stages.registry import stage as spec_of

        spec = spec_of(stage)
        folder = self.root / spec.folder
        return folder / self.ids.get(spec.run_id) if spec.run_id else folder

    def tokens_file(self) -> Path:
        return self.root / "data" / self.ids.data / "tokens.npy"

    def sae_dir(self) -> Path:
        """The point's dictionary: trained into its train folder, or for a pretrained one
        (no train stage) the copy in our layout that collect writes on first use."""
        return self.dictionary_dir() / "sae" / self.cfg.hookpoint / self.cfg.sae.sae_id

    def dictionary_dir(self) -> Path:
        if self.cfg.sae.spec.pretrained:
            return self.root / "pretrained" / self.ids.train
        return self.stage_dir("train")

    def pretrained_source_file(self) -> Path:
        """What a pretrained point's dictionary was read from (interp.sae.pretrained's
        PretrainedInfo: source, format, file hookpoint, content hash), beside its copy."""
        return self.dictionary_dir() / "source.json"

    def train_metrics(self) -> Path:
        return self.stage_dir("train") / "metrics.jsonl"

    def train_summary(self) -> Path:
        """Final training metrics (FVU, L0, dead %, CE increase) read by gather; for a
        pretrained point (no training), gather's figures measured on the collect tokens."""
        if self.cfg.sae.spec.pretrained:
            return self.stage_dir("collect") / "dictionary_summary.json"
        return self.stage_dir("train") / "summary.json"

    def train_checkpoint_dir(self) -> Path:
        return self.stage_dir("train") / "checkpoints"

    def train_group_dir(self, group_id: str) -> Path:
        """Shared state of train group ``group_id`` (several points' SAEs trained from one
        LM forward): its resume checkpoints. Each member's outputs stay in its own
        :meth:`stage_dir` ("train")."""
        return self.root / "train" / "groups" / group_id

    def train_group_checkpoint_dir(self, group_id: str) -> Path:
        return self.train_group_dir(group_id) / "checkpoints"

    def store_dir(self) -> Path:
        return self.stage_dir("collect") / "latents.zarr"

    def collect_recon_file(self, index: int) -> Path:
        """A pretrained point's reconstruction sums over collect slice ``index``."""
        return self.stage_dir("collect") / "recon" / f"s{index:05d}.json"

    def slice_group(self, index: int) -> Path:
        return self.store_dir() / "slices" / f"s{index:05d}"

    def range_group(self, index: int) -> Path:
        return self.store_dir() / "ranges" / f"r{index:05d}"

    def store_group_task(self, group: Path) -> tuple[str, int] | None:
        """The (stage, task index) that wrote store group ``group`` (inverse of
        :meth:`slice_group` / :meth:`range_group`); None if it is neither."""
        for stage, parent, prefix in (
            ("collect", self.slice_group(0).parent, "s"),
            ("compact", self.range_group(0).parent, "r"),
        ):
            name = Path(group).name
            if Path(group).parent == parent and name[1:].isdigit() and name[0] == prefix:
                return stage, int(name[1:])
        return None

    def records_file(self, index: int) -> Path:
        return self.stage_dir("interpret") / "records" / f"r{index:05d}.jsonl"

    def llm_cache_dir(self) -> Path:
        return self.stage_dir("interpret") / "llm_cache"

    def llm_ledger_dir(self) -> Path:
        """Per range and attempt, the tokens paid to the LLM (interp.llm.ledger)."""
        return self.stage_dir("interpret") / "llm_ledger"

    def manifest_dir(self, stage: str) -> Path:
        return self.stage_dir(stage) / "manifest" / stage

    def manifest_file(self, stage: str, index: int) -> Path:
        return self.manifest_dir(stage) / f"{index:05d}.json"


def gather_dir(root: Path) -> Path:
    return root / "gather"


def points_dir(root: Path) -> Path:
    return root / "points"


def sweep_lock_file(root: Path) -> Path:
    """flock'ed by the one process writing the sweep folder (interp.sweep_lock)."""
    return root / ".lock"


def read_points(root: Path) -> list[RunConfig]:
    """Resolved configs of every point recorded in sweep folder ``root`` (may be empty)."""
    from interp.config import load_saved_config

    files = sorted(points_dir(root).glob("*/config.json"))
    return [load_saved_config(json.loads(f.read_text())) for f in files]


def read_point_overrides(root: Path) -> dict[str, dict[str, Any]]:
    """Point id -> {"overrides": [...], "multirun_dir": ...} for points recorded by a
    multirun (points run without ``-m`` have none)."""
    out = {}
    for f in sorted(points_dir(root).glob("*/overrides.json")):
        out[f.parent.name] = json.loads(f.read_text())
    return out


# ----------------------------------------------------------------------------- commits


def tmp_name(final: Path) -> Path:
    """A unique temporary sibling of ``final`` (same filesystem, so rename is atomic)."""
    job = os.environ.get("SLURM_JOB_ID", "local")
    return final.with_name(f"{final.name}.tmp-{job}-{uuid.uuid4().hex[:8]}")


def is_tmp(path: Path) -> bool:
    return ".tmp-" in path.name


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Build a directory under a temporary name; rename it to ``final`` on success.

    If ``final`` already exists (another attempt committed first), the new copy is
    discarded: committed work is never replaced. On error the temporary is removed.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(final)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_tmp(parent: Path) -> int:
    """Delete leftovers of killed attempts in ``parent``; returns how many."""
    if not parent.exists():
        return 0
    n = 0
    for p in parent.iterdir():
        if is_tmp(p):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            n += 1
    return n


def remove_stale_tmp_of(final: Path) -> int:
    """Delete temporaries left by killed attempts at ``final`` only.

    Unlike :func:`remove_stale_tmp`, this never touches the in-flight temporaries of
    other array tasks writing siblings of ``final`` right now.
    """
    if not final.parent.is_dir():
        return 0
    stale = [p for p in final.parent.iterdir() if is_tmp(p) and p.name.startswith(f"{final.name}.")]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return len(stale)


def commit_task(manifest: Path, info: dict[str, Any]) -> None:
    """Mark one array task committed. Call only after its outputs are in place."""
    record = {
        "committed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        **info,
    }
    atomic_write_json(manifest, record)


def is_committed(manifest: Path) -> bool:
    return manifest.is_file()


def read_manifest(manifest: Path) -> dict[str, Any] | None:
    try:
        return json.loads(manifest.read_text())
    except FileNotFoundError:
        return None


def reopen_task(manifest: Path) -> Path:
    """Un-commit one task so the next run or rerun redoes it. The manifest moves aside
    to ``<name>.reopened`` (the last one kept, for the record; no reader globs it); the
    task's outputs stay until the redo commits new ones over them."""
    aside = manifest.with_name(manifest.name + ".reopened")
    os.replace(manifest, aside)
    return aside


# ----------------------------------------------------------------------------- cluster records
# What the cluster edge (slurm/) keeps about a sweep. Job ids are recorded at submission so a
# later submit, status or rerun can tell queued work from failed work without guessing.


def cluster_dir(root: Path) -> Path:
    return root / "slurm"


def cluster_config_file(root: Path) -> Path:
    """The cluster config of the latest submission; rerun resubmits with it."""
    return cluster_dir(root) / "cluster.json"


def submissions_dir(root: Path, key: str) -> Path:
    """One JSON file per sbatch of stage job ``key``: job id and the plan tasks it runs."""
    return cluster_dir(root) / "jobs" / key


def submission_file(root: Path, key: str, job_id: str) -> Path:
    return submissions_dir(root, key) / f"{job_id}.json"


def job_log_dir(root: Path, key: str) -> Path:
    """submitit's folder for stage job ``key``: its pickles and the tasks' logs."""
    return cluster_dir(root) / "logs" / key


def job_log_file(root: Path, key: str, slurm_id: str) -> Path:
    """stderr of SLURM job ``slurm_id`` (``123`` or ``123_4``), as submitit names it."""
    return job_log_dir(root, key) / f"{slurm_id}_0_log.err"


def gather_manifest(root: Path) -> Path:
    """Written last by gather; holds the fingerprint of what it gathered."""
    return gather_dir(root) / "manifest.json"


def gather_failed_file(root: Path) -> Path:
    """Written when a gather fails (interp.report.gather_state): the outputs beside it
    are stale; removed by the next gather that succeeds."""
    return gather_dir(root) / "FAILED.json"
