"""Load-test any OpenAI-compatible streaming server: `python -m llmlab.loadtest`.

    python -m llmlab.loadtest --url http://127.0.0.1:8000/v1 --num-requests 100 --rate 5 \\
        --prompt-tokens 32:128 --max-tokens 8:64 --json out.json
    python -m llmlab.loadtest --url ... --concurrency 8         # a fixed number in flight
    python -m llmlab.loadtest --url ... --sweep 1,2,4,8         # one run per rate: the curve
    python -m llmlab.loadtest --url ... --ttft-slo 0.5 --tpot-slo 0.05   # and goodput
    python -m llmlab.loadtest --self-bench                      # what HTTP and the client cost

Each request streams (POST {url}/completions, or /chat/completions with --endpoint chat, with
"stream": true). Its clock starts at its scheduled arrival (at a rate, when it was due; at a
concurrency, when a slot came free), not when the client got round to sending it: a client that
falls behind cannot hide the queueing that way (coordinated omission, as wrk2 corrects it), and
the lag from due to sent is reported apart. Each token's time is when the bytes that carried it
came off the socket: the client speaks HTTP/1.1 itself, with little Python between the socket and
the clock. TTFT, TPOT, end-to-end latency, percentiles and goodput then come from the functions of
llmlab.serving_metrics, the chapters' own definitions; ITL, the inter-token latency, is the gap
between two consecutive streamed events.

What differs among servers, and how it is handled:
- output tokens are counted from the final `usage` when the server sends it (the client asks
  for it with stream_options), else one per streamed event that carries text; the report says
  which;
- an event that carries several tokens (usage says more tokens than events) gives each of them
  its arrival time, the tokens split among events in proportion to their text: TTFT and TPOT
  stay exact, ITL is per event;
- keep-alive comments, empty events and events without text are skipped;
- a stream is complete when it ends after a finish_reason, with or without `data: [DONE]`
  (transformers serve sends none);
- a server that takes text prompts only is found by a probe request before the run, which also
  counts the tokens the server adds to each prompt (a <bos>) for the context check;
- each distinct error message a server sends is counted and shown.

The Python API is `workload` (or `read_jsonl`), then `run` or `sweep`, which return `Run`s
with `.records` (one timeline per request) and `.summary()`.
"""

import argparse
import asyncio
import collections
import contextlib
import json
import math
import random
import ssl
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import httpx

from llmlab.agreement import VOCAB
from llmlab.serving_metrics import (
    end_to_end,
    goodput,
    make_requests,
    percentile,
    poisson_arrivals,
    summarize,
    tpot,
    ttft,
)

ARRIVALS = ("poisson", "uniform")
PERCENTILES = (50, 90, 95, 99)
# Text prompts are drawn from the agreement model's English words: the course's server knows all
# of them, and the tokenizers of real models turn most into one token each.
WORDS = [w for w in VOCAB.words if w.isalpha()]
clock = time.perf_counter  # the client's clock; unit tests put a fake one here


# ---- the workload ----------------------------------------------------------------------------------
@dataclass
class WorkItem:
    """One request to send: a prompt (text, or token ids) and how many tokens to ask for."""

    prompt: str | list[int]
    max_tokens: int


def _length_range(name, value) -> tuple[int, int]:
    """(low, high) from a tuple or a "low:high" string; one number means low == high."""
    if isinstance(value, str):
        try:
            parts = [int(p) for p in value.split(":")]
        except ValueError:
            raise ValueError(f"{name} must be N or LOW:HIGH with integers, got {value!r}") from None
        value = (parts[0], parts[-1]) if len(parts) in (1, 2) else None
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or not 1 <= value[0] <= value[1]
    ):
        raise ValueError(f"{name} must be a range LOW:HIGH of integers with 1 <= LOW <= HIGH")
    return value


def workload(
    n: int,
    vocab_size: int = 1000,
    prompt_tokens=(32, 128),
    max_tokens=(8, 64),
    style: str = "ids",
    seed: int = 0,
) -> list[WorkItem]:
    """n requests, prompt and answer lengths uniform in the given ranges (serving_metrics'
    make_requests draws them). style "ids": prompts of random token ids below vocab_size;
    "text": that many random English words, for servers that take text only (Ollama)."""
    if style not in ("ids", "text"):
        raise ValueError(f"style must be 'ids' or 'text', got {style!r}")
    prompt_tokens = _length_range("prompt_tokens", prompt_tokens)
    max_tokens = _length_range("max_tokens", max_tokens)
    requests = make_requests(n, vocab_size, prompt_tokens, max_tokens, seed=seed)
    items = [WorkItem(r.prompt, r.max_new_tokens) for r in requests]
    if style == "text":
        rng = random.Random(seed)
        for item in items:
            item.prompt = " ".join(rng.choice(WORDS) for _ in item.prompt)
    return items


def read_jsonl(path, max_tokens=(8, 64), seed: int = 0) -> list[WorkItem]:
    """Requests from a JSON Lines file, one object per line: {"prompt": text or [ids],
    "max_tokens": n}; a line without max_tokens gets one drawn from the max_tokens range."""
    low, high = _length_range("max_tokens", max_tokens)
    rng, items = random.Random(seed), []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                prompt = row["prompt"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f'{path}:{number}: expected {{"prompt": ...}}') from None
            items.append(WorkItem(prompt, row.get("max_tokens") or rng.randint(low, high)))
    if not items:
        raise ValueError(f"{path} holds no requests")
    return items


