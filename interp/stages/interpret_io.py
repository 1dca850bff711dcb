"""The interpret task's inputs: its range settings, LLM client and scorer resources."""

from __future__ import annotations

from typing import Any

from interp.config import RunConfig
from interp.interpret.pipeline import RangeConfig
from interp.llm import Ledger, LLMClient, build_client
from interp.plan import Task
from interp.runs import RunPaths
from interp.score.context import ResourceInputs, ScoreResources
from interp.score.run import resource_factories


def range_config(cfg: RunConfig) -> RangeConfig:
    """What the range's passes read of the run's config."""
    return RangeConfig(cfg.interpret, cfg.scorer, cfg.llm.temperature, cfg.data.ctx_len)


# --------------------------------------------------------------------------- resources
def build_task_client(cfg: RunConfig, paths: RunPaths, task: Task) -> LLMClient:
    """The range's LLM client: its response cache (a rerun re-pays nothing), its ledger
    (what this attempt pays, kept when it is killed) and, when served, discovery."""
    discover = None
    if cfg.serve.enabled:  # replicas that start (or come back) later are picked up too
        from interp.llm.replicas import discoverer, serve_id

        # the scheduler check attend() installed from ctx.jobs_alive applies here
        discover = discoverer(paths.root, serve_id(cfg.llm, cfg.serve))
    return build_client(
        cfg.llm, paths.llm_cache_dir() / f"r{task.index:05d}.jsonl", discover=discover,
        ledger=Ledger(paths.llm_ledger_dir(), task.index),
    )  # fmt: skip


def build_resources(cfg: RunConfig, paths: RunPaths) -> ScoreResources:
    """Factories of the task-wide resources the configured scorers declare (their specs)
    and of the embedder examples.negatives='similar' uses; nothing loads until asked."""
    inputs = ResourceInputs(
        cfg.model, cfg.target, cfg.data.prepend_bos, paths.sae_dir(), paths.ids.point
    )
    return ScoreResources(
        {"embedder": _load_embedder, **resource_factories(cfg.scorer.names, inputs)}
    )


def _load_embedder() -> Any:
    from interp.models.embedder import load_embedder

    return load_embedder()
