"""The course's engine behind an OpenAI-compatible HTTP API: `python -m llmlab.serve.http`.

    python -m llmlab.serve.http --model agreement        # prints http://127.0.0.1:8000/v1
    curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
         -d '{"prompt": "the cat near the dogs", "max_tokens": 3, "temperature": 0}'

The endpoints vLLM, SGLang, llama.cpp's server and Ollama share: POST /v1/completions (prompt
as text or as a list of token ids, max_tokens, temperature, seed, stop, stream, stream_options,
logprobs, echo), POST /v1/chat/completions, GET /v1/models, GET /v1/models/{id} and GET /health.
The course's models were never trained on chats: a chat's prompt is its messages' contents, in
order, joined by one space (roles are dropped), a trivial template stated in the model's card.

Every field is checked, with its range (400 naming it). Fields of OpenAI's API that the server
does not implement (top_p, penalties, logit_bias, best_of > 1, suffix) are accepted only at the
value that changes nothing; any other value, and any unknown field, gets a 400 naming it. A seed
is any integer in [0, 2**64); without one, sampling draws a fresh seed per request. `stop` is a
string or a list of up to 4, matched in the answer's text and left out of it, as OpenAI does.

How a request flows:
1. The handler reads the body (413 past --max-body-bytes), checks every field, stamps the
   request's arrival on the engine's clock and hands it to the EngineLoop (503 with Retry-After
   when --max-waiting requests already wait; 503 when the loop is not running).
2. The EngineLoop, one asyncio task, moves new requests into the engine's live Session between
   steps and runs each step in the engine's own thread, so the event loop keeps serving HTTP
   while the model computes. Each new token goes to its request's queue. No exception ends the
   loop: the request that caused it gets an error, the others go on; /health answers 503 if the
   loop has stopped all the same.
3. A streamed answer is one server-sent event per token (`data: {...}`), then `usage` if
   stream_options.include_usage asked for it, then `data: [DONE]`. A client that goes away,
   streamed or not, is cancelled before the next step, and its KV blocks return to the pool.

Beyond the OpenAI fields, each choice carries its `token_ids`, and the last event with a choice
(or the whole answer) carries `llmlab_timeline`: the engine's own times for the request (seconds
from its arrival), so a client can set what it measured beside what the engine measured.
"""

import argparse
import asyncio
import contextlib
import ipaddress
import json
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from llmlab.agreement import VOCAB, Vocab
from llmlab.serve.engine import POLICIES, Engine
from llmlab.serve.request import Request
from llmlab.serve.runner import token_logprobs
from llmlab.serve.sequence import Sequence, Status

MODELS = {
    "agreement": "the trained model of chapters 1-4; word vocabulary, so text prompts work",
    "gpt2-small-random": "GPT-2-small shape, random weights; prompts as token ids",
    "tiny-random": "2 layers, 64 wide, 128-token context, random weights; for tests and demos",
}
DEFAULT_MAX_TOKENS = 16  # what OpenAI's API assumes when a request names none


@dataclass
class ServedModel:
    name: str
    model: torch.nn.Module
    vocab: Vocab | None  # None: prompts and answers are token ids only

    def decode(self, token: int) -> str:
        """One token's text; without a vocabulary, its id in brackets."""
        return f" {self.vocab.words[token]}" if self.vocab else f"[{token}]"


def load_model(name: str) -> ServedModel:
    """One of MODELS, in eval mode on the CPU. Random weights are seeded: the same every time."""
    from llmlab import GPTConfig, TinyGPT, load_agreement_model
    from llmlab.bench import GPT2_SMALL

    if name == "agreement":
        return ServedModel(name, load_agreement_model(), VOCAB)
    configs = {
        "gpt2-small-random": GPT2_SMALL,
        "tiny-random": GPTConfig(vocab_size=256, block_size=128, n_layer=2, n_head=4, n_embd=64),
    }
    if name not in configs:
        raise ValueError(f"model must be one of {list(MODELS)}, got {name!r}")
    torch.manual_seed(0)
    return ServedModel(name, TinyGPT(configs[name]).eval(), None)


# ---- errors: the body OpenAI's clients expect ---------------------------------------------------
class ApiError(Exception):
    """An HTTP error with an OpenAI-style body: {"error": {message, type, param, code}}."""

    def __init__(self, status, message, param=None, code=None, kind="invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = (
            status,
            message,
            param,
            code,
            kind,
        )

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        headers = {"Retry-After": "1"} if self.status == 503 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


