"""A stand-in for other projects' OpenAI-compatible servers, with known timing, for the client's tests.

    with standin(ttft=0.020, tpot=0.005, done=False, per_event=3, usage="last") as url:
        ...  # POST {url}/completions or {url}/chat/completions, streamed
        truth(url)  # what the server itself measured, request by request

It answers every request with max_tokens tokens: the first after `ttft` seconds, then one every
`tpot` seconds, sent in events of `per_event` tokens, in the stream shapes real servers use:
- done: end with `data: [DONE]` (vLLM, SGLang, llama.cpp) or not (transformers serve);
- usage: "chunk" (a last event with `choices: []`, as OpenAI's API when asked), "last" (usage in
  the event that carries finish_reason) or "none" (never);
- text_only: token-id prompts get 400 "prompt must be a string" (transformers serve, Ollama);
- added: tokens the server adds to a prompt (a <bos>), counted in usage.prompt_tokens.

Each request's times are taken on the server's clock from when the request's first bytes arrived,
so a client's figures can be checked against them: TTFT, and each event's time. The server runs
in a child process (the client's event loop and the server's never share a GIL).
"""

import asyncio
import contextlib
import json
import multiprocessing
import socket
import time

import httpx


class _Connection(asyncio.Protocol):
    """HTTP/1.1 by hand, so that a request's time is taken when its first bytes arrive (a
    framework would start the clock only once it had parsed the request)."""

    def __init__(self, shape: dict, log: list):
        self.shape, self.log, self.buffer, self.arrived = shape, log, b"", None

    def connection_made(self, transport):
        self.transport = transport
        # As every real server: small writes go out at once. (asyncio sets this itself only on
        # sockets made with proto IPPROTO_TCP; Nagle's algorithm would hold each event back
        # until the client's delayed ACK, up to 40 ms.)
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        if not self.buffer:
            self.arrived = time.perf_counter()  # the first bytes of a request
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, rest = self.buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in
                       (line.split(":", 1) for line in lines[1:] if ":" in line)}  # fmt: skip
            length = int(headers.get("content-length", 0))
            if len(rest) < length:
                return
            method, path = lines[0].split()[:2]
            body, self.buffer = rest[:length], rest[length:]
            asyncio.ensure_future(self.respond(method, path, body, self.arrived))
            self.arrived = time.perf_counter() if self.buffer else None

    def send_json(self, status: int, body):
        data = json.dumps(body).encode()
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        self.transport.write(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)

    async def respond(self, method, path, body, start):
        shape = self.shape
        if method == "GET" and path == "/v1/models":
            card = {"id": "standin", "object": "model", "max_model_len": shape["context"]}
            return self.send_json(200, {"object": "list", "data": [card]})
        if method == "GET" and path == "/truth":
            return self.send_json(200, self.log)
        chat = path == "/v1/chat/completions"
        if method != "POST" or path not in ("/v1/completions", "/v1/chat/completions"):
            return self.send_json(404, {"error": {"message": "Not Found", "code": None}})
        request = json.loads(body)
        prompt = request["messages"][-1]["content"] if chat else request.get("prompt")
        if shape["text_only"] and not isinstance(prompt, str):
            error = {"message": "prompt must be a string", "type": "invalid_request_error",
                     "param": "prompt", "code": None}  # fmt: skip
            return self.send_json(400, {"error": error})
        n = request.get("max_tokens") or 16
        n_prompt = len(prompt.split()) if isinstance(prompt, str) else len(prompt)
        n_prompt += shape["added"]
        use = {"prompt_tokens": n_prompt, "completion_tokens": n, "total_tokens": n_prompt + n}
        if not request.get("stream"):
            text = " word" * n
            choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
            body = {
                "object": "chat.completion" if chat else "text_completion",
                "choices": [choice | {"index": 0, "finish_reason": "length"}],
                "usage": use,
            }
            return self.send_json(200, body)  # fmt: skip
        record = {"ttft": None, "event_times": [], "tokens": n, "arrived_at": start}
        record["prompt"] = prompt
        self.log.append(record)
        kind = "chat.completion.chunk" if chat else "text_completion"
        head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        self.transport.write(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())

        def write(event: str):
            data = event.encode()
            self.transport.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        sent = 0
        while sent < n:
            k = min(shape["per_event"], n - sent)
            due = shape["ttft"] + (sent + k - 1) * shape["tpot"]  # when the event's last token is
            await asyncio.sleep(max(0.0, start + due - time.perf_counter()))
            sent += k
            text = " word" * k
            choice = {"delta": {"content": text}} if chat else {"text": text}
            reason = "length" if sent == n else None
            chunk = {"id": "x", "object": kind, "created": int(time.time()), "model": "standin",
                     "choices": [choice | {"index": 0, "finish_reason": reason}]}  # fmt: skip
            if sent == n and shape["usage"] == "last":
                chunk["usage"] = use
            write(f"data: {json.dumps(chunk)}\n\n")
            now = time.perf_counter() - start
            record["event_times"].append(now)
            record["ttft"] = record["ttft"] if record["ttft"] is not None else now
        if shape["usage"] == "chunk":
            write(f"data: {json.dumps({'object': kind, 'choices': [], 'usage': use})}\n\n")
        if shape["done"]:
            write("data: [DONE]\n\n")
        self.transport.write(b"0\r\n\r\n")


def _serve(sock, shape):
    async def main():
        log = []
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(shape, log), sock=sock)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


@contextlib.contextmanager
def standin(ttft=0.020, tpot=0.005, done=True, per_event=1, usage="chunk", text_only=False,
            added=0, context=4096):  # fmt: skip
    """The stand-in in a child process on 127.0.0.1 and a free port; yields its /v1 URL."""
    if usage not in ("chunk", "last", "none"):
        raise ValueError(f"usage must be 'chunk', 'last' or 'none', got {usage!r}")
    shape = dict(ttft=ttft, tpot=tpot, done=done, per_event=per_event, usage=usage,
                 text_only=text_only, added=added, context=context)  # fmt: skip
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(sock, shape))
    process.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:  # until it answers
            try:
                httpx.get(f"{url}/models", trust_env=False, timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or not process.is_alive():
                    raise RuntimeError("the stand-in server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.join(10)
        sock.close()


def truth(url) -> list[dict]:
    """What the stand-in measured: per request, in the order they arrived."""
    return httpx.get(url.removesuffix("/v1") + "/truth", trust_env=False, timeout=10).json()
