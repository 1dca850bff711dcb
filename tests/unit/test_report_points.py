"""The report reads sweep points as plain values (interp.point_info), never a RunConfig."""

from __future__ import annotations

import ast
from pathlib import Path

from interp.config import load_run_config
from interp.runs import RunPaths, atomic_write_json

ROOT = Path(__file__).resolve().parents[2]


def _cfg(out_dir: Path, layer: int, arch: str = "topk", hook: str | None = None, **sae):
    extra = {"hook": hook} if hook else {}
    return load_run_config({"name": "pts", "out_dir": str(out_dir), "layer": layer,
                            "model": {"name": "tiny-random-llama"}, **extra,
                            "sae": {"architecture": arch, "k": 4, **sae}})  # fmt: skip


def test_points_carry_the_ids_and_files_of_their_config(tmp_path: Path) -> None:
    from interp.report.sweepdata import load_points
    from slurm.submit import record_point

    topk = _cfg(tmp_path, 3, num_latents=64)
    rot = _cfg(tmp_path, 5, "neurons", expansion_factor=1, num_latents=0, rotate=True,
               hook="layers.5.mlp.down_proj:input")  # fmt: skip
    root = record_point(topk, {"overrides": ["layer=3"], "multirun_dir": "m", "job_num": 0})
    record_point(rot, None)
    atomic_write_json(RunPaths(root, topk).train_summary(), {"fvu": 0.25})
    by_layer = {p.layer: p for p in load_points(root)}
    for cfg in (topk, rot):
        paths, point = RunPaths(root, cfg), by_layer[cfg.layer]
        assert point.point_id == paths.ids.point
        assert (point.sae_id, point.hookpoint) == (cfg.sae.sae_id, cfg.hookpoint)
        assert (point.info.model_name, point.info.ctx_len) == (cfg.model.name, cfg.data.ctx_len)
        assert point.files.sae_dir == paths.sae_dir()
        assert point.files.store_dir == paths.store_dir()
        assert point.files.train_metrics == paths.train_metrics()
    assert by_layer[3].train == {"fvu": 0.25} and by_layer[5].train == {}
    assert by_layer[3].overrides == ["layer=3"] and by_layer[5].overrides is None
    assert (by_layer[3].kind, by_layer[5].kind) == ("SAE latents", "rotated neurons")


def names_imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
            for a in n.names}  # fmt: skip


def test_report_modules_never_import_the_run_config(tmp_path: Path) -> None:
    offenders = {
        p.name: sorted(names_imported(p) & {"RunConfig", "RunPaths", "load_run_config"})
        for p in (ROOT / "interp" / "report").glob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}, offenders
    planted = tmp_path / "bad.py"
    planted.write_text("def f():\n    from interp.runs import RunPaths\n")
    assert names_imported(planted) == {"RunPaths"}