# ---- the request body -----------------------------------------------------------------------------
MAX_LOGPROBS = 20  # vLLM's default cap (OpenAI's is 5)
MAX_STOPS = 4  # as OpenAI's API
ROLES = ("system", "developer", "user", "assistant")
CHAT_TEMPLATE = "the messages' contents, in order, joined by one space; roles are dropped"
# Fields of OpenAI's API this server does not implement: accepted only at their neutral value,
# which changes nothing; any other value gets a 400 that names the field.
NEUTRAL = {
    "top_p": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "best_of": 1,
    "logit_bias": {},
    "suffix": "",
    "top_logprobs": 0,
}
COMMON_FIELDS = {"model", "max_tokens", "temperature", "seed", "stop", "stream", "n", "user"}
COMMON_FIELDS |= {"stream_options", "ignore_eos", *NEUTRAL}
COMPLETION_FIELDS = COMMON_FIELDS | {"prompt", "logprobs", "echo"}
CHAT_FIELDS = COMMON_FIELDS | {"messages", "max_completion_tokens", "logprobs"}


@dataclass
class Completion:
    """A checked /v1/completions or /v1/chat/completions body."""

    prompt: list[int]
    max_tokens: int
    temperature: float
    seed: int | None  # as asked: None draws a fresh one
    stops: list[str]
    stream: bool
    include_usage: bool = False
    continuous_usage: bool = False  # vLLM's continuous_usage_stats: usage in every event
    logprobs: int | None = None
    echo: bool = False
    chat: bool = False
    shown_from: int = 0  # the prompt's tokens an echo shows: from this one on (after a <bos> added)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_completion(body: bytes, served: ServedModel, chat: bool = False) -> Completion:
    """Check a completions (or chat) body field by field; raise ApiError(400 or 404) naming it."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, f"the body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object, got {type(data).__name__}")
    known = CHAT_FIELDS if chat else COMPLETION_FIELDS
    unknown = sorted(k for k in data if k not in known)
    if unknown:
        message = f"unrecognized parameters: {', '.join(unknown)}; this endpoint takes "
        message += ", ".join(sorted(known))
        raise ApiError(400, message, unknown[0], "unsupported_parameter")
    for name, neutral in NEUTRAL.items():
        value = data.get(name)
        if value is not None and not (value == neutral and type(value) is not bool):
            message = f"{name} is not implemented by this server: leave it out (or {neutral!r})"
            raise ApiError(400, message, name, "unsupported_parameter")
    model = data.get("model")
    if model is not None and model != served.name:
        message = f"the model {model!r} does not exist; this server serves {served.name!r}"
        raise ApiError(404, message, "model", "model_not_found")
    config = served.model.config
    if chat:
        prompt = _prompt_ids(chat_text(data.get("messages")), served, "messages")
    else:
        prompt = _prompt_ids(data.get("prompt"), served)
    if len(prompt) >= config.block_size:
        message = (
            f"prompt is {len(prompt)} tokens: the model's context is {config.block_size}, "
            "which leaves no room for an answer"
        )
        raise ApiError(400, message, "messages" if chat else "prompt", "context_length_exceeded")
    name = "max_tokens"
    if chat and data.get("max_completion_tokens") is not None:
        name = "max_completion_tokens"
    max_tokens = data.get(name)
    if max_tokens is None:
        max_tokens = min(DEFAULT_MAX_TOKENS, config.block_size - len(prompt))
    if not _is_int(max_tokens):
        raise ApiError(400, f"{name} must be an integer, got {max_tokens!r}", name)
    if max_tokens < 1:
        raise ApiError(400, f"{name} must be >= 1, got {max_tokens}", name)
    if len(prompt) + max_tokens > config.block_size:
        message = (
            f"prompt ({len(prompt)} tokens) + {name} ({max_tokens}) exceeds the model's "
            f"context of {config.block_size} tokens"
        )
        raise ApiError(400, message, name, "context_length_exceeded")
    temperature = data.get("temperature", 1.0)
    if temperature is None:
        temperature = 1.0
    if not _is_number(temperature) or not 0 <= temperature <= 2:
        message = f"temperature must be a number in [0, 2], got {temperature!r}"
        raise ApiError(400, message, "temperature")
    seed = data.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed < 2**64):
        message = f"seed must be an integer in [0, 2**64 - 1] or null, got {seed!r}"
        raise ApiError(400, message, "seed")
    stream = _flag(data, "stream")
    options = data.get("stream_options")
    if options is not None:
        if not isinstance(options, dict) or set(options) - {
            "include_usage",
            "continuous_usage_stats",
        }:
            message = (
                'stream_options must be {"include_usage": true or false} (and vLLM\'s '
                f'"continuous_usage_stats"), got {options!r}'
            )
            raise ApiError(400, message[:300], "stream_options")
        if not stream:
            raise ApiError(400, "stream_options needs stream: true", "stream_options")
    include_usage = _flag(options or {}, "include_usage")
    continuous_usage = _flag(options or {}, "continuous_usage_stats")
    n = data.get("n")
    if n is not None and (not _is_int(n) or n != 1):
        raise ApiError(400, f"n must be 1 (one answer per request), got {n!r}", "n")
    user = data.get("user")
    if user is not None and not isinstance(user, str):
        raise ApiError(400, f"user must be a string, got {user!r}", "user")
    _flag(data, "ignore_eos")  # the course's models have no end-of-text token: always honoured
    logprobs = data.get("logprobs")
    if chat:
        if logprobs not in (None, False):
            message = "logprobs is implemented for /v1/completions only"
            raise ApiError(400, message, "logprobs", "unsupported_parameter")
        logprobs = None
    elif logprobs is not None and (not _is_int(logprobs) or not 0 <= logprobs <= MAX_LOGPROBS):
        message = f"logprobs must be an integer in [0, {MAX_LOGPROBS}] or null, got {logprobs!r}"
        raise ApiError(400, message, "logprobs")
    if logprobs is not None:
        logprobs = min(logprobs, config.vocab_size)
    echo = False if chat else _flag(data, "echo")
    added = served.vocab is not None and isinstance(data.get("prompt"), str)
    added = added and (not data["prompt"].split() or data["prompt"].split()[0] != "<bos>")
    return Completion(
        prompt,
        max_tokens,
        float(temperature),
        seed,
        _stops(data.get("stop")),
        stream,
        include_usage,
        continuous_usage,
        logprobs,
        echo,
        chat,
        shown_from=1 if chat or added else 0,
    )


def _flag(data: dict, name: str) -> bool:
    value = data.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"{name} must be true or false, got {value!r}", name)
    return value


def chat_text(messages) -> str:
    """The prompt of a chat: CHAT_TEMPLATE (the course's models were never trained on chats)."""
    shape = 'messages must be a non-empty list of {"role": ..., "content": "text"}'
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, f"{shape}, got {messages!r}"[:300], "messages")
    parts = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            got = message.get("role") if isinstance(message, dict) else message
            text = f"messages[{i}].role must be one of {list(ROLES)}, got {got!r}"
            raise ApiError(400, text[:300], "messages")
        content = message.get("content")
        if isinstance(content, list) and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in content
        ):
            content = " ".join(p["text"] for p in content)
        if not isinstance(content, str):
            text = f"messages[{i}].content must be text (a string or text parts), got {content!r}"
            raise ApiError(400, text[:300], "messages")
        parts.append(content)
    return " ".join(parts)


