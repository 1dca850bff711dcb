"""LLM tokens per latent for explain + detection + fuzzing: our prompts vs eai-delphi's.

    python bench/llm_tokens_vs_delphi.py                       # tokens (8 latents) + accuracy (3)
    python bench/llm_tokens_vs_delphi.py --accuracy-latents 0  # tokens only (seconds)
    python bench/llm_tokens_vs_delphi.py --accuracy-latents 2 --score-examples 20  # quicker

Latents: *planted* features on real text. The bundled corpus (Shakespeare + Python docs)
is packed into 256-token contexts with SmolLM2-135M's tokenizer (delphi's
``cache_ctx_len``), and each latent fires, with a random strength in [1, 4], on the
tokens of one class (digits, Python keywords, second-person pronouns, kinship words, ...).
A rule with a known meaning keeps the accuracy comparison about the scorer prompts, not
about whether a tiny SAE learned anything. Examples come from ``interp.latents``
at delphi's default counts: 32-token windows, 10 quantiles, 40 explainer examples,
50 activating + 50 non-activating examples per scorer, threshold 0.3.

Both sides see the SAME examples and, when scoring, the SAME explanation (ours, from the
LLM): delphi's prompts are rendered by eai-delphi 0.1.3 itself in its anchor venv
(``DefaultExplainer`` with its CLI defaults: activations shown; ``DetectionScorer`` /
``FuzzingScorer`` with ``n_examples_shown=5``, its CLI default, and its own shuffling and
batching), ours by the real scorer code (``interp.score``) against a counting client.
Tokens are counted with the judge's tokenizer and chat template (Qwen2.5-Coder-1.5B-
Instruct). *Logical* prompt tokens = what a stateless API bills (every prompt in full).
*Computed* = what a server with a prefix cache runs: vLLM-style 16-token blocks, one
cache over the whole bench (a shared system prompt or few-shot block is paid once).
Completions in the token table are the shortest well-formed answer (delphi ``[1,0,..]``,
ours ``i: Yes`` lines, one token for a log-prob read, the explanation line), each plus
an end-of-turn token; the accuracy part measures the real ones.

Accuracy: the real offline LLM (``--llm``, default Qwen2.5-Coder-1.5B-Instruct via
transformers on CPU) explains each latent with our prompt, then scores that explanation
with ours (one example per prompt, and 5 numbered examples per prompt) and with delphi's
prompts (its reply parsed as delphi does: first ``[...]``, JSON, length 5; anything
else fails the 5 examples). delphi's default has no probabilities (``log_probs=False``),
so its AUROC is that of its 0/1 answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import re
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.anchors import DELPHI, AnchorWorker, read_stamp  # noqa: E402

log = logging.getLogger("bench.llm_tokens_vs_delphi")

SUBJECT = "smollm2-135m"
JUDGE_TOKENIZER = "qwen2.5-coder-1.5b-instruct"
CTX_LEN = 256  # delphi CacheConfig.cache_ctx_len
WINDOW = 32  # delphi ConstructorConfig.example_ctx_len
N_QUANTILES = 10
N_EXPLAIN = 40  # delphi SamplerConfig.n_examples_train
N_SCORE = 50  # delphi n_examples_test and n_non_activating
PER_PROMPT = 5  # delphi RunConfig.num_examples_per_scorer_prompt
THRESHOLD = 0.3
BLOCK = 16  # vLLM prefix-cache block size

# (name, the rule's meaning, token strings (stripped, lower case) it fires on; None = digits)
PLANTED: list[tuple[str, str, frozenset[str] | None]] = [
    ("digits", "numbers written with digits", None),
    (
        "python_keywords",
        "Python keywords such as def, class, import and return",
        frozenset(["def", "class", "import", "return", "lambda", "yield", "raise", "except"]),
    ),
    (
        "second_person",
        "second-person pronouns (you, your, thou, thee, thy)",
        frozenset(["you", "your", "yours", "thou", "thee", "thy", "thine", "ye"]),
    ),
    (
        "kinship",
        "words for family members (father, mother, son, brother, wife)",
        frozenset(
            [
                "father",
                "mother",
                "son",
                "daughter",
                "brother",
                "sister",
                "uncle",
                "cousin",
                "wife",
                "husband",
            ]
        ),
    ),
    (
        "royalty",
        "words about royalty (king, queen, prince, crown, majesty)",
        frozenset(
            ["king", "queen", "prince", "princess", "crown", "throne", "majesty", "duke", "kingdom"]
        ),
    ),
    (
        "negation",
        "negation words (not, never, no, nor, nothing)",
        frozenset(["not", "never", "nor", "no", "none", "nothing", "cannot"]),
    ),
    (
        "death",
        "words about death and killing",
        frozenset(
            ["death", "dead", "die", "dies", "died", "kill", "killed", "grave", "murder", "slain"]
        ),
    ),
    (
        "love",
        "words about love (love, loved, lover, heart, dear)",
        frozenset(["love", "loved", "loves", "lover", "loving", "heart", "dear", "sweet"]),
    ),
]


# ---------------------------------------------------------------------------- latents
def planted_latents(n: int, max_tokens: int) -> tuple[list[Any], list[str], Any]:
    """[(name, description, LatentExamples)] for the first ``n`` planted rules."""
    from interp.config import DataConfig, ExamplesConfig
    from interp.data import pack_windows
    from interp.latents import build_examples
    from interp.models.load import load_tokenizer

    tok = load_tokenizer(SUBJECT)
    windows_WT = pack_windows(
        DataConfig(source="bundled", ctx_len=CTX_LEN, max_tokens=max_tokens), tok
    )
    ids_N = windows_WT.reshape(-1).astype(np.int64)
    vocab = np.unique(ids_N)
    strings = {int(i): tok.decode([int(i)]) for i in vocab}
    cfg = ExamplesConfig(
        window=WINDOW,
        n_quantiles=N_QUANTILES,
        n_explain=N_EXPLAIN,
        n_score_active=N_SCORE,
        n_score_inactive=N_SCORE,
        min_examples=N_EXPLAIN + N_SCORE,
    )
    out = []
    for latent, (name, description, words) in enumerate(PLANTED[:n]):
        hit = {
            i
            for i, s in strings.items()
            if (s.strip().isdigit() if words is None else s.strip().lower() in words)
        }
        where = np.flatnonzero(np.isin(ids_N, list(hit)))
        rng = np.random.default_rng(latent)
        val = (1 + 3 * rng.random(len(where))).astype(np.float32)
        ex = build_examples(where, val, ids_N, CTX_LEN, cfg, latent)
        if ex.status != "ok":
            raise RuntimeError(f"planted latent {name}: {ex.n_active_contexts} contexts, too few")
        out.append((name, description, ex))
    log.info("%d planted latents over %d tokens", len(out), len(ids_N))
    return out, [strings.get(i, "") for i in range(int(vocab.max()) + 1)], tok


# ---------------------------------------------------------------------------- counting
class PrefixCache:
    """vLLM-style automatic prefix caching: hashed chains of full 16-token blocks."""

    def __init__(self) -> None:
        self.blocks: set[int] = set()

    def computed(self, ids: list[int]) -> int:
        """Tokens of ``ids`` a server must run (the rest is a cached block prefix)."""
        h, cached, fresh = 0, 0, True
        for b in range(len(ids) // BLOCK):
            h = hash((h, tuple(ids[b * BLOCK : (b + 1) * BLOCK])))
            if fresh and h in self.blocks:
                cached = (b + 1) * BLOCK
            else:
                fresh = False
                self.blocks.add(h)
        return len(ids) - cached


@dataclass
class Count:
    prompt: int = 0
    computed: int = 0
    completion: int = 0
    calls: int = 0

    def add(self, other: Count) -> None:
        self.prompt += other.prompt
        self.computed += other.computed
        self.completion += other.completion
        self.calls += other.calls

    def total(self) -> int:
        return self.prompt + self.completion


class Judge:
    """The judge's tokenizer and chat template, with one shared prefix cache."""

    def __init__(self) -> None:
        from interp.models.load import load_tokenizer

        self.tok = load_tokenizer(JUDGE_TOKENIZER)
        # one server (cache) per way of prompting, shared by all latents: a mode never
        # finds prompts another mode put in the cache
        self.caches: dict[str, PrefixCache] = defaultdict(PrefixCache)

    def chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        prefill = messages[-1]["role"] == "assistant"
        text = self.tok.apply_chat_template(
            messages,
            add_generation_prompt=not prefill,
            continue_final_message=prefill,
            tokenize=False,
        )
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def n(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def call(self, messages: list[dict[str, str]], completion: str | None, server: str) -> Count:
        """One request: its prompt, what the cache leaves to compute, a reply + end token."""
        ids = self.chat_ids(messages)
        done = 0 if completion is None else self.n(completion) + 1
        return Count(len(ids), self.caches[server].computed(ids), done, 1)


class CountingClient:
    """An LLMClient that answers nothing real and counts every request's tokens."""

    model_id = "counting"

    def __init__(self, judge: Judge, server: str) -> None:
        self.judge = judge
        self.server = server
        self.count = Count()

    async def next_token_logprobs(self, prompts, candidates):
        from interp.llm.base import ChoiceLogprobs

        out = []
        for p in prompts:
            c = self.judge.call(p, "", self.server)  # a log-prob read bills one token
            c.completion = 1
            self.count.add(c)
            out.append(ChoiceLogprobs({k: -0.7 for k in candidates}, c.prompt, 0))
        return out

    async def generate(self, messages, *, max_new_tokens, temperature=0.0):
        from interp.llm.base import Generation

        n = len(re.findall(r"^\d+\. ", messages[-2]["content"], re.M))
        reply = "\n".join(f"{i}: {'Yes' if i % 2 else 'No'}" for i in range(1, n + 1))
        c = self.judge.call(messages, reply.removeprefix("1:"), self.server)
        self.count.add(c)
        return Generation(reply.removeprefix("1:"), c.prompt, c.completion, 0)

    async def continuation_logprobs(self, messages, continuation, candidates=()):
        from interp.llm.base import TextLogprobs

        ids = self.judge.chat_ids(messages)
        reply = self.judge.tok(continuation, add_special_tokens=False)["input_ids"]
        full = ids + reply
        self.count.add(Count(len(full), self.judge.caches[self.server].computed(full), 0, 1))
        tokens = [self.judge.tok.decode([t]) for t in reply]
        cands = [{k: -0.7 for k in candidates} for _ in reply]
        return TextLogprobs(tokens, [0.0] * len(reply), cands, len(full), 0)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------- delphi side
DELPHI_WORKER = r"""
import random, sys, types

class _Any:
    def __init__(self, *a, **k):
        pass

def _stub(name):
    m = types.ModuleType(name)
    def _get(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Any
    m.__getattr__ = _get
    sys.modules[name] = m

for _n in ["vllm", "vllm.distributed", "vllm.distributed.parallel_state", "vllm.inputs"]:
    _stub(_n)  # delphi.clients imports vllm at module level; nothing here runs it

import torch
from delphi.explainers import DefaultExplainer
from delphi.latents.latents import ActivatingExample, Latent, LatentRecord, NonActivatingExample
from delphi.latents.samplers import normalize_activations
from delphi.scorers import DetectionScorer, FuzzingScorer


def _active(e):
    return ActivatingExample(
        tokens=torch.tensor(e["tokens"]), activations=torch.tensor(e["acts"]),
        str_tokens=e["str_tokens"], quantile=e["quantile"],
    )


def _inactive(e):
    return NonActivatingExample(
        tokens=torch.tensor(e["tokens"]), activations=torch.tensor(e["acts"]),
        str_tokens=e["str_tokens"], distance=-1,
    )


def handle(req):
    train = [_active(e) for e in req["train"]]
    test = [_active(e) for e in req["test"]]
    max_act = max(float(e.activations.max()) for e in train + test)
    normalize_activations(train, max_act)
    normalize_activations(test, max_act)
    record = LatentRecord(Latent("layers.15", req["latent"]))
    record.train, record.test = train, test
    record.not_active = [_inactive(e) for e in req["not_active"]]
    record.explanation = req["explanation"]
    explain = DefaultExplainer(None, threshold=0.3)._build_prompt(record.train)
    out = {"explain": explain}
    for name, cls in (("detection", DetectionScorer), ("fuzzing", FuzzingScorer)):
        scorer = cls(None, n_examples_shown=req["per_prompt"], log_prob=False)
        samples = scorer._prepare(record)
        scorer.rng.shuffle(samples)  # as Classifier.__call__ does
        batches = scorer._batch(samples)
        out[name] = [
            {
                "messages": scorer._build_prompt(req["explanation"], b),
                "labels": [bool(s.data.activating) for s in b],
                "quantiles": [int(s.data.distance) if s.data.activating else -1 for s in b],
            }
            for b in batches
        ]
    return out
"""


def delphi_example(ex: Any, strings: list[str]) -> dict[str, Any]:
    return {
        "tokens": ex.tokens.tolist(),
        "acts": ex.acts.astype(float).tolist(),
        "str_tokens": [strings[int(t)] for t in ex.tokens],
        "quantile": int(ex.quantile),
    }


def delphi_prompts(
    worker: AnchorWorker, latent: int, examples: Any, strings: list[str], explanation: str
) -> dict[str, Any]:
    return worker.request(
        {
            "latent": latent,
            "train": [delphi_example(e, strings) for e in examples.explain],
            "test": [delphi_example(e, strings) for e in examples.score_active],
            "not_active": [delphi_example(e, strings) for e in examples.score_inactive],
            "explanation": explanation,
            "per_prompt": PER_PROMPT,
        }
    )


DELPHI_LIST = re.compile(r"\[.*?\]")


def delphi_parse(text: str, n: int) -> list[bool] | None:
    """delphi's Classifier._parse: the first [...], JSON, exactly n entries; else None."""
    m = DELPHI_LIST.search(text)
    if m is None:
        return None
    try:
        values = json.loads(m.group(0))
    except ValueError:
        return None
    if not isinstance(values, list) or len(values) != n:
        return None
    return [bool(v) for v in values]


# ---------------------------------------------------------------------------- part A: tokens
def score_ctx(
    client: Any, examples: Any, render: Any, per_prompt: int, seed: int, read: str = "forced"
) -> Any:
    from interp.config import ScorerConfig
    from interp.score import ScoreContext

    return ScoreContext(
        latent=0,
        client=client,
        examples=examples,
        render=render,
        cfg=ScorerConfig(examples_per_prompt=per_prompt, batch_read=read, bootstrap_resamples=0),
        highlight_threshold=THRESHOLD,
        rng=np.random.default_rng(seed),
    )


# (examples per prompt, scorer.batch_read, column tag)
MODES = (
    (1, "forced", "single"),
    (PER_PROMPT, "forced", "forced"),
    (PER_PROMPT, "generate_logprobs", "gen"),
)
MODE_TAGS = tuple(m[2] for m in MODES)


def our_tokens(judge: Judge, examples: Any, render: Any, explanation: str) -> dict[str, Count]:
    """Our explain prompt and both scoring modes, counted (no model runs)."""
    from interp.explain import explain_messages
    from interp.score import run_scorers

    out = {"explain": judge.call(
        explain_messages(examples.explain, render, THRESHOLD, False),
        f"Explanation: {explanation}", "ours-explain",
    )}  # fmt: skip
    for per_prompt, read, tag in MODES:
        for name in ("detection", "fuzzing"):
            client = CountingClient(judge, f"ours-{tag}")
            ctx = score_ctx(client, examples, render, per_prompt, seed=0, read=read)
            asyncio.run(run_scorers((name,), ctx, explanation))
            out[f"{name}_{tag}"] = client.count
    return out


def delphi_tokens(judge: Judge, prompts: dict[str, Any], explanation: str) -> dict[str, Count]:
    out = {"explain": judge.call(prompts["explain"], f"[EXPLANATION]: {explanation}", "delphi")}
    for name in ("detection", "fuzzing"):
        c = Count()
        for b in prompts[name]:
            reply = "[" + ",".join("1" for _ in b["labels"]) + "]"
            c.add(judge.call(b["messages"], reply, "delphi"))
        out[name] = c
    return out


# ---------------------------------------------------------------------------- part B: accuracy
@dataclass
class Scored:
    metrics: dict[str, Any]
    usage: dict[str, int]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def _metered(llm: Any) -> Any:
    from interp.llm import MeteredClient

    return MeteredClient(llm)


def score_ours(
    llm: Any, examples: Any, render: Any, explanation: str, per_prompt: int, read: str = "forced"
) -> dict:
    from interp.score import run_scorers

    out = {}
    for name in ("detection", "fuzzing"):
        client = _metered(llm)
        t0 = time.perf_counter()
        ctx = score_ctx(client, examples, render, per_prompt, seed=0, read=read)
        res = asyncio.run(run_scorers((name,), ctx, explanation))[name]
        out[name] = Scored(res.metrics(), client.usage.as_dict(), time.perf_counter() - t0)
    return out


async def generate_all(client: Any, batches: list[dict[str, Any]], max_new: int) -> list[str]:
    gens = await asyncio.gather(
        *(client.generate(b["messages"], max_new_tokens=max_new) for b in batches)
    )
    return [g.text for g in gens]


def score_delphi(llm: Any, prompts: dict[str, Any], max_new_tokens: int) -> dict:
    from interp.score.metrics import classification_metrics

    out = {}
    for name in ("detection", "fuzzing"):
        client = _metered(llm)
        t0 = time.perf_counter()
        labels, probs, quantiles, failures = [], [], [], []

        replies = asyncio.run(generate_all(client, prompts[name], max_new_tokens))
        for b, text in zip(prompts[name], replies):
            pred = delphi_parse(text, len(b["labels"]))
            if pred is None:
                failures.append(text[:200])
            labels += b["labels"]
            quantiles += b["quantiles"]
            probs += [float(p) for p in pred] if pred else [float("nan")] * len(b["labels"])
        m = classification_metrics(
            np.array(labels), np.array(probs), np.array(quantiles), n_resamples=0
        )
        m["failures"] = failures
        out[name] = Scored(m, client.usage.as_dict(), time.perf_counter() - t0)
    return out


def accuracy_part(
    args: argparse.Namespace, latents: list, strings: list[str], render: Any, worker: Any
) -> list[dict[str, Any]]:
    from interp.config import ExplainerConfig, LLMConfig
    from interp.explain import explain
    from interp.llm.transformers_backend import TransformersClient

    llm = TransformersClient(LLMConfig(model=args.llm, score_batch_size=8))
    rows = []
    chosen = [(i, lat) for i, lat in enumerate(latents) if not args.only or lat[0] in args.only][
        : args.accuracy_latents
    ]
    for latent, (name, _description, examples) in chosen:
        examples = trim(examples, args.score_examples)
        t0 = time.perf_counter()
        ours = _metered(llm)
        res = asyncio.run(explain(ours, examples.explain, render, ExplainerConfig()))
        explanation = res.explanation or "nothing in particular"
        row: dict[str, Any] = {
            "latent": name,
            "explanation": explanation,
            "explain_ours": {"usage": ours.usage.as_dict(), "s": time.perf_counter() - t0},
        }
        log.info("%s: explanation %r (%.0f s)", name, explanation, time.perf_counter() - t0)
        prompts = delphi_prompts(worker, latent, examples, strings, explanation)
        if args.delphi_explain:
            t0 = time.perf_counter()
            theirs = _metered(llm)
            g = asyncio.run(theirs.generate(prompts["explain"], max_new_tokens=200))
            row["explain_delphi"] = {
                "usage": theirs.usage.as_dict(),
                "s": time.perf_counter() - t0,
                "text": g.text[-200:],
            }
        variants = {
            "ours_single": partial(score_ours, llm, examples, render, explanation, 1),
            "delphi": partial(score_delphi, llm, prompts, args.delphi_max_new_tokens),
        }
        if args.list_mode:
            variants["ours_list"] = partial(
                score_ours, llm, examples, render, explanation, PER_PROMPT, args.list_mode
            )
        for tag, run in variants.items():
            scored = run()
            row[tag] = {k: v.__dict__ for k, v in scored.items()}
            for k, v in scored.items():
                log.info(
                    "%s %s %s: balanced %.3f auroc %s failed %d, %s (%.0f s)",
                    name, tag, k, v.metrics["balanced_accuracy"] or float("nan"),
                    _f(v.metrics["auroc"]), v.metrics["n_failed"], v.usage, v.seconds,
                )  # fmt: skip
        if args.out:  # partial results survive an interrupted run
            args.out.with_suffix(".partial.json").write_text(
                json.dumps([*rows, row], default=lambda o: o.__dict__)
            )
        rows.append(row)
    llm.close()
    return rows


def trim(examples: Any, n: int) -> Any:
    """At most ``n`` activating (spread over quantiles) and ``n`` non-activating examples."""
    if n >= len(examples.score_active):
        return examples
    active = sorted(examples.score_active, key=lambda e: e.quantile)
    keep = [active[i] for i in np.linspace(0, len(active) - 1, n).round().astype(int)]
    return examples._replace(score_active=keep, score_inactive=examples.score_inactive[:n])


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


# ---------------------------------------------------------------------------- report
MODE_NAMES = {"single": "1-per", "forced": "5-per forced", "gen": "5-per gen+read"}


def token_table(rows: list[dict[str, Any]]) -> list[str]:
    ours = " / ".join(MODE_NAMES[t] for t in MODE_TAGS)
    head = (
        f"| latent | explain prompt ours / delphi | detection prompt {ours} / delphi | "
        f"fuzzing prompt {ours} / delphi | total (prompt + completion) {ours} / delphi | "
        f"ratio {ours} | computed ratio {ours} |"
    )
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        o, d = r["ours"], r["delphi"]

        def cells(name: str, o: dict = o, d: dict = d) -> str:
            return " / ".join(str(o[f"{name}_{t}"].prompt) for t in MODE_TAGS) + (
                f" / {d[name].prompt}"
            )

        lines.append(
            f"| {r['latent']} | {o['explain'].prompt} / {d['explain'].prompt} | "
            f"{cells('detection')} | {cells('fuzzing')} | "
            + " / ".join(str(r["total"][t].total()) for t in (*MODE_TAGS, "delphi"))
            + " | "
            + " / ".join(f"{r['ratio'][t]:.2f}" for t in MODE_TAGS)
            + " | "
            + " / ".join(f"{r['computed_ratio'][t]:.2f}" for t in MODE_TAGS)
            + " |"
        )
    return lines


def totals(ours: dict[str, Count], delphi: dict[str, Count]) -> dict[str, Any]:
    t = {k: Count() for k in (*MODE_TAGS, "delphi")}
    for tag in MODE_TAGS:
        t[tag].add(ours["explain"])
        t[tag].add(ours[f"detection_{tag}"])
        t[tag].add(ours[f"fuzzing_{tag}"])
    for k in ("explain", "detection", "fuzzing"):
        t["delphi"].add(delphi[k])
    theirs = t["delphi"]
    return {
        "total": t,
        "ratio": {k: t[k].total() / theirs.total() for k in MODE_TAGS},
        "computed_ratio": {
            k: (t[k].computed + t[k].completion) / (theirs.computed + theirs.completion)
            for k in MODE_TAGS
        },
    }


TAGS = {"ours_single": "ours 1-per", "ours_list": "ours 5-per", "delphi": "delphi"}


def accuracy_table(rows: list[dict[str, Any]]) -> list[str]:
    tags = [t for t in TAGS if t in rows[0]]
    names = ", ".join(TAGS[t] for t in tags)
    lines = [
        "| latent | explanation (ours) | scorer | "
        + " | ".join(f"{TAGS[t]} bal. acc / AUROC (failed)" for t in tags)
        + f" | prompt tok logical / computed: {names} | completion tok: {names} |",
        "|" + "---|" * (5 + len(tags)),
    ]
    for r in rows:
        for name in ("detection", "fuzzing"):
            xs = [r[t][name] for t in tags]

            def acc(x: dict[str, Any]) -> str:
                m = x["metrics"]
                return f"{_f(m['balanced_accuracy'])} / {_f(m['auroc'])} ({m['n_failed']})"

            lines.append(
                f"| {r['latent']} | {r['explanation']} | {name} | "
                + " | ".join(acc(x) for x in xs)
                + " | "
                + ", ".join(f"{x['usage']['prompt']}/{x['usage']['prompt_computed']}" for x in xs)
                + " | "
                + ", ".join(str(x["usage"]["completion"]) for x in xs)
                + " |"
            )
    return lines


def accuracy_summary(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for name in ("detection", "fuzzing"):
        parts = []
        for tag in (t for t in TAGS if t in rows[0]):
            ms = [r[tag][name]["metrics"] for r in rows]
            bal = [m["balanced_accuracy"] for m in ms if m["balanced_accuracy"] is not None]
            auc = [m["auroc"] for m in ms if m["auroc"] is not None]
            fail = sum(m["n_failed"] for m in ms)
            total = sum(m["n"] + m["n_failed"] for m in ms)
            parts.append(
                f"{TAGS[tag]}: balanced accuracy {statistics.fmean(bal):.3f}, AUROC "
                f"{statistics.fmean(auc):.3f}, failed {fail}/{total}"
                if bal and auc
                else f"{TAGS[tag]}: undefined"
            )
        out.append(f"- {name}: " + "; ".join(parts))
    return out


def render_section(args: argparse.Namespace, res: dict[str, Any], versions: dict) -> str:
    tok_rows = res["tokens"]
    mean = {k: statistics.fmean(r["ratio"][k] for r in tok_rows) for k in MODE_TAGS}
    cmean = {k: statistics.fmean(r["computed_ratio"][k] for r in tok_rows) for k in MODE_TAGS}
    lines = [
        f"## LLM tokens per latent vs eai-delphi — {res['date']}",
        "",
        f"Command: `{res['command']}` ({res['machine']}; eai-delphi "
        f"{versions.get('eai-delphi', '?')} in its anchor venv). Planted latents on the "
        f"bundled corpus ({res['n_tokens']} SmolLM2 tokens, contexts of {CTX_LEN}); delphi's "
        f"default counts: {N_EXPLAIN} explainer examples, {N_SCORE}+{N_SCORE} per scorer, "
        f"{WINDOW}-token windows, {PER_PROMPT} examples per delphi prompt. Tokens counted "
        "with Qwen2.5-Coder-1.5B-Instruct's tokenizer and chat template; completions are "
        "the shortest well-formed answers (+1 end token). Ratio = ours / delphi, prompt + "
        "completion, explain + detection + fuzzing; computed = with a shared vLLM-style "
        "prefix cache.",
        "",
        *token_table(tok_rows),
        "",
        "Mean ratio ours / delphi, logical tokens: "
        + ", ".join(f"**{mean[t]:.2f}x** ({MODE_NAMES[t]})" for t in MODE_TAGS)
        + "; computed tokens: "
        + ", ".join(f"{cmean[t]:.2f}x ({MODE_NAMES[t]})" for t in MODE_TAGS)
        + ".",
    ]
    if res.get("accuracy"):
        lines += [
            "",
            f"Accuracy with the real LLM ({args.llm}, transformers on CPU), "
            f"{args.score_examples}+{args.score_examples} examples per scorer, our "
            "explanation scored by all three (measured tokens from the backend: logical / "
            "computed with its prefix-KV reuse):",
            "",
            *accuracy_table(res["accuracy"]),
            "",
            *accuracy_summary(res["accuracy"]),
        ]
        ex = [r for r in res["accuracy"] if "explain_delphi" in r]
        if ex:
            ours = statistics.fmean(r["explain_ours"]["usage"]["completion"] for r in ex)
            theirs = statistics.fmean(r["explain_delphi"]["usage"]["completion"] for r in ex)
            lines.append(
                f"- explain completion tokens (measured): ours {ours:.0f}, delphi's prompt "
                f"{theirs:.0f}"
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latents", type=int, default=8, help="planted latents for token counts")
    p.add_argument("--accuracy-latents", type=int, default=3, help="latents scored by the LLM")
    p.add_argument("--score-examples", type=int, default=N_SCORE, help="per class, accuracy part")
    p.add_argument("--llm", default="qwen2.5-coder-1.5b-instruct")
    p.add_argument("--only", nargs="*", default=(), help="accuracy part: these latents only")
    p.add_argument("--max-tokens", type=int, default=1_500_000, help="corpus tokens")
    p.add_argument("--delphi-explain", action="store_true", help="also run delphi's explainer")
    p.add_argument("--delphi-max-new-tokens", type=int, default=40)
    p.add_argument(
        "--list-mode",
        choices=["forced", "generate", "generate_logprobs"],
        default=None,
        help="also score with 5 examples per prompt read this way (accuracy part)",
    )
    p.add_argument("--out", type=Path, default=None, help="write the JSON results here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from interp.explain import TokenRenderer

    latents, strings, subject_tok = planted_latents(args.latents, args.max_tokens)
    render = TokenRenderer(subject_tok)
    judge = Judge()
    res: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/llm_tokens_vs_delphi.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU",
        "n_tokens": args.max_tokens,
        "tokens": [],
    }
    with AnchorWorker(DELPHI, DELPHI_WORKER) as worker:
        for latent, (name, description, examples) in enumerate(latents):
            prompts = delphi_prompts(worker, latent, examples, strings, description)
            ours = our_tokens(judge, examples, render, description)
            theirs = delphi_tokens(judge, prompts, description)
            res["tokens"].append(
                {"latent": name, "ours": ours, "delphi": theirs, **totals(ours, theirs)}
            )
            log.info("%s: ratio %s", name, res["tokens"][-1]["ratio"])
        if args.accuracy_latents:
            res["accuracy"] = accuracy_part(args, latents, strings, render, worker)
    versions = (read_stamp(DELPHI) or {}).get("versions", {})
    section = render_section(args, res, versions)
    print("\n" + section, flush=True)
    if args.out:
        args.out.write_text(json.dumps(res, default=lambda o: o.__dict__, indent=1))


if __name__ == "__main__":
    main()