def send_times(n: int, rate: float, arrivals: str = "poisson", seed: int = 0) -> list[float]:
    """When to send each of n requests, seconds from the start: a Poisson process of `rate` per
    second (independent users), or "uniform", exactly 1 / rate apart."""
    if arrivals not in ARRIVALS:
        raise ValueError(f"arrivals must be one of {ARRIVALS}, got {arrivals!r}")
    if arrivals == "poisson":
        return poisson_arrivals(rate, n, seed=seed)
    if not isinstance(rate, (int, float)) or not rate > 0 or math.isinf(rate):
        raise ValueError(f"rate must be a finite number > 0 requests per second, got {rate!r}")
    return [i / rate for i in range(n)]


# ---- one request -----------------------------------------------------------------------------------
ENDPOINTS = ("completions", "chat")


@dataclass
class Record:
    """One request's timeline, in seconds from the start of the run (client clock).

    arrival: when it was due: its scheduled time at a rate (all at 0 for a burst), or when a
    slot came free at a concurrency; None: never sent (the run's time limit came first). Its
    latencies count from here, so a client that falls behind cannot hide the queueing
    (coordinated omission, as wrk2 corrects it).
    sent: when its first byte went out (sent - arrival: the client's send lag).
    token_times: one per output token (serving_metrics reads arrival and token_times), each
    the moment the bytes carrying it were read from the socket.
    event_times: when each event that carried text arrived.
    token_source: "usage" (the server's count) or "events" (one per event with text).
    server_timeline: the server's own times (seconds from when it received the request), if it
    sends them (llmlab.serve.http does, as llmlab_timeline).
    """

    index: int
    prompt_tokens: int | None = None
    max_tokens: int = 0
    arrival: float | None = None
    sent: float | None = None
    token_times: list[float] = field(default_factory=list)
    event_times: list[float] = field(default_factory=list)
    output_tokens: int = 0
    token_source: str | None = None
    text: str = ""
    finish_reason: str | None = None
    error: str | None = None  # its kind: "HTTP 503 queue_full", "timeout", "time limit", ...
    error_detail: str | None = None
    server_timeline: dict | None = None
    prefill_start = None  # the client cannot see it; serving_metrics asks

    def timeline(self) -> dict:
        return asdict(self)


def spread_tokens(events: list[tuple[float, str]], n_tokens: int) -> list[float]:
    """A time per token, from the events (time, text) that carried n_tokens tokens.

    One token per event when the counts agree. Otherwise the tokens are split among events in
    proportion to their text, each taking its event's time; the first token is the first event's,
    the last the last event's, so TTFT and TPOT are exact whatever the split.
    """
    if n_tokens == len(events):
        return [t for t, _ in events]
    if not events or n_tokens <= 0:
        return []
    chars = [max(1, len(text)) for _, text in events]
    total, times, i, end = sum(chars), [], 0, chars[0]
    for k in range(n_tokens):
        while k * total / n_tokens >= end:  # token k starts past event i's text
            i += 1
            end += chars[i]
        times.append(events[i][0])
    times[-1] = events[-1][0]
    return times


def _error_kind(status: int, body: bytes) -> tuple[str, str]:
    try:
        error = json.loads(body)["error"]
        if isinstance(error, str):  # some servers send {"error": "message"}
            error = {"message": error}
        code, message = error.get("code"), error.get("message")
    except (ValueError, KeyError, TypeError, AttributeError):
        code, message = None, body[:200].decode(errors="replace")
    return (f"HTTP {status} {code}" if code else f"HTTP {status}"), str(message)