def _prompt_ids(prompt, served: ServedModel, param: str = "prompt") -> list[int]:
    vocab_size = served.model.config.vocab_size
    if isinstance(prompt, str):
        if served.vocab is None:
            message = f"the model {served.name!r} has no text vocabulary: send token ids"
            if param == "messages":
                message += " to /v1/completions (chat needs text)"
            raise ApiError(400, message, param)
        try:
            ids = served.vocab.encode(prompt)
        except ValueError as error:
            raise ApiError(400, f"{param}: {error}", param) from None
        if not ids:
            raise ApiError(400, f"{param} is empty: give at least one word", param)
        return ids if ids[0] == served.vocab.bos_id else [served.vocab.bos_id] + ids
    if not isinstance(prompt, list) or not all(_is_int(t) for t in prompt):
        message = "prompt must be a string or a list of token ids (one prompt per request)"
        raise ApiError(400, message, "prompt")
    if not prompt:
        raise ApiError(400, "prompt is empty: give at least one token id", "prompt")
    bad = [t for t in prompt if not 0 <= t < vocab_size]
    if bad:
        message = f"prompt holds token ids outside the vocabulary [0, {vocab_size}): {bad[:5]}"
        raise ApiError(400, message, "prompt")
    return prompt


def _stops(stop) -> list[str]:
    """`stop`: null, one string or a list of up to MAX_STOPS; matched in the answer's text."""
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(stops, list)
        or not all(isinstance(s, str) and s for s in stops)
        or len(stops) > MAX_STOPS
    ):
        message = f"stop must be a non-empty string or a list of up to {MAX_STOPS}, got {stop!r}"
        raise ApiError(400, message[:300], "stop")
    return stops


