"""The course's engine behind an OpenAI-compatible HTTP API: `python -m llmlab.serve.http`.

    python -m llmlab.serve.http --model agreement        # prints http://127.0.0.1:8000/v1
    curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
         -d '{"prompt": "the cat near the dogs", "max_tokens": 3, "temperature": 0}'

The endpoints vLLM, SGLang, llama.cpp's server and Ollama share: POST /v1/completions (prompt
as text or as a list of token ids, max_tokens, temperature, seed, stop, stream), GET /v1/models
and GET /health. No chat completions: the course's models are not chat models.

How a request flows:
1. The handler reads the body (413 past --max-body-bytes), checks every field (400 naming the
   field), stamps the request's arrival on the engine's clock and hands it to the EngineLoop
   (503 with Retry-After when --max-waiting requests already wait).
2. The EngineLoop, one asyncio task, moves new requests into the engine's live Session between
   steps and runs each step in the engine's own thread, so the event loop keeps serving HTTP
   while the model computes. Each new token goes to its request's queue.
3. The handler's stream turns each token into one server-sent event (`data: {...}`), then sends
   `usage` and `data: [DONE]`. A client that goes away is cancelled before the next step, and
   its KV blocks return to the pool.

Beyond the OpenAI fields, each choice carries its `token_ids`, and the last event carries
`llmlab_timeline`: the engine's own times for the request (seconds from its arrival), so a client
can set what it measured beside what the engine measured.
"""

