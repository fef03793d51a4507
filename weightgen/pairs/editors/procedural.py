"""The offline editor: the concept's text embedding chooses, blends and tunes real image operations.

Why it works for this project: the weight generator must learn a smooth text -> LoRA map, so the
edits must be a smooth function of the text embedding. Everything here is continuous in it:

1. weights: the concept embedding is explained as a sparse non-negative mix of the ops'
   description embeddings (non-negative lasso). A composition embeds near the sum of its parts,
   so "van gogh style, at night" gets both the painting op and the night op, where a nearest-
   description rule would pick one. Only the top-k survive, by subtracting the (k+1)-th weight
   (an op enters or leaves the blend at weight zero, never with a jump); the lasso solution is
   continuous in the embedding, so the whole map is.
2. parameters: each op parameter is the projection of the (centred) embedding on a fixed random
   direction, squashed into the parameter's range.
3. application: the surviving ops run in the bank's fixed order (structure -> colour ->
   overlays), each blended in with strength weight / max weight, so "van gogh style, at night"
   paints first and darkens after.

Paraphrases embed close together, so they pick the same ops with close weights and parameters.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import numpy as np
import torch

from prompts.identity import normalize_concept, stable_seed
from weightgen.errors import WeightgenError
from weightgen.pairs.editors.context import OpContext
from weightgen.pairs.editors.images import from_float_images, to_float_images
from weightgen.pairs.editors.ops import OPS, Op
from weightgen.text_encoders import load_text_encoder

# Generic phrasings that carry no look of their own. They join the lasso's dictionary so that
# "made of ..." or "in the style of ..." is explained by them instead of by whichever op's
# description happens to share the words (without them "made of gold" borrows the lego op).
PHRASING_ANCHORS = (
    "made of a material",
    "in the style of an artist",
    "a photo of a scene",
    "as a thing, turned into something",
)


# Below this cosine similarity between a concept and its nearest op description, no op explains
# the concept (explain() warns). Measured: 99% of the shipped prompt set's concepts lie above
# 0.28 (a few bank-less looks such as "desaturated" below); "a cat" 0.23, "hello world" 0.18.
EXPLAINED_SIMILARITY = 0.25


@dataclass
class ProceduralConfig:
    sparsity: float = 0.05  # lasso penalty: higher = fewer ops explain a concept
    top_k: int = 3  # ops blended per concept
    solver_steps: int = 1500  # projected-gradient steps of the lasso (~70 atoms: ~10 ms per concept)
    param_gain: float = 1.0  # how far parameters spread over their ranges across concepts
    seed: int = 0  # pattern seed (grain, paper, snow) when edit() is given none
    text_encoder: str = "minilm"  # weightgen.text_encoders registry key
    batch_size: int = 256  # images per op call; bounds memory, not results
    # torch intra-op threads while planning and editing (restored after; None = torch's setting).
    # One short text and 64x64 batches are too small to gain from threads, and on a shared 2-core
    # CPU two threads measured 5-10x slower than one (scripts/bench_editor.py).
    num_threads: int | None = 1

    def __post_init__(self):
        if not self.sparsity >= 0:
            raise WeightgenError(f"sparsity must be >= 0, got {self.sparsity}")
        if self.solver_steps < 1:
            raise WeightgenError(f"solver_steps must be >= 1, got {self.solver_steps}")
        if not 1 <= self.top_k < len(OPS):
            raise WeightgenError(f"top_k must be in [1, {len(OPS) - 1}], got {self.top_k}")
        if not self.param_gain >= 0:
            raise WeightgenError(f"param_gain must be >= 0, got {self.param_gain}")
        if self.batch_size < 1:
            raise WeightgenError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.num_threads is not None and self.num_threads < 1:
            raise WeightgenError(f"num_threads must be >= 1 or None, got {self.num_threads}")


@dataclass
class EditStep:
    op: str
    weight: float  # blend strength in (0, 1]; the strongest op of a plan has 1
    params: dict[str, float]


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with n torch threads, then restore the caller's setting."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _direction(name: str, dim: int) -> torch.Tensor:
    """A fixed unit vector per op parameter, seeded by its name (adding ops moves no other)."""
    seed = stable_seed(name, algorithm="sha1")
    v = torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return v / v.norm()


class ProceduralEditor:
    """See the module docstring. `encoder`: a loaded text encoder, to share one across stages.

    Subclasses (the bank editor) change the bank (`bank()`) and how a plan is applied (`_apply`);
    the planning is this class's for every bank.
    """

    name = "procedural"
    config_class: type = ProceduralConfig

    def __init__(self, config: Any = None, encoder: Any = None, **overrides):
        if config is not None and overrides:
            raise WeightgenError(f"pass either a config or keyword options, not both: {sorted(overrides)}")
        self.config = config or self.config_class(**overrides)
        self.ops: dict[str, Op] = self.bank()
        if not 1 <= self.config.top_k < len(self.ops):
            raise WeightgenError(f"top_k must be in [1, {len(self.ops) - 1}], got {self.config.top_k}")
        if encoder is None:
            encoder = load_text_encoder(self.config.text_encoder)
        self.encoder = encoder
        self.op_names = list(self.ops)
        desc = self.encoder.embed([self.ops[n].description for n in self.op_names]).double()  # (K, D)
        self.op_embeddings = desc
        # the lasso dictionary: op descriptions plus phrasing anchors (dropped after solving)
        atoms = torch.cat([desc, self.encoder.embed(list(PHRASING_ANCHORS)).double()])  # (K + A, D)
        self._atoms = atoms.numpy()
        self._gram = self._atoms @ self._atoms.T  # (K + A, K + A)
        self._step = 1.0 / float(np.linalg.eigvalsh(self._gram).max())
        self.center = desc.mean(0)  # (D,) shared component of all descriptions
        dim = desc.shape[1]
        self.directions = {
            (op, p.name): _direction(f"{op}.{p.name}", dim) for op in self.op_names for p in self.ops[op].params
        }
        self._plans: OrderedDict[str, list[EditStep]] = OrderedDict()
        self._cache: OrderedDict = OrderedDict()  # superpixels of recent source batches

    def bank(self) -> dict[str, Op]:
        """The ops concepts are matched against, in application order."""
        return OPS

    def describe(self) -> dict:
        return {"name": self.name, **asdict(self.config), "ops": len(self.op_names)}

    def explain(self, concept: str) -> dict[str, float]:
        """The ops `concept` gets and their blend weights, strongest first (printed and recorded per concept).

        Warns when no op explains the text: no op description is near it (a bare subject like "a
        cat", a look the bank lacks), or the lasso leaves every op at zero. The concept still gets
        ops, but they are whatever lies least far, and its pairs may not show what was meant.
        """
        steps = self.plan(concept)
        ops = {s.op: round(s.weight, 4) for s in sorted(steps, key=lambda s: -s.weight)}
        e = self.embed(concept)
        sims = self.op_embeddings @ e
        best = int(sims.argmax())
        if sims[best] < EXPLAINED_SIMILARITY or not (self.mix_weights(e) > 0).any():
            got = ", ".join(f"{op} {w:.2f}" for op, w in ops.items())
            warnings.warn(f"no op of the {self.name} editor explains {normalize_concept(concept)!r} (nearest op "
                          f"description: {self.op_names[best]}, similarity {float(sims[best]):.2f} < "
                          f"{EXPLAINED_SIMILARITY}); it gets {got}. Name a look instead (e.g. 'oil painting', "
                          "'at night', 'made of gold')", stacklevel=2)
        return ops

    # ------------------------------------------------------------------ plan
    def embed(self, concept: str) -> torch.Tensor:
        return self.encoder.embed([normalize_concept(concept)])[0].double()  # (D,)

    def plan(self, concept: str) -> list[EditStep]:
        """The ops, blend strengths and parameters a concept maps to (cached per text)."""
        key = normalize_concept(concept)
        if key not in self._plans:
            with _torch_threads(self.config.num_threads):
                self._plans[key] = self.plan_from_embedding(self.embed(key))
            if len(self._plans) > 4096:
                self._plans.popitem(last=False)
        return self._plans[key]

    def plan_from_embedding(self, e: torch.Tensor) -> list[EditStep]:
        cfg = self.config
        w = self.mix_weights(e)  # (K,)
        cutoff = torch.sort(w, descending=True).values[cfg.top_k]
        w = (w - cutoff).clamp(min=0)  # continuous top-k: the (k+1)-th op sits at exactly zero
        if w.max() <= 0:  # lasso all zero (sparsity too high) or a tie at the top: nearest op alone
            w = (self.op_embeddings @ e == (self.op_embeddings @ e).max()).double()
        w = w / w.max()
        z = (e - self.center) * math.sqrt(e.numel())  # centred; projections ~ N(0, 1)-ish
        steps = []
        for i, name in enumerate(self.op_names):  # bank order = application order
            if w[i] <= 0:
                continue
            params = {}
            for p in self.ops[name].params:
                s = torch.sigmoid(cfg.param_gain * (z @ self.directions[(name, p.name)])).item()
                params[p.name] = p.low + (p.high - p.low) * s
            steps.append(EditStep(op=name, weight=float(w[i]), params=params))
        return steps

    def mix_weights(self, e: torch.Tensor) -> torch.Tensor:
        """argmin_{a >= 0} 0.5 |e - a @ E|^2 + sparsity * sum(a), by projected gradient (ISTA)."""
        a = np.zeros(len(self._atoms))
        c = self._atoms @ e.numpy() - self.config.sparsity  # (K + A,); numpy: tiny matvecs, no overhead
        for _ in range(self.config.solver_steps):
            a = np.maximum(a - self._step * (self._gram @ a - c), 0.0)
        return torch.from_numpy(a[: len(self.op_names)])

    # ------------------------------------------------------------------ edit
    @torch.no_grad()
    def edit(self, sources: Any, concept: str, seed: int | None = None) -> Any:
        """(N, 3, H, W) uint8 or float [0, 1] -> edited images of the same shape and kind."""
        x, was_uint8 = to_float_images(sources)
        steps = self.plan(concept)
        seed = self.config.seed if seed is None else int(seed)
        with _torch_threads(self.config.num_threads):
            outs = [self._apply(chunk, steps, seed) for chunk in x.split(self.config.batch_size)]
        return from_float_images(torch.cat(outs) if outs else x, was_uint8)

    def _apply(self, x: torch.Tensor, steps: list[EditStep], seed: int) -> torch.Tensor:
        y = self._run(x, steps, OpContext(source=x, seed=seed, cache=self._cache))
        while len(self._cache) > 8:
            self._cache.popitem(last=False)
        return y

    def _run(self, y: torch.Tensor, steps: list[EditStep], ctx: OpContext) -> torch.Tensor:
        """Each step's op on the running image, blended in with its weight, in bank order."""
        for step in steps:
            edited = self.ops[step.op].fn(y, step.params, ctx).clamp(0, 1)
            y = edited if step.weight >= 1 else y + (edited - y) * step.weight
        return y