# ---- an answer, token by token -------------------------------------------------------------------
class Answer:
    """The text of one answer as its tokens arrive, cut before the first stop string.

    add() returns the text that may go out now: with stop strings, the end of the text that could
    still begin one is held back until it cannot. `finish` becomes "stop" (a stop string matched:
    it and what follows are left out) or "length" (max_tokens reached).
    """

    def __init__(self, c: Completion, served: ServedModel, prompt_logprobs=None):
        self.c, self.served = c, served
        self.tokens: list[int] = []  # those counted: up to the one that completed a stop
        self.text = ""  # the answer's text so far (without the echo), before cutting
        self.released = 0  # characters of text handed out
        self.cut: int | None = None  # where the stop string began
        self.finish: str | None = None
        self.echo = ""
        self.entries = []  # (text, log-prob or None, top dict or None, offset) per token
        shown = c.prompt[c.shown_from :]
        if c.echo:
            self.echo = "".join(served.decode(t) for t in shown)
            lps = (prompt_logprobs or [None] * len(c.prompt))[c.shown_from :]
            offset = 0
            for token, lp in zip(shown, lps):
                self._entry(token, lp, offset)
                offset += len(served.decode(token))

    def _entry(self, token, lp, offset):
        text = self.served.decode(token)
        if self.c.logprobs is None:
            return
        if lp is None:
            self.entries.append((text, None, None, offset))
            return
        top = {self.served.decode(t): v for t, v in lp[1]}
        self.entries.append((text, lp[0], top, offset))

    def add(self, token: int, finished: bool, logprob=None) -> str:
        """The next token; returns the text that may go out now."""
        if self.finish is not None:
            return ""  # a step ran before the stop reached the engine: not part of the answer
        self.tokens.append(token)
        if logprob is not None:
            self._entry(token, logprob, len(self.echo) + len(self.text))
        self.text += self.served.decode(token)
        found = [i for i in (self.text.find(s) for s in self.c.stops) if i >= 0]
        if found:
            self.cut, self.finish = min(found), "stop"
            self.entries = [e for e in self.entries if e[3] < len(self.echo) + self.cut]
            end = self.cut
        else:
            if finished:
                self.finish = "length"
            end = len(self.text) if finished else len(self.text) - self._held()
        out, self.released = self.text[self.released : end], max(self.released, end)
        return out

    def _held(self) -> int:
        """Characters at the end of the text that could begin a stop string."""
        held = 0
        for s in self.c.stops:
            for n in range(min(len(s) - 1, len(self.text)), held, -1):
                if self.text.endswith(s[:n]):
                    held = n
                    break
        return held

    @property
    def final_text(self) -> str:
        return self.echo + (self.text if self.cut is None else self.text[: self.cut])

    def logprobs(self, entries=None) -> dict | None:
        """OpenAI's completions shape: tokens, token_logprobs, top_logprobs, text_offset."""
        if self.c.logprobs is None:
            return None
        entries = self.entries if entries is None else entries
        return {
            "tokens": [e[0] for e in entries],
            "token_logprobs": [e[1] for e in entries],
            "top_logprobs": [e[2] for e in entries],
            "text_offset": [e[3] for e in entries],
        }


@torch.inference_mode()
def prompt_logprobs(model, ids: list[int], k: int) -> list:
    """Each prompt token's log-probability given the ones before it, and the k most likely
    (the first has none): what `echo` with `logprobs` returns. One forward pass, no cache."""
    logits = model(torch.tensor([ids], device=model.device))[0]  # (T, V)
    return [None] + [token_logprobs(logits[i - 1], ids[i], k) for i in range(1, len(ids))]


# ---- the engine, live ----------------------------------------------------------------------------
@dataclass
class Ticket:
    """One admitted request: its queue of (token, time, finished, logprob) items, or an ApiError."""

    request: Request
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    seq: Sequence | None = None
    done: bool = False


