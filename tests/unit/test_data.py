"""The corpus interface: sources, streamed packing, BOS modes, the token file, slices."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import interp.data.corpus as corpus_mod
import interp.data.pack as pack_mod
import interp.data.tokens as tokens_mod
from interp.config import DataConfig, load_run_config
from interp.data import (
    Documents,
    build_corpus,
    ensure_tokens,
    iter_windows,
    load_windows,
    open_windows,
    pack_windows,
    slice_windows,
    split_windows,
    token_dtype,
    write_token_file,
)
from interp.runs import RunIds, RunPaths
from interp.stages.inputs import token_source

TOKENIZER = "tiny-random-llama"  # SmolLM2's real tokenizer (BOS 1, EOS 2, 49,152 ids)


@pytest.fixture(scope="module")
def tok():
    from interp.models import load_tokenizer

    return load_tokenizer(TOKENIZER)


def words(i: int, n: int = 40) -> str:
    return " ".join(f"w{i}x{j}" for j in range(n))


def reference_windows(docs, tok, ctx, *, bos=None, sep=None):
    """The spec: tokenise every document whole, join with sep, cut, prepend BOS."""
    stream = []
    for d in docs:
        stream += tok(d, add_special_tokens=False)["input_ids"] + ([sep] if sep is not None else [])
    body = ctx - (bos is not None)
    rows = [stream[i * body : (i + 1) * body] for i in range(len(stream) // body)]
    return np.array([([bos] if bos is not None else []) + r for r in rows]).reshape(-1, ctx)


def collect(blocks) -> np.ndarray:
    return np.concatenate(list(blocks))


# ----------------------------------------------------------------------------- sources


def test_text_files_split_at_blank_line_runs_in_seeded_file_order(tmp_path, tok):
    docs = {f"f{i}.txt": [words(10 * i + k) for k in range(3)] for i in range(3)}
    for name, ds in docs.items():
        (tmp_path / name).write_text("\n\n\n".join(ds) + "\n\n\n\n   \n")
    cfg = DataConfig(source="text", paths=(str(tmp_path / "*.txt"),), shuffle_seed=1)
    got = list(build_corpus(cfg).documents())
    assert sorted(d.strip() for d in got) == sorted(d for ds in docs.values() for d in ds)
    assert got == list(build_corpus(cfg).documents())  # deterministic
    # each file's documents stay together and in file order
    assert sorted(tuple(got[i : i + 3]) for i in (0, 3, 6)) == sorted(map(tuple, docs.values()))


def test_text_reader_in_small_blocks_equals_splitting_whole(tmp_path, monkeypatch):
    text = "é\r\nab\n\n\n\ncd\n\n\nü" * 5 + "\n\n" + "x" * 30 + "\n\n\n\n\n\n\n" + "tail€"
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode())
    expected = [c for c in path.read_text(encoding="utf-8").split("\n\n\n") if c.strip()]
    for block in (1, 2, 3, 7, 1 << 20):
        monkeypatch.setattr(corpus_mod, "READ_CHARS", block)
        assert list(corpus_mod._text_documents(path)) == expected, block
    gz = tmp_path / "t.txt.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert list(corpus_mod._text_documents(gz)) == expected


def test_long_documents_are_cut_at_newlines_within_the_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_mod, "MAX_DOC_CHARS", 50)
    monkeypatch.setattr(corpus_mod, "READ_CHARS", 16)
    line = "0123456789 abcdefghi\n"  # 21 chars
    doc = line * 20 + "y" * 120  # one paragraph of 540 chars, no blank-line run
    (tmp_path / "a.txt").write_text(doc)
    pieces = list(corpus_mod._text_documents(tmp_path / "a.txt"))
    assert "".join(pieces) == doc
    assert all(len(p) <= 50 for p in pieces) and len(pieces) > 10
    assert all(p.endswith("\n") for p in pieces if "y" not in p)  # cut after a newline
    assert list(corpus_mod.cap_document(doc, 50)) == pieces
    assert list(Documents(lambda: [doc]).documents()) == pieces


def test_parquet_and_jsonl_one_document_per_row(tmp_path, tok):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [words(i, 30) for i in range(12)]
    pq.write_table(pa.table({"body": rows[:6] + [None, ""], "n": list(range(8))}), tmp_path / "a.parquet", row_group_size=3)  # fmt: skip
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.writelines(json.dumps({"body": r, "id": i}) + "\n" for i, r in enumerate(rows[6:]))
    pq_cfg = DataConfig(source="parquet", paths=(str(tmp_path / "*.parquet"),), text_field="body")
    js_cfg = DataConfig(source="jsonl", paths=(str(tmp_path / "*.jsonl.gz"),), text_field="body")
    assert list(build_corpus(pq_cfg).documents()) == rows[:6]  # null and empty rows skipped
    assert list(build_corpus(js_cfg).documents()) == rows[6:]
    windows = pack_windows(DataConfig(**{**vars(js_cfg), "ctx_len": 16, "shuffle_seed": 3}), tok)
    ref = reference_windows(rows[6:], tok, 16, bos=tok.bos_token_id, sep=tok.eos_token_id)
    perm = np.random.default_rng(3).permutation(len(ref))
    np.testing.assert_array_equal(windows, ref[perm])


def test_table_sources_name_the_missing_column_and_bad_lines(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": ["a"]}), tmp_path / "a.parquet")
    (tmp_path / "b.jsonl").write_text('{"content": "a"}\nnot json\n')
    with pytest.raises(ValueError, match=r"no column 'text'.*\['content'\].*data.text_field"):
        list(build_corpus(DataConfig(source="parquet", paths=(str(tmp_path / "a.parquet"),))).documents())  # fmt: skip
    with pytest.raises(ValueError, match=r"b.jsonl:1 has no key 'text'.*data.text_field"):
        list(build_corpus(DataConfig(source="jsonl", paths=(str(tmp_path / "b.jsonl"),))).documents())  # fmt: skip
    cfg = DataConfig(source="jsonl", paths=(str(tmp_path / "b.jsonl"),), text_field="content")
    with pytest.raises(ValueError, match=r"b.jsonl:2 is not a JSON object per line"):
        list(build_corpus(cfg).documents())
    with pytest.raises(FileNotFoundError, match="matched no files"):
        build_corpus(DataConfig(source="text", paths=(str(tmp_path / "none*.txt"),)))


def test_binary_or_foreign_text_and_broken_parquet_are_refused_naming_the_file(tmp_path):
    (tmp_path / "model.bin").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "latin1.txt").write_bytes("café naïve über ".encode("latin-1") * 200)
    (tmp_path / "stray.txt").write_bytes(b"plain text " * 500 + b"\xff" + b" more text" * 50)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 truncated")
    for name in ("model.bin", "latin1.txt"):
        cfg = DataConfig(source="text", paths=(str(tmp_path / name),))
        with pytest.raises(ValueError, match=rf"{name} is not UTF-8 text.*data.paths"):
            list(build_corpus(cfg).documents())
    (doc,) = build_corpus(
        DataConfig(source="text", paths=(str(tmp_path / "stray.txt"),))
    ).documents()
    assert doc.count("\ufffd") == 1  # one stray byte in real text is kept, replaced
    cfg = DataConfig(source="parquet", paths=(str(tmp_path / "broken.parquet"),))
    with pytest.raises(ValueError, match=r"broken.parquet is not a readable parquet file"):
        list(build_corpus(cfg).documents())


def test_hf_dataset_saved_to_disk_and_parquet_builder_offline(tmp_path, tok, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rows = [words(i, 25) for i in range(10)]
    ds = datasets.Dataset.from_dict({"text": rows, "label": list(range(10))})
    ds.save_to_disk(tmp_path / "saved")
    datasets.DatasetDict({"train": ds, "test": ds.select(range(2))}).save_to_disk(tmp_path / "dd")
    ds.to_parquet(tmp_path / "rows.parquet")

    saved = DataConfig(source="hf", hf_name=str(tmp_path / "saved"))
    assert list(build_corpus(saved).documents()) == rows
    test_split = DataConfig(source="hf", hf_name=str(tmp_path / "dd"), split="test")
    assert list(build_corpus(test_split).documents()) == rows[:2]
    builder = DataConfig(source="hf", hf_name="parquet", paths=(str(tmp_path / "*.parquet"),))
    assert list(build_corpus(builder).documents()) == rows  # streamed through load_dataset

    a = pack_windows(DataConfig(**{**vars(saved), "ctx_len": 24}), tok)
    b = pack_windows(DataConfig(**{**vars(builder), "ctx_len": 24}), tok)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"splits \['test', 'train'\], not 'validation'"):
        list(build_corpus(DataConfig(source="hf", hf_name=str(tmp_path / "dd"), split="validation")).documents())  # fmt: skip
    streamed_body = DataConfig(**{**vars(builder), "text_field": "body"})
    with pytest.raises(ValueError, match=r"no column 'body'.*'label'.*data.text_field"):
        list(build_corpus(streamed_body).documents())
    with pytest.raises(ValueError, match=r"no column 'body'.*'label'.*data.text_field"):
        list(build_corpus(DataConfig(source="hf", hf_name=str(tmp_path / "saved"), text_field="body")).documents())  # fmt: skip


def test_hf_hub_dataset_offline_is_a_clear_error():
    # tests run with HF_HUB_OFFLINE=1 (conftest): a hub id cannot be reached
    cfg = DataConfig(source="hf", hf_name="someone/not-cached-anywhere", hf_revision="v1")
    with pytest.raises(ValueError, match=r"cannot reach .*save_to_disk.*data.hf_name=DIR"):
        next(build_corpus(cfg).documents())


def test_data_config_refuses_incomplete_sources_and_warns_on_unused_keys():
    with pytest.raises(ValueError, match="needs data.paths"):
        DataConfig(source="jsonl")
    with pytest.raises(ValueError, match="needs data.hf_name"):
        DataConfig(source="hf")
    with pytest.raises(ValueError, match="needs data.ctx_len >= 2"):
        DataConfig(ctx_len=1, exclude_first=0)
    with pytest.warns(UserWarning, match="hf_revision has no effect"):
        DataConfig(hf_revision="main")


def test_new_data_keys_leave_existing_run_ids_unchanged():
    base = load_run_config({})
    same = load_run_config({"data": {"separator": "eos", "hf_revision": "", "hf_streaming": False}})  # fmt: skip
    assert RunIds.of(base).data == RunIds.of(same).data == "58ecf88343"  # the id before them
    assert RunIds.of(load_run_config({"data": {"separator": "none"}})).data != RunIds.of(base).data  # fmt: skip


# ----------------------------------------------------------------------------- packing


@pytest.mark.parametrize(
    ("prepend_bos", "separator"),
    [(True, "eos"), (True, "none"), (False, "eos"), (False, "bos"), (False, "none")],
)
def test_bos_modes(tok, prepend_bos, separator):
    docs = [words(i, 7 + 5 * i) for i in range(12)]
    ctx = 16
    got = collect(iter_windows(docs, tok, ctx, prepend_bos=prepend_bos, separator=separator))
    bos, eos = tok.bos_token_id, tok.eos_token_id
    sep = {"eos": eos, "bos": bos, "none": None}[separator]
    ref = reference_windows(docs, tok, ctx, bos=bos if prepend_bos else None, sep=sep)
    np.testing.assert_array_equal(got, ref)
    assert got.dtype == np.uint16 and got.shape[1] == ctx
    assert (got[:, 0] == bos).all() == prepend_bos
    body = got[:, 1:] if prepend_bos else got
    assert np.isin(body, [bos, eos]).any() == (sep is not None)
    assert not np.isin(body, [x for x in (bos, eos) if x != sep]).any()


def test_token_dtype_follows_the_vocabulary(tmp_path):
    assert token_dtype(49_152) == np.uint16 and token_dtype(65_536) == np.uint16
    assert token_dtype(65_537) == np.uint32 and token_dtype(262_144) == np.uint32

    class Big:  # a 200k vocabulary: ids above 65,535 need uint32
        bos_token_id, eos_token_id = 199_999, 199_998

        def __len__(self):
            return 200_000

        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[70_000 + len(t) % 7] * len(t) for t in texts]}

    cfg = DataConfig(source="text", paths=("x",), ctx_len=8, max_tokens=80)
    tf = write_token_file(tmp_path / "tokens.npy", Documents(lambda: ["abcde"] * 30), Big(), cfg)
    arr = np.load(tf.path)
    assert arr.dtype == np.uint32 and arr.shape == (10, 8) and arr.max() >= 70_000
    assert (arr[:, 0] == 199_999).all() and not tf.exhausted


def test_bounded_memory_streams_documents_and_tokeniser_calls(tmp_path, tok, monkeypatch):
    monkeypatch.setattr(pack_mod, "BATCH_DOCS", 8)
    monkeypatch.setattr(pack_mod, "BATCH_CHARS", 300)
    monkeypatch.setattr(tokens_mod, "PERMUTE_TOKENS", 64)  # the shuffle in many chunks
    pulled, calls = [], []

    def gen():
        for i in range(10**9):  # far larger than anything packed: must be read lazily
            pulled.append(i)
            yield words(i, 12)

    class Counting:
        def __init__(self, inner):
            self.inner = inner
            self.bos_token_id, self.eos_token_id = inner.bos_token_id, inner.eos_token_id

        def __len__(self):
            return len(self.inner)

        def __call__(self, texts, **kw):
            calls.append(sum(map(len, texts)))
            return self.inner(texts, **kw)

    cfg = DataConfig(source="text", paths=("x",), ctx_len=32, max_tokens=32 * 50)
    tf = write_token_file(tmp_path / "tokens.npy", Documents(gen), Counting(tok), cfg)
    assert tf.num_windows == 50 and not tf.exhausted
    assert len(calls) > 5 and max(calls) < 300 + 100  # one batch of text per call
    # documents pulled: those packed, plus at most the rest of the last tokeniser batch
    lengths = np.cumsum([len(tok(words(i, 12), add_special_tokens=False)["input_ids"]) + 1 for i in range(len(pulled))])  # fmt: skip
    needed = int(np.searchsorted(lengths, 50 * 31)) + 1
    assert needed <= len(pulled) <= needed + 8
    arr = np.load(tf.path)
    ref_docs = [words(i, 12) for i in range(len(pulled))]
    ref = reference_windows(ref_docs, tok, 32, bos=tok.bos_token_id, sep=tok.eos_token_id)[:50]
    np.testing.assert_array_equal(arr, ref[np.random.default_rng(0).permutation(50)])
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # temporaries gone


def test_bundled_default_tokens_are_unchanged(tok):
    """Golden hashes from the first release's packer: run ids assume these tokens."""
    golden = {
        (64, 19_200, True, 0): "96f3508d38b95006cee41dba36d3e0ec278a03e3b32ca7013e8af29ec030ba0c",
        (32, 9_600, False, 5): "4ae83aea3cecb8f472807b89a296b85b0364e113613af1620bdf5bc30cf31340",
    }
    for (ctx, max_tokens, bos, seed), digest in golden.items():
        cfg = DataConfig(ctx_len=ctx, max_tokens=max_tokens, prepend_bos=bos, shuffle_seed=seed)
        arr = pack_windows(cfg, tok)
        assert arr.shape == (max_tokens // ctx, ctx)
        assert hashlib.sha256(arr.astype(np.uint32).tobytes()).hexdigest() == digest


# ----------------------------------------------------------------------------- run folder


def run_paths(tmp_path: Path, corpus_dir: Path, **over) -> RunPaths:
    raw = {
        "out_dir": str(tmp_path / "runs"),
        "model": {"name": TOKENIZER},
        "data": {"source": "text", "paths": [str(corpus_dir / "*.txt")], "ctx_len": 32,
                 "max_tokens": 32 * 200, **over.pop("data", {})},
        "train": {"num_tokens": 32 * 40},
        "collect": {"num_tokens": 32 * 24, "slice_tokens": 32 * 8},
        **over,
    }  # fmt: skip
    cfg = load_run_config(raw)
    return RunPaths(RunPaths.sweep_root(cfg), cfg)


@pytest.fixture
def corpus_dir(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    for f in range(4):
        (d / f"{f}.txt").write_text("\n\n\n".join(words(100 * f + k, 20) for k in range(10)))
    return d  # 40 documents of ~80 tokens: ~100 windows of 32


def test_token_file_is_built_once_and_slices_are_deterministic(tmp_path, corpus_dir):
    paths = run_paths(tmp_path, corpus_dir)
    out = ensure_tokens(token_source(paths))
    first = out.read_bytes()
    arr = np.load(out, mmap_mode="r")
    assert arr.dtype == np.uint16 and arr.shape[1] == 32
    assert (
        out.stat().st_mtime_ns == ensure_tokens(token_source(paths)).stat().st_mtime_ns
    )  # not rebuilt
    train, coll = (
        load_windows(token_source(paths), "train"),
        load_windows(token_source(paths), "collect"),
    )
    assert split_windows(token_source(paths), "train") == (0, 40) and split_windows(
        token_source(paths), "collect"
    ) == (40, 64)
    np.testing.assert_array_equal(
        np.concatenate([train, coll]), open_windows(token_source(paths))[:64]
    )
    for start in (0, 256, 512):  # the plan's three collect slices of 8 windows
        part = slice_windows(token_source(paths), "collect", start, start + 256)
        np.testing.assert_array_equal(part.reshape(-1), coll.reshape(-1)[start : start + 256])
        assert part.shape == (8, 32)
    with pytest.raises(ValueError, match="not aligned to ctx_len=32"):
        slice_windows(token_source(paths), "collect", 8, 256)
    with pytest.raises(ValueError, match="ends past the collect split"):
        slice_windows(token_source(paths), "collect", 512, 800)
    # a fresh build of the same config (another machine, a rerun) gives the same bytes
    out.unlink()
    assert ensure_tokens(token_source(paths)).read_bytes() == first


def test_a_short_corpus_commits_nothing_so_adding_text_helps(tmp_path, corpus_dir):
    paths = run_paths(tmp_path, corpus_dir, train={"num_tokens": 32 * 150}, data={"max_tokens": 32 * 300})  # fmt: skip
    with pytest.raises(ValueError, match=r"gave \d+ windows.*174 windows.*add text.*train.num_tokens"):  # fmt: skip
        load_windows(
            token_source(paths), "train"
        )  # the first stage's first call, before any training
    assert not paths.tokens_file().exists()  # the data id hashes path strings: keep nothing
    assert not [p for p in paths.tokens_file().parent.iterdir() if p.suffix != ".lock"]
    for f in range(4, 12):  # the advice: more text under the same glob (same data id)
        (corpus_dir / f"{f}.txt").write_text("\n\n\n".join(words(100 * f + k, 20) for k in range(10)))  # fmt: skip
    assert RunPaths(paths.root, paths.cfg).ids.data == paths.ids.data
    assert load_windows(token_source(paths), "train").shape == (150, 32)


def test_a_short_token_file_committed_earlier_is_named_with_the_fix(tmp_path, corpus_dir):
    paths = run_paths(tmp_path, corpus_dir)
    ensure_tokens(token_source(paths))
    short = run_paths(tmp_path, corpus_dir, collect={"num_tokens": 32 * 160, "slice_tokens": 32 * 8})  # fmt: skip
    assert short.tokens_file() == paths.tokens_file()  # same data id, more windows needed
    with pytest.raises(ValueError, match=r"tokens.npy has \d+ windows.*delete that file"):
        load_windows(token_source(short), "collect")


def test_an_empty_corpus_commits_nothing(tmp_path):
    cfg = DataConfig(source="text", paths=("x",), ctx_len=16)
    with pytest.raises(ValueError, match="gave 0 windows"):
        write_token_file(tmp_path / "tokens.npy", Documents(lambda: ["  "]), _NoTok(), cfg)
    assert list(tmp_path.iterdir()) == []


class _NoTok:
    bos_token_id, eos_token_id = 1, 2

    def __len__(self):
        return 10

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[] for _ in texts]}


@pytest.mark.parametrize("preset", ["bundled", "text", "parquet", "jsonl", "hf"])
def test_conf_data_presets_build(preset):
    import yaml

    from interp.typed import build

    root = Path(__file__).resolve().parents[2]
    raw = yaml.safe_load((root / "conf" / "data" / f"{preset}.yaml").read_text())
    fill = {"paths": ["/data/*.txt"], "hf_name": "org/dataset"}  # the presets' required keys
    cfg = build(DataConfig, {k: fill[k] if v == "???" else v for k, v in raw.items()}, "data")
    assert cfg.source == preset
    if preset == "bundled":  # the default preset keeps the run ids it had
        assert RunIds.of(load_run_config({"data": raw})).data == RunIds.of(load_run_config({"data": {"max_tokens": 1_000_000}})).data  # fmt: skip