import argparse
import asyncio
import contextlib
import ipaddress
import json
import queue
import re
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
@dataclass
class Completion:
    """A checked /v1/completions body."""

    prompt: list[int]
    max_tokens: int
    temperature: float
    seed: int | None
    stop_token: int | None
    stream: bool


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_completion(body: bytes, served: ServedModel) -> Completion:
    """Check a /v1/completions body field by field; raise ApiError(400 or 404) naming the field."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, f"the body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object, got {type(data).__name__}")
    model = data.get("model")
    if model is not None and model != served.name:
        message = f"the model {model!r} does not exist; this server serves {served.name!r}"
        raise ApiError(404, message, "model", "model_not_found")
    config = served.model.config
    prompt = _prompt_ids(data.get("prompt"), served)
    if len(prompt) >= config.block_size:
        message = (
            f"prompt is {len(prompt)} tokens: the model's context is {config.block_size}, "
            "which leaves no room for an answer"
        )
        raise ApiError(400, message, "prompt", "context_length_exceeded")
    max_tokens = data.get("max_tokens")
    if max_tokens is None:
        max_tokens = min(DEFAULT_MAX_TOKENS, config.block_size - len(prompt))
    if not _is_int(max_tokens):
        raise ApiError(400, f"max_tokens must be an integer, got {max_tokens!r}", "max_tokens")
    if max_tokens < 1:
        raise ApiError(400, f"max_tokens must be >= 1, got {max_tokens}", "max_tokens")
    if len(prompt) + max_tokens > config.block_size:
        message = (
            f"prompt ({len(prompt)} tokens) + max_tokens ({max_tokens}) exceeds the model's "
            f"context of {config.block_size} tokens"
        )
        raise ApiError(400, message, "max_tokens", "context_length_exceeded")
    temperature = data.get("temperature", 1.0)
    if not _is_number(temperature) or not 0 <= temperature <= 2:
        message = f"temperature must be a number in [0, 2], got {temperature!r}"
        raise ApiError(400, message, "temperature")
    seed = data.get("seed")
    if seed is not None and not _is_int(seed):
        raise ApiError(400, f"seed must be an integer or null, got {seed!r}", "seed")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, f"stream must be true or false, got {stream!r}", "stream")
    if data.get("n", 1) != 1:
        raise ApiError(400, f"n must be 1 (one answer per request), got {data['n']!r}", "n")
    stop_token = _stop_token(data.get("stop"), served)
    return Completion(prompt, max_tokens, float(temperature), seed, stop_token, stream)


def _prompt_ids(prompt, served: ServedModel) -> list[int]:
    vocab_size = served.model.config.vocab_size
    if isinstance(prompt, str):
        if served.vocab is None:
            message = f"the model {served.name!r} has no text vocabulary: send token ids"
            raise ApiError(400, message, "prompt")
        try:
            ids = served.vocab.encode(prompt)
        except ValueError as error:
            raise ApiError(400, f"prompt: {error}", "prompt") from None
        if not ids:
            raise ApiError(400, "prompt is empty: give at least one word", "prompt")
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


def _stop_token(stop, served: ServedModel) -> int | None:
    """The engine stops on one token: `stop` may name one word of the vocabulary."""
    if stop is None or stop == []:
        return None
    if isinstance(stop, list) and len(stop) == 1:
        stop = stop[0]
    if not isinstance(stop, str):
        raise ApiError(
            400, f"stop must be one string (this server stops on one), got {stop!r}", "stop"
        )
    if served.vocab is None or stop.strip() not in served.vocab.ids:
        message = f"stop must be one word of the model's vocabulary, got {stop!r}"
        raise ApiError(400, message, "stop")
    return served.vocab.ids[stop.strip()]


# ---- the engine, live ----------------------------------------------------------------------------
@dataclass
class Ticket:
    """One admitted request: its queue of (token, time, finished) items, or an ApiError."""

    request: Request
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    seq: Sequence | None = None
    done: bool = False


class EngineLoop:
    """Steps the engine's Session in a thread of its own while the event loop serves HTTP.

    Everything but the step runs on the event loop's thread, between steps: admitting,
    cancelling and handing out tokens never race the scheduler.
    """

    def __init__(self, engine: Engine, max_waiting: int):
        self.session = engine.session()
        self.max_waiting = max_waiting
        self.incoming: list[Ticket] = []  # received, not yet in the engine
        self.to_cancel: list[Ticket] = []
        self.live: dict[Sequence, Ticket] = {}
        self.wake = asyncio.Event()
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="engine")
        self.cancelled = 0  # requests whose client went away before their last token
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

    def cancel(self, ticket: Ticket):
        """Its client went away: the engine drops it before its next step."""
        if not ticket.done:
            ticket.done = True
            self.to_cancel.append(ticket)
            self.wake.set()

    async def run(self):
        loop = asyncio.get_running_loop()
        while True:
            self._admit()
            if not self.session.has_work():
                self.wake.clear()
                await self.wake.wait()
                continue
            try:
                picked = await loop.run_in_executor(self.thread, self.session.step)
            except Exception as error:  # fail what was in flight, keep serving
                traceback.print_exc()
                self._fail_all(ApiError(500, f"the engine failed: {error}", kind="server_error"))
                continue
            for seq, token in picked:
                ticket = self.live[seq]
                finished = seq.status == Status.FINISHED
                ticket.queue.put_nowait((token, seq.result.token_times[-1], finished))
                if finished:
                    ticket.done = True
                    del self.live[seq]
            self._take_snapshot()
            # One turn of the event loop: every stream sends its new token now, before the next
            # step's Python code holds the GIL (the interpreter may keep it for 5 ms at a time).
            await asyncio.sleep(0)

    def _admit(self):
        for ticket in self.to_cancel:
            if ticket.seq is not None:
                self.session.cancel(ticket.seq)
                self.live.pop(ticket.seq, None)
            elif ticket in self.incoming:
                self.incoming.remove(ticket)
            self.cancelled += 1
        for ticket in self.incoming:
            if not ticket.done:
                ticket.seq = self.session.add(ticket.request)  # checked by the handler
                self.live[ticket.seq] = ticket
        self.to_cancel, self.incoming = [], []
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
        }

    def _fail_all(self, error: ApiError):
        for ticket in list(self.live.values()) + self.incoming:
            ticket.queue.put_nowait(error)
            ticket.done = True
            if ticket.seq is not None:
                with contextlib.suppress(Exception):
                    self.session.cancel(ticket.seq)
        self.live, self.incoming = {}, []

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


def create_app(served: ServedModel, engine: Engine, max_waiting=64, max_body_bytes=2**20):
    """The Starlette app: /v1/completions, /v1/models, /health, over a live engine."""
    created = int(time.time())
    state = {}  # the EngineLoop, made when the app starts (it needs the running event loop)
    counter = iter(range(1, 2**62))

    async def completions(http: HttpRequest):
        loop: EngineLoop = state["loop"]
        arrival = loop.session.now()
        try:
            c = parse_completion(await read_body(http, max_bytes=max_body_bytes), served)
            request = Request(c.prompt, c.max_tokens, arrival, c.stop_token, c.temperature, c.seed)
            error = loop.session.check(request)
            if error is not None:
                raise ApiError(400, error, "max_tokens")
            ticket = loop.submit(request)
        except ApiError as error:
            return error.response()
        head = {"id": f"cmpl-{next(counter)}", "object": "text_completion", "created": created}
        head["model"] = served.name
        if c.stream:
            events = stream_events(loop, ticket, head, served)
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            # If the client leaves before the first event, the generator never starts and its
            # `finally` never runs: the background task cancels the request then (or does nothing).
            return StreamingResponse(
                events,
                media_type="text/event-stream",
                headers=headers,
                background=BackgroundTask(loop.cancel, ticket),
            )
        tokens, reason = [], None
        try:
            while reason is None:
                item = await ticket.queue.get()
                if isinstance(item, ApiError):
                    return item.response()
                tokens.append(item[0])
                reason = finish_reason(request, item[0]) if item[2] else None
        finally:
            loop.cancel(ticket)  # nothing if it finished
        text = "".join(served.decode(t) for t in tokens)
        choice = {"index": 0, "text": text, "token_ids": tokens, "logprobs": None}
        return JSONResponse(
            head
            | {"choices": [choice | {"finish_reason": reason}]}
            | final_fields(ticket, len(tokens))
        )

    async def models(_):
        c = served.model.config
        card = {"id": served.name, "object": "model", "created": created, "owned_by": "llmlab"}
        card |= {"max_model_len": c.block_size, "vocab_size": c.vocab_size}
        return JSONResponse({"object": "list", "data": [card]})

    async def health(_):
        return JSONResponse({"status": "ok", "model": served.name} | state["loop"].snapshot)

    async def http_error(_, error: HTTPException):
        return ApiError(error.status_code, error.detail, code=None).response()

    @contextlib.asynccontextmanager
    async def lifespan(_):
        loop = state["loop"] = EngineLoop(engine, max_waiting)
        task = asyncio.create_task(loop.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            loop.close()

    routes = [
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", models),
        Route("/health", health),
    ]
    return Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error}
    )


def finish_reason(request: Request, last_token: int) -> str:
    return "stop" if last_token == request.stop_token else "length"


def final_fields(ticket: Ticket, completion_tokens: int) -> dict:
    """usage, and the engine's own timeline of the request (seconds from its arrival)."""
    result, prompt = ticket.seq.result, len(ticket.request.prompt)
    arrival = result.arrival
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }
    timeline = {
        "arrival": 0.0,
        "prefill_start": result.prefill_start - arrival,
        "token_times": [t - arrival for t in result.token_times],
    }
    return {"usage": usage, "llmlab_timeline": timeline}


async def stream_events(loop: EngineLoop, ticket: Ticket, head: dict, served: ServedModel):
    """One event per token, then usage and the engine's timeline, then [DONE]."""
    count = 0
    try:
        while True:
            item = await ticket.queue.get()
            if isinstance(item, ApiError):  # the status line has gone: the error is an event
                yield sse(item.body())
                return
            token, _, finished = item
            count += 1
            reason = finish_reason(ticket.request, token) if finished else None
            choice = {"index": 0, "text": served.decode(token), "token_ids": [token]}
            yield sse(head | {"choices": [choice | {"logprobs": None, "finish_reason": reason}]})
            if finished:
                break
        yield sse(head | {"choices": []} | final_fields(ticket, count))
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