class EngineLoop:
    """Steps the engine's Session in a thread of its own while the event loop serves HTTP.

    Everything but the step runs on the event loop's thread, between steps: admitting,
    cancelling and handing out tokens never race the scheduler. No exception ends the loop:
    a request that cannot be admitted gets an error; a step that fails fails the requests in
    it (which of them broke it cannot be told), and the others go on.
    """

    def __init__(self, engine: Engine, max_waiting: int):
        self.session = engine.session()
        self.max_waiting = max_waiting
        self.incoming: list[Ticket] = []  # received, not yet in the engine
        self.to_cancel: list[tuple[Ticket, bool]] = []  # (ticket, its client went away)
        self.live: dict[Sequence, Ticket] = {}
        self.wake = asyncio.Event()
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="engine")
        self.cancelled = 0  # requests whose client went away before their last token
        self.failures = 0  # exceptions caught in the loop
        self.snapshot = {}  # the engine's state after the last step: /health reports it
        self._take_snapshot()

    def submit(self, request: Request) -> Ticket:
        waiting = len(self.incoming) + self.snapshot["waiting"]
        if waiting >= self.max_waiting:
            message = f"the waiting queue is full ({self.max_waiting} requests): retry later"
            raise ApiError(503, message, code="queue_full", kind="server_error")
        ticket = Ticket(request)
        self.incoming.append(ticket)
        self.wake.set()
        return ticket

    def cancel(self, ticket: Ticket, left: bool = True):
        """Its client went away (or a stop string ended it): the engine drops it before its
        next step."""
        if not ticket.done:
            ticket.done = True
            self.to_cancel.append((ticket, left))
            self.wake.set()

    async def in_engine_thread(self, function, *args):
        """Run function(*args) in the engine's thread, between steps (it may use the model)."""
        return await asyncio.get_running_loop().run_in_executor(self.thread, function, *args)

    async def run(self):
        while True:
            try:
                await self._turn()
            except Exception as error:  # a bug of ours: fail what is in flight, keep serving
                traceback.print_exc()
                self.failures += 1
                self._fail_all(
                    ApiError(500, f"the engine loop failed: {error}", kind="server_error")
                )
                await asyncio.sleep(0.01)  # never a busy loop, if it fails again at once

    async def _turn(self):
        self._admit()
        if not self.session.has_work():
            self.wake.clear()
            await self.wake.wait()
            return
        try:
            picked = await self.in_engine_thread(self.session.step)
        except Exception as error:  # fail what was in flight, keep serving
            traceback.print_exc()
            self.failures += 1
            self._fail_all(ApiError(500, f"the engine failed: {error}", kind="server_error"))
            return
        for seq, token in picked:
            ticket = self.live.get(seq)
            if ticket is None:
                continue
            finished = seq.status == Status.FINISHED
            logprob = seq.result.logprobs[-1] if seq.request.logprobs is not None else None
            ticket.queue.put_nowait((token, seq.result.token_times[-1], finished, logprob))
            if finished:
                ticket.done = True
                del self.live[seq]
        self._take_snapshot()
        # One turn of the event loop: every stream sends its new token now, before the next
        # step's Python code holds the GIL (the interpreter may keep it for 5 ms at a time).
        await asyncio.sleep(0)

    def _admit(self):
        for ticket, left in self.to_cancel:
            if ticket.seq is not None:
                self.live.pop(ticket.seq, None)
                self.session.cancel(ticket.seq)
            elif ticket in self.incoming:
                self.incoming.remove(ticket)
            self.cancelled += left
        incoming, self.to_cancel, self.incoming = self.incoming, [], []
        for ticket in incoming:
            if ticket.done:
                continue
            try:
                ticket.seq = self.session.add(ticket.request)  # checked by the handler
            except Exception as error:  # this request fails; the others go on
                traceback.print_exc()
                self.failures += 1
                ticket.done = True
                message = f"the request could not be admitted: {error}"
                ticket.queue.put_nowait(ApiError(500, message, kind="server_error"))
                continue
            self.live[ticket.seq] = ticket
        self._take_snapshot()

    def _take_snapshot(self):
        blocks, scheduler = self.session.engine.blocks, self.session.scheduler
        self.snapshot = {
            "running": len(scheduler.running),
            "waiting": len(scheduler.waiting),
            "free_blocks": blocks.num_free,
            "num_blocks": blocks.num_blocks,
            "steps": self.session.num_steps,
            "cancelled": self.cancelled,
            "failures": self.failures,
        }

    def _fail_all(self, error: ApiError):
        for ticket in list(self.live.values()) + self.incoming:
            ticket.queue.put_nowait(error)
            ticket.done = True
            if ticket.seq is not None:
                with contextlib.suppress(Exception):
                    self.session.cancel(ticket.seq)
        self.live, self.incoming = {}, []
        with contextlib.suppress(Exception):
            self._take_snapshot()

    def close(self):
        self._fail_all(ApiError(503, "the server is shutting down", kind="server_error"))
        self.thread.shutdown(wait=True)