class HttpClient:
    """HTTP/1.1 over asyncio's streams: just what a streamed POST needs (keep-alive connections,
    chunked or Content-Length bodies, each request one write, built before it is due).

    A general client (httpx) spends a few milliseconds of Python per request between the socket
    and the code that reads the time; on a busy machine that grows several-fold and is counted
    in every TTFT. Here each chunk's time is read as soon as its bytes come off the socket.
    """

    def __init__(self, url: str, timeout: float, connect_timeout: float):
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port or (443 if self.https else 80)
        self.netloc, self.base = parts.netloc, parts.path.rstrip("/")
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    def prepare(self, path: str, body: bytes) -> bytes:
        head = (
            f"POST {self.base}/{path} HTTP/1.1\r\nHost: {self.netloc}\r\n"
            "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            f"User-Agent: llmlab-loadtest\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def _connect(self):
        context = ssl.create_default_context() if self.https else None
        loop = asyncio.get_running_loop()
        reader = _TimedReader(limit=2**16, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        opening = loop.create_connection(lambda: protocol, self.host, self.port, ssl=context)
        transport, _ = await asyncio.wait_for(opening, self.connect_timeout)
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    async def open(self, n: int):
        """Open n connections now, before the run's clock starts: a burst's requests then wait
        for no handshake (each is opened on demand otherwise, its time in the send lag)."""
        opened = await asyncio.gather(*(self._connect() for _ in range(n)), return_exceptions=True)
        self.idle += [c for c in opened if not isinstance(c, BaseException)]

    @contextlib.asynccontextmanager
    async def post(self, prepared: bytes):
        """Send a prepared request; yields the _Response once its status and headers are in."""
        reused = bool(self.idle)
        connection = self.idle.pop() if reused else await self._connect()
        response = _Response(connection[0], self.timeout)
        try:
            response.sent = clock()
            connection[1].write(prepared)
            await response.start()
        except (OSError, asyncio.IncompleteReadError):
            connection[1].close()
            if not reused:
                raise
            connection = await self._connect()  # the server had closed an idle connection
            response = _Response(connection[0], self.timeout)
            response.sent = clock()
            connection[1].write(prepared)
            await response.start()
        try:
            yield response
        finally:
            if response.complete and not response.close:
                self.idle.append(connection)
            else:
                connection[1].close()

    async def aclose(self):
        for _, writer in self.idle:
            writer.close()
        self.idle = []


class _TimedReader(asyncio.StreamReader):
    """Notes when each piece of data came off the socket (the event loop's callback, before any
    coroutine parses it): when() gives the time the byte at an offset arrived."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fed, self.times = 0, collections.deque()  # (offset past the piece, time)

    def feed_data(self, data):
        self.fed += len(data)
        self.times.append((self.fed, clock()))
        super().feed_data(data)

    def when(self, offset: int) -> float:
        """The time the byte before `offset` (bytes since the connection opened) arrived."""
        while len(self.times) > 1 and self.times[0][0] < offset:
            self.times.popleft()
        return self.times[0][1] if self.times else clock()


class _Response:
    def __init__(self, reader: asyncio.StreamReader, timeout: float):
        self.reader, self.timeout = reader, timeout
        self.status, self.sent, self.complete, self.close = 0, None, False, True

    async def _read(self, coroutine):
        data = await asyncio.wait_for(coroutine, self.timeout)
        self.reader.used = getattr(self.reader, "used", 0) + len(data)  # bytes taken so far
        return data

    def _arrived(self) -> float:
        """When the bytes read last came off the socket."""
        reader = self.reader
        return reader.when(reader.used) if isinstance(reader, _TimedReader) else clock()

    async def start(self):
        head = (await self._read(self.reader.readuntil(b"\r\n\r\n"))).decode("latin-1")
        status, *lines = head.split("\r\n")
        self.status = int(status.split()[1])
        headers = dict(line.split(":", 1) for line in lines if ":" in line)
        headers = {k.strip().lower(): v.strip().lower() for k, v in headers.items()}
        self.chunked = "chunked" in headers.get("transfer-encoding", "")
        self.length = int(headers["content-length"]) if "content-length" in headers else None
        framed = self.chunked or self.length is not None
        self.close = headers.get("connection") == "close" or not framed

    async def chunks(self):
        """(time read, bytes) of the body as it arrives."""
        if self.chunked:
            while True:
                size = int((await self._read(self.reader.readuntil(b"\r\n"))).split(b";")[0], 16)
                if size == 0:
                    while await self._read(self.reader.readuntil(b"\r\n")) != b"\r\n":
                        pass  # trailers
                    break
                data = (await self._read(self.reader.readexactly(size + 2)))[:-2]
                yield self._arrived(), data
        else:
            left = math.inf if self.length is None else self.length
            while left > 0:
                data = await self._read(self.reader.read(int(min(left, 2**16))))
                if not data:
                    if self.length is None:
                        break
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(data)
                yield self._arrived(), data
        self.complete = True

    async def read(self) -> bytes:
        return b"".join([data async for _, data in self.chunks()])

    async def drain(self, timeout: float = 1.0):
        """Read what is left of the body (after [DONE], its end), for a second at most."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                async for _ in self.chunks():
                    pass


class _HttpxResponse:
    def __init__(self, response: httpx.Response, sent: float):
        self.response, self.status, self.sent = response, response.status_code, sent

    async def chunks(self):
        async for data in self.response.aiter_bytes():
            yield clock(), data

    async def read(self) -> bytes:
        return await self.response.aread()

    async def drain(self):
        pass  # httpx closes the stream


class _HttpxClient:
    """The same interface over an httpx transport (the tests' fake servers)."""

    def __init__(self, url: str, transport, timeout: float):
        self.url = url
        self.client = httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False)

    def prepare(self, path: str, body: bytes):
        headers = {"content-type": "application/json"}
        return self.client.build_request(
            "POST", f"{self.url}/{path}", content=body, headers=headers
        )

    @contextlib.asynccontextmanager
    async def post(self, request):
        sent = clock()
        response = await self.client.send(request, stream=True)
        try:
            yield _HttpxResponse(response, sent)
        finally:
            await response.aclose()

    async def aclose(self):
        await self.client.aclose()


def payload(item: WorkItem, endpoint: str, extra: dict) -> dict:
    """The request's body: streamed, greedy, asking for usage in a last event."""
    if endpoint == "chat":
        body = {"messages": [{"role": "user", "content": item.prompt}]}
    else:
        body = {"prompt": item.prompt}
    body |= {"max_tokens": item.max_tokens, "stream": True, "temperature": 0.0}
    return body | {"stream_options": {"include_usage": True}} | extra


async def send(client, item: WorkItem, record: Record, t0: float, extra: dict,
               endpoint: str = "completions", due: float | None = None):  # fmt: skip
    """Send one request at t0 + due (now if None), stream its answer and fill its record.

    The request is built before it is due; its latencies count from when it was due."""
    path = "chat/completions" if endpoint == "chat" else "completions"
    prepared = client.prepare(path, json.dumps(payload(item, endpoint, extra)).encode())
    if due is not None:
        await asyncio.sleep(max(0.0, t0 + due - clock()))
    record.arrival = (clock() - t0) if due is None else due
    record.max_tokens = item.max_tokens
    events, usage, pending, done = [], None, b"", False
    try:
        async with client.post(prepared) as response:
            record.sent = response.sent - t0
            if response.status != 200:
                kind, detail = _error_kind(response.status, await response.read())
                record.error, record.error_detail = kind, detail
                return
            async for now, raw in response.chunks():
                lines = (pending + raw).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue  # blank separators, keep-alive comments (": ping"), event names
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        break
                    if not data:
                        continue
                    chunk = json.loads(data)
                    if "error" in chunk:
                        record.error, record.error_detail = "error event", str(chunk["error"])
                        return
                    usage = chunk.get("usage") or usage
                    record.server_timeline = chunk.get("llmlab_timeline") or record.server_timeline
                    choice = (chunk.get("choices") or [{}])[0]
                    text = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
                    if text:
                        events.append((now - t0, text))
                    record.finish_reason = choice.get("finish_reason") or record.finish_reason
                if done:
                    await response.drain()  # the body's end: then the connection is reused
                    break
        if not done and record.finish_reason is None:
            record.error = "stream ended before a finish_reason or [DONE]"
    except asyncio.CancelledError:
        record.error = "time limit"
        raise
    except (TimeoutError, httpx.TimeoutException) as error:
        record.error, record.error_detail = "timeout", repr(error)
    except (OSError, asyncio.IncompleteReadError, httpx.HTTPError, ValueError) as error:
        record.error, record.error_detail = type(error).__name__, str(error)
    finally:
        record.event_times = [t for t, _ in events]
        record.text = "".join(text for _, text in events)
        if usage and isinstance(usage.get("completion_tokens"), int):
            record.output_tokens, record.token_source = usage["completion_tokens"], "usage"
            record.prompt_tokens = usage.get("prompt_tokens")
        else:
            record.output_tokens, record.token_source = len(events), "events"
        record.token_times = spread_tokens(events, record.output_tokens)
        if record.error is None and not record.token_times:
            record.error = "no tokens"


# ---- a run -----------------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on stderr; on a non-terminal, a line at each tenth."""

    def __init__(self, total: int, enabled: bool = True, label: str = ""):
        self.total, self.enabled, self.label = total, enabled, label
        self.tty = sys.stderr.isatty()
        self.shown, self.last = -1, 0.0
        self.started = time.perf_counter()

    def update(self, done: int, failed: int, final: bool = False):
        if not self.enabled:
            return
        now = time.perf_counter()
        tenth = 10 * done // max(1, self.total)
        if self.tty and not final and now - self.last < 0.1:
            return
        if not self.tty and not final and tenth == self.shown:
            return
        self.shown, self.last = tenth, now
        width = 30
        bar = "#" * (width * done // max(1, self.total))
        line = (
            f"{self.label}[{bar:<{width}}] {done}/{self.total} done, {failed} failed, "
            f"{now - self.started:.1f} s"
        )
        print(("\r" + line) if self.tty else line, end="\n" if final or not self.tty else "",
              file=sys.stderr, flush=True)  # fmt: skip


@dataclass
class Run:
    """One load-test run: its settings and one Record per request."""

    config: dict
    records: list[Record]
    wall_s: float

    def summary(self, ttft_slo: float | None = None, tpot_slo: float | None = None) -> dict:
        return summary(self.records, ttft_slo, tpot_slo)

    def to_json(self) -> dict:
        return {"config": self.config, "wall_s": self.wall_s,
                "records": [r.timeline() for r in self.records]}  # fmt: skip


async def run_async(
    url: str,
    items: list[WorkItem],
    rate: float | None = None,
    arrivals: str = "poisson",
    concurrency: int | None = None,
    model: str | None = None,
    time_limit: float = 300.0,
    request_timeout: float = 60.0,
    ignore_eos: bool = False,
    seed: int = 0,
    progress: bool = False,
    label: str = "",
    endpoint: str = "completions",
    transport: httpx.AsyncBaseTransport | None = None,
) -> Run:
    """Send `items` to the server at url (its /v1 base) and record every answer's timeline.

    Open loop at `rate` requests per second (Poisson or uniform arrivals), or closed loop with
    `concurrency` requests in flight (each sent when one finishes); rate None and concurrency
    None: all at once. Stops after time_limit seconds, whatever is left. endpoint: "completions"
    or "chat" (/v1/chat/completions, the prompt as one user message: text prompts only).
    transport: another httpx transport (tests pass a fake server).
    """
    url = check_url(url)
    if not isinstance(items, list) or not items:
        raise ValueError("items must be a non-empty list of WorkItem")
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint must be one of {ENDPOINTS}, got {endpoint!r}")
    if endpoint == "chat" and not all(isinstance(i.prompt, str) for i in items):
        raise ValueError('endpoint "chat" takes text prompts: build the workload with style="text"')
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise ValueError(f"concurrency must be None or an int >= 1, got {concurrency!r}")
    if rate is not None and concurrency is not None:
        raise ValueError("give rate or concurrency, not both")
    for name, value in (("time_limit", time_limit), ("request_timeout", request_timeout)):
        if not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    times = send_times(len(items), rate, arrivals, seed) if rate is not None else None
    extra = {"model": model} if model else {}
    if ignore_eos:
        extra["ignore_eos"] = True  # vLLM, SGLang: answer max_tokens tokens, EOS or not
    records = [Record(i) for i in range(len(items))]
    bar = Progress(len(items), progress, label)
    finished = []

    async def one(client, i, due):
        try:
            await send(client, items[i], records[i], t0, extra, endpoint, due)
        finally:
            finished.append(i)
            bar.update(len(finished), sum(1 for j in finished if records[j].error))

    async def dispatch(client, tasks):
        if concurrency is not None:
            queue = iter(range(len(items)))

            async def worker():
                for i in queue:  # one shared iterator: each index is sent once
                    await one(client, i, None)  # due now: when a slot came free

            tasks += [asyncio.create_task(worker()) for _ in range(concurrency)]
        else:  # each task waits for its time, its request built: no send waits for another's
            due = times if times is not None else [0.0] * len(items)
            tasks += [asyncio.create_task(one(client, i, due[i])) for i in range(len(items))]
        await asyncio.gather(*tasks)

    if transport is None:
        client = HttpClient(url, request_timeout, min(10.0, request_timeout))
        # as many connections as requests may be in flight at once (a burst: all of them)
        await client.open(concurrency or min(len(items), 256 if rate is None else 32))
    else:
        timeout = httpx.Timeout(request_timeout, connect=min(10.0, request_timeout))
        client = _HttpxClient(url, transport, timeout)
    t0 = clock()
    tasks = []
    try:
        await asyncio.wait_for(dispatch(client, tasks), time_limit)
    except TimeoutError:  # stop what is in flight; what was never sent stays unsent
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await client.aclose()
    wall = clock() - t0
    bar.update(len(finished), sum(1 for j in finished if records[j].error), final=True)
    config = {"url": url, "requests": len(items), "rate": rate, "arrivals": arrivals,
              "concurrency": concurrency, "model": model, "time_limit": time_limit,
              "seed": seed, "endpoint": endpoint}  # fmt: skip
    return Run(config, records, wall)


def run(url: str, items: list[WorkItem], **options) -> Run:
    """run_async from ordinary code, or from a notebook whose event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_async(url, items, **options))
    with ThreadPoolExecutor(1) as thread:  # a running loop (Jupyter): run ours beside it
        return thread.submit(asyncio.run, run_async(url, items, **options)).result()


def sweep(url: str, items: list[WorkItem], rates, **options) -> list[Run]:
    """One run per rate, the same requests each time: the latency/throughput curve."""
    rates = list(rates)
    if not rates or not all(isinstance(r, (int, float)) and r > 0 for r in rates):
        raise ValueError(f"rates must be a non-empty list of numbers > 0, got {rates!r}")
    return [run(url, items, rate=rate, label=f"rate {rate:g}/s ", **options) for rate in rates]


def check_url(url) -> str:
    """The base URL, up to /v1 (no trailing slash); http or https."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"url must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


PROBE_WORDS = ["the", "cat", "near", "the", "dog"]


def probe(url: str, model=None, endpoint="completions", style="auto", timeout=30.0) -> dict:
    """Ask the server two small questions before a run, with one-token answers: does it take
    token-id prompts (style "auto": ids if so, else text), and how many tokens does it add to a
    prompt (a <bos>, a chat template): usage.prompt_tokens less the words sent (each of these
    words is one token in the course's vocabulary and in common tokenizers).

    Returns {"style": "ids" or "text", "added_tokens": n}."""
    url = check_url(url)
    extra = {"model": model} if model else {}
    path = "chat/completions" if endpoint == "chat" else "completions"

    def ask(prompt):
        body = {"max_tokens": 1, "temperature": 0.0} | extra
        if endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return httpx.post(f"{url}/{path}", json=body, timeout=timeout, trust_env=False)

    if style == "auto":
        style = "ids"
        if endpoint == "chat" or ask([1, 2]).status_code in (400, 422):
            style = "text"
    answer = ask(" ".join(PROBE_WORDS))
    used = (
        answer.json().get("usage", {}).get("prompt_tokens") if answer.status_code == 200 else None
    )
    added = max(0, used - len(PROBE_WORDS)) if isinstance(used, int) else 0
    return {"style": style, "added_tokens": added}


def server_info(url: str, timeout: float = 10.0) -> dict:
    """What GET {url}/models says of the first model: its id, and its context and vocabulary
    size when the server tells them (vLLM: max_model_len; llmlab: both)."""
    response = httpx.get(f"{check_url(url)}/models", timeout=timeout, trust_env=False)
    response.raise_for_status()
    card = response.json()["data"][0]
    return {k: card.get(k) for k in ("id", "max_model_len", "vocab_size")}


# ---- the report ------------------------------------------------------------------------------------
def _percentiles(values) -> dict:
    return {f"p{q}": percentile(values, q) if values else math.nan for q in PERCENTILES}


def summary(records: list[Record], ttft_slo=None, tpot_slo=None) -> dict:
    """The run's figures: latency percentiles (seconds), rates, errors by kind, goodput."""
    sent = [r for r in records if r.arrival is not None]
    ok = [r for r in sent if r.error is None]
    s = summarize(sent) if sent else None
    itl = [b - a for r in ok for a, b in zip(r.event_times, r.event_times[1:])]
    errors, messages = {}, {}
    for r in sent:
        if r.error:
            errors[r.error] = errors.get(r.error, 0) + 1
            message = f"{r.error}: {r.error_detail}" if r.error_detail else r.error
            messages[message] = messages.get(message, 0) + 1
    out = {
        "sent": len(sent),
        "ok": len(ok),
        "failed": len(sent) - len(ok),
        "not_sent": len(records) - len(sent),
        "errors": errors,
        "error_messages": messages,
        "duration_s": s.duration if s else 0.0,
        "requests_per_s": s.requests_per_s if s else math.nan,
        "output_tokens": sum(len(r.token_times) for r in ok),
        "tokens_per_s": s.tokens_per_s if s else math.nan,
        "tokens_from_usage": sum(1 for r in ok if r.token_source == "usage"),
        "multi_token_events": sum(1 for r in ok if len(r.event_times) != r.output_tokens),
        "ttft": _percentiles([ttft(r) for r in ok]),
        "tpot": _percentiles([t for t in map(tpot, ok) if t is not None]),
        "itl": _percentiles(itl),
        "e2e": _percentiles([end_to_end(r) for r in ok]),
        "send_lag": _percentiles([r.sent - r.arrival for r in sent if r.sent is not None]),
    }
    timed = [r for r in ok if r.server_timeline and r.server_timeline.get("token_times")]
    if timed:
        server = [r.server_timeline["token_times"][0] for r in timed]
        out["server_ttft"] = _percentiles(server)
        out["http_overhead"] = _percentiles([ttft(r) - t for r, t in zip(timed, server)])
    if ttft_slo is not None and ok and out["duration_s"] > 0:
        out["goodput"] = goodput(sent, ttft_slo, tpot_slo)
        out["slo"] = {"ttft_s": ttft_slo, "tpot_s": tpot_slo}
    return out


def format_summary(s: dict) -> str:
    """The summary as lines of at most 77 characters: counts, rates, then a percentile table."""
    lines = [f"requests: {s['sent']} sent, {s['ok']} ok, {s['failed']} failed"
             + (f", {s['not_sent']} not sent (time limit)" if s["not_sent"] else "")]  # fmt: skip
    for message, count in sorted(s["error_messages"].items(), key=lambda kv: -kv[1]):
        line = f"  {count} x {message}"  # each distinct message: what a server said, and how often
        lines.append(line if len(line) <= 77 else line[:74] + "...")
    source = (
        "the server's usage"
        if s["tokens_from_usage"] == s["ok"]
        else f"usage on {s['tokens_from_usage']} of {s['ok']} answers, events on the rest"
    )
    lines.append(
        f"{s['duration_s']:.2f} s: {s['requests_per_s']:.2f} requests/s, "
        f"{s['tokens_per_s']:.1f} output tokens/s"
    )
    lines.append(f"{s['output_tokens']} output tokens, counted from {source}")
    if s["multi_token_events"]:
        lines.append(f"{s['multi_token_events']} answers had events carrying several tokens")
    lines.append(f"{'ms':<22}" + "".join(f"{'P' + str(q):>9}" for q in PERCENTILES))
    rows = [("TTFT", "ttft"), ("TPOT", "tpot"), ("ITL (between events)", "itl"),
            ("end-to-end", "e2e"), ("send lag (client)", "send_lag"),
            ("server TTFT", "server_ttft"),
            ("HTTP (TTFT - server's)", "http_overhead")]  # fmt: skip
    for name, key in rows:
        if key in s:
            values = "".join(f"{s[key][f'p{q}'] * 1e3:>9.2f}" for q in PERCENTILES)
            lines.append(f"{name:<22}{values}")
    if "goodput" in s:
        slo = f"TTFT <= {s['slo']['ttft_s']:g} s"
        if s["slo"]["tpot_s"] is not None:
            slo += f", TPOT <= {s['slo']['tpot_s']:g} s"
        lines.append(f"goodput ({slo}): {s['goodput']:.2f} requests/s")
    return "\n".join(lines)


def format_sweep(rates, summaries) -> str:
    """One line per rate: the latency/throughput curve as a table (times in ms)."""
    head = ["rate/s", "ok", "failed", "req/s", "tok/s", "TTFT50", "TTFT95", "TPOT50", "E2E95"]
    with_goodput = all("goodput" in s for s in summaries)
    head += ["good/s"] if with_goodput else []
    widths = [7, 5, 7, 7, 8, 8, 8, 8, 8, 8]
    lines = ["".join(f"{h:>{w}}" for h, w in zip(head, widths))]
    for rate, s in zip(rates, summaries):
        cells = [f"{rate:g}", s["ok"], s["failed"], f"{s['requests_per_s']:.2f}",
                 f"{s['tokens_per_s']:.1f}", f"{s['ttft']['p50'] * 1e3:.1f}",
                 f"{s['ttft']['p95'] * 1e3:.1f}", f"{s['tpot']['p50'] * 1e3:.2f}",
                 f"{s['e2e']['p95'] * 1e3:.1f}"]  # fmt: skip
        cells += [f"{s['goodput']:.2f}"] if with_goodput else []
        lines.append("".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    lines.append("times in ms; 50, 95: the percentiles P50 and P95")
    return "\n".join(lines)


# ---- the command line ------------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m llmlab.loadtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", help="the server's base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", help="the model name to send (default: the server's first)")
    parser.add_argument("--num-requests", type=int, default=100)
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--rate", type=float, help="requests per second (default: all at once)")
    load.add_argument("--concurrency", type=int, help="requests in flight, instead of a rate")
    load.add_argument("--sweep", help="rates to run one after another, e.g. 1,2,4,8")
    parser.add_argument("--arrivals", choices=ARRIVALS, default="poisson")
    parser.add_argument("--prompt-tokens", default="32:128", help="LOW:HIGH (default %(default)s)")
    parser.add_argument("--max-tokens", default="8:64", help="LOW:HIGH (default %(default)s)")
    parser.add_argument(
        "--prompt-style", choices=("auto", "ids", "text"), default="auto",
        help="token-id prompts, or English words for servers that take text only (Ollama, "
        "transformers serve); auto: ids if a probe request with ids is accepted, else text",
    )  # fmt: skip
    parser.add_argument("--endpoint", choices=ENDPOINTS, default="completions",
                        help="/v1/completions, or /v1/chat/completions (text prompts)")  # fmt: skip
    parser.add_argument("--vocab-size", type=int, help="ids below this (default: the server's)")
    parser.add_argument("--dataset", help="a JSONL file of requests: {'prompt', 'max_tokens'}")
    parser.add_argument("--ttft-slo", type=float, help="seconds; with it, goodput is reported")
    parser.add_argument("--tpot-slo", type=float, help="seconds (needs --ttft-slo)")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--request-timeout", type=float, default=60.0, help="seconds idle")
    parser.add_argument("--ignore-eos", action="store_true", help="vLLM/SGLang: full answers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write every request's timeline to this file")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--self-bench", action="store_true", help="measure HTTP and the client")
    parser.add_argument("--bench-model", choices=list(BENCH_WORKLOADS), default="agreement")
    args = parser.parse_args(argv)
    if args.self_bench:
        return self_bench(args.bench_model)
    if not args.url:
        parser.error("--url is required, e.g. --url http://127.0.0.1:8000/v1")
    if args.num_requests < 1:
        parser.error(f"--num-requests must be >= 1, got {args.num_requests}")
    if args.tpot_slo is not None and args.ttft_slo is None:
        parser.error("--tpot-slo needs --ttft-slo")
    if args.json:  # found now, not after the whole run
        try:
            with open(args.json, "a"):
                pass
        except OSError as error:
            parser.error(f"--json {args.json}: cannot write there: {error.strerror}")
    try:
        rates = [float(r) for r in args.sweep.split(",")] if args.sweep else None
        info = {}
        if args.model is None or args.vocab_size is None:
            info = server_info(args.url)
        model = args.model or info.get("id")
        style, added = args.prompt_style, 0
        if args.endpoint == "chat":
            style = "text"
        if not args.dataset:
            found = probe(args.url, model, args.endpoint, style)
            style, added = found["style"], found["added_tokens"]
            if args.prompt_style == "auto" and style == "text" and args.endpoint != "chat":
                print("the server takes text prompts only: prompts are English words",
                      file=sys.stderr)  # fmt: skip
        if args.dataset:
            items = read_jsonl(args.dataset, args.max_tokens, args.seed)[: args.num_requests]
        else:
            vocab = args.vocab_size or info.get("vocab_size") or 1000
            items = workload(args.num_requests, vocab, args.prompt_tokens, args.max_tokens,
                             style, args.seed)  # fmt: skip
        context = info.get("max_model_len")
        if context and not args.dataset:
            longest = (
                _length_range("", args.prompt_tokens)[1] + _length_range("", args.max_tokens)[1]
            )
            if longest + added > context:
                extra = f" (with {added} the server adds to each prompt)" if added else ""
                print(f"warning: prompts + answers up to {longest + added} tokens{extra}; the "
                      f"server's context is {context}: the longest requests will fail",
                      file=sys.stderr)  # fmt: skip
        options = dict(arrivals=args.arrivals, model=model, time_limit=args.time_limit,
                       request_timeout=args.request_timeout, ignore_eos=args.ignore_eos,
                       seed=args.seed, progress=not args.no_progress,
                       endpoint=args.endpoint)  # fmt: skip
        if rates:
            runs = sweep(args.url, items, rates, **options)
        else:
            runs = [run(args.url, items, rate=args.rate, concurrency=args.concurrency, **options)]
    except (ValueError, httpx.HTTPError, OSError) as error:
        parser.error(str(error))
    summaries = [r.summary(args.ttft_slo, args.tpot_slo) for r in runs]
    print(f"{args.url}, model {model}")
    if rates:
        print(format_sweep(rates, summaries))
    else:
        print(format_summary(summaries[0]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": [r.to_json() | {"summary": s} for r, s in zip(runs, summaries)]}, f)
        print(f"every request's timeline: {args.json}")


# ---- what the HTTP layer and the client cost -------------------------------------------------------
BENCH_WORKLOADS = {  # model: (prompt tokens, answer tokens, requests, of which sent one by one)
    "agreement": ((4, 8), (4, 8), 200, 40),
    "tiny-random": ((16, 64), (16, 32), 100, 40),
    "gpt2-small-random": ((8, 16), (32, 32), 16, 10),
}


def self_bench(model: str = "agreement"):
    """Measure on loopback what HTTP and this client cost:
    1. the HTTP layer: client TTFT - the server's own TTFT, one request at a time;
    2. tokens/s through HTTP against engine.run on the same requests (all at once, one model
       thread each; each measured twice, alternating, the faster kept: noise only slows);
    3. the client's bookkeeping: tokens per second of its CPU time against a server that
       streams instantly (so the client is all there is to measure)."""
    import torch

    from llmlab.serve import Engine, Request
    from llmlab.serve.http import load_model, running_server

    if model not in BENCH_WORKLOADS:
        raise ValueError(f"model must be one of {list(BENCH_WORKLOADS)}, got {model!r}")
    prompt, answer, n, quiet = BENCH_WORKLOADS[model]
    served = load_model(model)
    items = workload(n, served.model.config.vocab_size, prompt, answer, seed=0)
    print(f"model {model}; {n} requests, prompts {prompt} tokens, answers {answer}")
    torch.set_num_threads(1)
    engine = Engine(served.model)  # the server's defaults
    requests = [Request(list(i.prompt), i.max_tokens) for i in items]
    engine.run(requests[:8])  # warm up
    http_tps, engine_tps = 0.0, 0.0
    flags = ("--threads", "1", "--max-waiting", str(10 * n))
    with running_server(model, *flags) as url:
        run(url, items[:8], concurrency=8)  # warm up both ends
        low = run(url, items[:quiet], concurrency=1).summary()
        for _ in range(2):
            http_tps = max(http_tps, run(url, items).summary()["tokens_per_s"])
            started = time.perf_counter()
            results = engine.run(requests)
            engine_tps = max(engine_tps, results.generated_tokens / (time.perf_counter() - started))
    http_ms = low["http_overhead"]["p50"] * 1e3
    print(f"1. one request at a time ({quiet}): client TTFT - server TTFT P50 {http_ms:.2f} ms, "
          f"P95 {low['http_overhead']['p95'] * 1e3:.2f} ms (server TTFT P50 "
          f"{low['server_ttft']['p50'] * 1e3:.2f} ms)")  # fmt: skip
    share = 100 * http_tps / engine_tps
    print(f"2. all {n} at once: {http_tps:.0f} tokens/s through HTTP, {engine_tps:.0f} by "
          f"engine.run in one process: {share:.0f}%")  # fmt: skip

    tokens, streams = 256, 64
    with instant_server() as url:
        items = [WorkItem([1, 2, 3], tokens) for _ in range(streams)]
        run(url, items[:4], concurrency=4)
        cpu = time.process_time()
        fast = run(url, items, concurrency=16)
        cpu = time.process_time() - cpu
    got = sum(r.output_tokens for r in fast.records if r.error is None)
    print(f"3. client against an instant server: {got} tokens in {fast.wall_s:.2f} s "
          f"({got / fast.wall_s:.0f} tokens/s), {got / cpu:.0f} tokens per CPU-second "
          f"of the client")  # fmt: skip
    return {"http_overhead_p50_ms": http_ms, "http_share_pct": share,
            "client_tokens_per_cpu_s": got / cpu}  # fmt: skip


def _instant_app():
    """A server that answers every request with max_tokens events at once, with no model."""
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def completions(request):
        n = (await request.json())["max_tokens"]
        chunk = {"object": "text_completion", "choices": [{"index": 0, "text": " word"}]}
        event = f"data: {json.dumps(chunk)}\n\n"
        usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": n}}
        body = event * n + f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n"
        return StreamingResponse(iter([body]), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/completions", completions, methods=["POST"])])


def _serve_instant(sock):
    import uvicorn

    uvicorn.Server(uvicorn.Config(_instant_app(), log_level="warning")).run(sockets=[sock])


@contextlib.contextmanager
def instant_server():
    """_instant_app in a child process on 127.0.0.1 and a free port; yields its base URL."""
    import multiprocessing
    import socket

    # proto IPPROTO_TCP: asyncio then turns Nagle's algorithm off on each connection, as uvicorn
    # does on the sockets it makes (with proto 0, each small event could wait up to 40 ms)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    process = multiprocessing.get_context("fork").Process(target=_serve_instant, args=(sock,))
    process.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        process.terminate()
        process.join(10)
        sock.close()


if __name__ == "__main__":
    main()