# ---- the endpoints --------------------------------------------------------------------------------
def sse(data) -> str:
    """One server-sent event: a `data:` line and a blank line."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


async def read_body(request: HttpRequest, max_bytes: int) -> bytes:
    too_large = ApiError(413, f"the body is over {max_bytes} bytes", code="body_too_large")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return body


async def client_left(http: HttpRequest):
    """Returns when the client closes its connection (the body has been read by then)."""
    while (await http.receive())["type"] != "http.disconnect":
        pass


ENDPOINTS = (
    "POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /v1/models/{id}, "
    "GET /health"
)


def create_app(served: ServedModel, engine: Engine, max_waiting=64, max_body_bytes=2**20):
    """The Starlette app: /v1/completions, /v1/chat/completions, /v1/models, /health."""
    started = int(time.time())
    state = {}  # the EngineLoop and its task, made when the app starts (they need the event loop)
    counter = iter(range(1, 2**62))

    def loop_error() -> str | None:
        task = state.get("task")
        if task is None or not task.done():
            return None
        error = None if task.cancelled() else task.exception()
        return f"the engine loop has stopped: {error!r}"

    async def completions(http: HttpRequest):
        return await answer(http, chat=False)

    async def chat_completions(http: HttpRequest):
        return await answer(http, chat=True)

    async def answer(http: HttpRequest, chat: bool):
        loop: EngineLoop = state["loop"]
        arrival = loop.session.now()
        try:
            if loop_error():
                raise ApiError(503, loop_error(), code="engine_stopped", kind="server_error")
            c = parse_completion(await read_body(http, max_bytes=max_body_bytes), served, chat)
            # Unseeded sampling draws a fresh seed: two requests never share one by accident.
            seed = secrets.randbits(64) if c.seed is None else c.seed
            request = Request(
                c.prompt, c.max_tokens, arrival, None, c.temperature, seed, c.logprobs
            )
            error = loop.session.check(request)
            if error is not None:
                raise ApiError(400, error, "max_tokens")
            prompt_lp = None
            if c.echo and c.logprobs is not None:
                prompt_lp = await loop.in_engine_thread(
                    prompt_logprobs, served.model, c.prompt, c.logprobs
                )
            ticket = loop.submit(request)
        except ApiError as error:
            return error.response()
        kind = "chat.completion" if chat else "text_completion"
        head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{next(counter)}", "object": kind}
        head |= {"created": int(time.time()), "model": served.name}
        out = Answer(c, served, prompt_lp)
        if c.stream:
            head["object"] = "chat.completion.chunk" if chat else "text_completion"
            events = stream_events(loop, ticket, out, head)
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            # If the client leaves before the first event, the generator never starts and its
            # `finally` never runs: the background task cancels the request then (or does nothing).
            return StreamingResponse(
                events,
                media_type="text/event-stream",
                headers=headers,
                background=BackgroundTask(loop.cancel, ticket),
            )
        # Not streamed: the answer is collected while watching the connection, so a client that
        # gives up (a timeout, an SDK's retry) cancels its request as a streamed one does.
        collect = asyncio.ensure_future(collect_answer(loop, ticket, out))
        left = asyncio.ensure_future(client_left(http))
        try:
            await asyncio.wait({collect, left}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            left.cancel()
            if not collect.done():
                collect.cancel()
            loop.cancel(ticket)  # nothing if it finished
        if not collect.done() or collect.cancelled():
            return ApiError(
                499, "the client closed the connection", code="client_closed"
            ).response()
        if collect.exception() is not None:
            error = collect.exception()
            return (error if isinstance(error, ApiError) else ApiError(500, str(error))).response()
        if chat:
            message = {"role": "assistant", "content": out.final_text}
            choice = {"index": 0, "message": message, "logprobs": None}
        else:
            choice = {"index": 0, "text": out.final_text, "token_ids": out.tokens}
            choice["logprobs"] = out.logprobs()
        return JSONResponse(
            head
            | {"choices": [choice | {"finish_reason": out.finish}]}
            | final_fields(ticket, len(out.tokens))
        )

    async def models(_):
        return JSONResponse({"object": "list", "data": [card()]})

    async def model(http: HttpRequest):
        name = http.path_params["name"]
        if name != served.name:
            message = f"the model {name!r} does not exist; this server serves {served.name!r}"
            return ApiError(404, message, "model", "model_not_found").response()
        return JSONResponse(card())

    def card() -> dict:
        c = served.model.config
        about = {"id": served.name, "object": "model", "created": started, "owned_by": "llmlab"}
        about |= {"max_model_len": c.block_size, "vocab_size": c.vocab_size}
        about["chat_template"] = CHAT_TEMPLATE if served.vocab else None
        return about

    async def health(_):
        loop: EngineLoop = state["loop"]
        error = loop_error()
        if error:
            body = {"status": "error", "error": error, "model": served.name}
            return JSONResponse(body | loop.snapshot, status_code=503)
        return JSONResponse({"status": "ok", "model": served.name} | loop.snapshot)

    async def http_error(http: HttpRequest, error: HTTPException):
        message = error.detail
        if error.status_code in (404, 405):
            message = f"{error.detail}: {http.method} {http.url.path}; this server has {ENDPOINTS}"
        return ApiError(error.status_code, message, code=None).response()

    @contextlib.asynccontextmanager
    async def lifespan(_):
        loop = state["loop"] = EngineLoop(engine, max_waiting)
        task = state["task"] = asyncio.create_task(loop.run())
        task.add_done_callback(_report_stop)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            loop.close()

    routes = [
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", models),
        Route("/v1/models/{name:path}", model),
        Route("/health", health),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error}
    )
    app.state.engine = state  # tests reach the loop and its task here
    return app


def _report_stop(task: asyncio.Task):
    if not task.cancelled() and task.exception() is not None:
        print(f"llmlab server: the engine loop stopped: {task.exception()!r}", flush=True)


async def collect_answer(loop: EngineLoop, ticket: Ticket, out: Answer):
    """Wait for every token of a request that is not streamed."""
    while out.finish is None:
        item = await ticket.queue.get()
        if isinstance(item, ApiError):
            raise item
        out.add(item[0], item[2], item[3])
        if out.finish == "stop":
            loop.cancel(ticket, left=False)


def final_fields(ticket: Ticket, completion_tokens: int) -> dict:
    """usage, and the engine's own timeline of the request (seconds from its arrival)."""
    return {
        "usage": usage(ticket, completion_tokens),
        "llmlab_timeline": timeline(ticket, completion_tokens),
    }


def usage(ticket: Ticket, completion_tokens: int) -> dict:
    prompt = len(ticket.request.prompt)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }


def timeline(ticket: Ticket, completion_tokens: int) -> dict:
    result = ticket.seq.result
    arrival = result.arrival
    return {
        "arrival": 0.0,
        "prefill_start": result.prefill_start - arrival,
        "token_times": [t - arrival for t in result.token_times[:completion_tokens]],
    }


async def stream_events(loop: EngineLoop, ticket: Ticket, out: Answer, head: dict):
    """One event per token (the last with the engine's timeline), the usage when asked for
    (stream_options.include_usage, as OpenAI's API), then [DONE]."""
    chat = head["object"] == "chat.completion.chunk"
    nothing = {"usage": None} if out.c.include_usage else {}
    first = True
    try:
        while out.finish is None:
            item = await ticket.queue.get()
            if isinstance(item, ApiError):  # the status line has gone: the error is an event
                yield sse(item.body())
                return
            token, _, finished, logprob = item
            before = len(out.entries)
            text = out.add(token, finished, logprob)
            if out.finish == "stop":
                loop.cancel(ticket, left=False)
            if chat:
                delta = {"role": "assistant", "content": text} if first else {"content": text}
                choice = {"index": 0, "delta": delta, "logprobs": None}
            else:
                entries = out.entries if first else out.entries[before:]
                text = (out.echo if first else "") + text
                choice = {"index": 0, "text": text, "token_ids": [token]}
                choice["logprobs"] = out.logprobs(entries)
            first = False
            chunk = head | {"choices": [choice | {"finish_reason": out.finish}]} | nothing
            if out.c.continuous_usage:
                chunk["usage"] = usage(ticket, len(out.tokens))
            if out.finish is not None:
                chunk["llmlab_timeline"] = timeline(ticket, len(out.tokens))
            yield sse(chunk)
        if out.c.include_usage:
            yield sse(head | {"choices": [], "usage": usage(ticket, len(out.tokens))})
        yield sse("[DONE]")
    finally:  # the client went away (this generator was cancelled or closed), or it is done
        loop.cancel(ticket)


# ---- the server as a child process (tests, notebooks, benchmarks) --------------------------------
@contextlib.contextmanager
def running_server(model: str = "agreement", *flags: str, timeout: float = 120.0):
    """Start `python -m llmlab.serve.http` on 127.0.0.1 and a free port; yield its base URL.

        with running_server("agreement", "--max-waiting", "8") as url:  # http://127.0.0.1:PORT/v1
            ...

    The server is stopped when the block ends, however it ends (SIGTERM, then SIGKILL). Its
    output is kept in running_server.output (a list of lines) for a failing test to show.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}, got {model!r}")
    command = [sys.executable, "-m", "llmlab.serve.http", "--model", model]
    command += ["--host", "127.0.0.1", "--port", "0", *flags]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    lines, found = [], queue.Queue()
    running_server.output = lines

    def read():  # the whole time: a full pipe would block the server
        for line in process.stdout:
            lines.append(line.rstrip())
            match = re.search(r"http://127\.0\.0\.1:\d+/v1", line)
            if match:
                found.put(match.group(0))
        found.put(None)  # it exited

    threading.Thread(target=read, daemon=True).start()
    try:
        try:
            url = found.get(timeout=timeout)
        except queue.Empty:
            url = None
        if url is None:
            raise RuntimeError(f"the server did not start: {' / '.join(lines[-20:])}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---- the command line ------------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m llmlab.serve.http",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", choices=list(MODELS), default="agreement", help="; ".join(
        f"{name}: {about}" for name, about in MODELS.items()))  # fmt: skip
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 opens it "
        "to the network, with no authentication)",
    )
    parser.add_argument("--port", type=int, default=8000, help="0: any free port (printed)")
    parser.add_argument("--policy", choices=POLICIES, default="continuous")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=16, help="positions per KV block")
    parser.add_argument("--num-blocks", type=int, default=None, help="KV blocks in the pool")
    parser.add_argument("--chunk-size", type=int, default=None, help="prompt positions per step")
    parser.add_argument("--prefix-caching", action="store_true")
    parser.add_argument(
        "--max-waiting", type=int, default=64, help="requests that may wait; past it, 503"
    )
    parser.add_argument("--max-body-bytes", type=int, default=2**20, help="past it, 413")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the model")
    args = parser.parse_args(argv)
    for name in ("max_waiting", "max_body_bytes", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in [0, 65535], got {args.port}")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        run_server(args, parser)
    except KeyboardInterrupt:
        pass
    print("llmlab server: stopped", flush=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops the server as Ctrl-C does: gracefully, exit status 0


def run_server(args, parser):
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    served = load_model(args.model)
    try:
        engine = Engine(
            served.model,
            max_batch_size=args.max_batch_size,
            policy=args.policy,
            block_size=args.block_size,
            num_blocks=args.num_blocks,
            chunk_size=args.chunk_size,
            prefix_caching=args.prefix_caching,
        )
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    engine.run([Request([0] * 4, 2)])  # warm-up: the first steps allocate
    app = create_app(served, engine, args.max_waiting, args.max_body_bytes)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    asyncio.run(serve(uvicorn.Server(config), args.host, served.name))


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def serve(server: uvicorn.Server, host: str, name: str):
    """Run the server; print its URL once it listens (with the real port, when --port 0)."""
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        print(f"llmlab server: model {name} at http://{shown}:{port}/v1 (Ctrl-C stops it)")
        if not is_loopback(host):
            print(f"llmlab server: listening on {host}: other machines can reach it")
        sys.stdout.flush()
    await task


if __name__ == "__main__":
    main()
