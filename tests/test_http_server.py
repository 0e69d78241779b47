"""llmlab.serve.http as a real process on loopback: the tokens of generate(), HTTP errors a client
expects, a bounded queue, disconnects that free their blocks, a clean stop, and a load test.

Every server here runs as `python -m llmlab.serve.http` on 127.0.0.1 and a free port, started by
running_server, which stops it however the test ends.
"""

import asyncio
import json
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from test_serve import divergences

from llmlab import generate
from llmlab.agreement import VOCAB, make_sentences
from llmlab.loadtest import run, workload
from llmlab.serve import Request
from llmlab.serve.http import load_model, running_server

pytestmark = pytest.mark.xdist_group("http_server")  # one worker starts these servers
ONE_THREAD = ("--threads", "1")


@pytest.fixture(scope="module")
def agreement():
    with running_server("agreement", *ONE_THREAD, "--max-batch-size", "4") as url:
        yield url


@pytest.fixture(scope="module")
def tiny():
    with running_server("tiny-random", *ONE_THREAD, "--max-batch-size", "4") as url:
        yield url


def base(url):
    return url.removesuffix("/v1")


def health(url):
    return httpx.get(f"{base(url)}/health", trust_env=False).json()


def wait_until_idle(url, timeout=10.0):
    """/health once nothing runs or waits (the engine finishes cancels between steps)."""
    deadline = time.monotonic() + timeout
    while True:
        h = health(url)
        if (h["running"], h["waiting"]) == (0, 0) or time.monotonic() > deadline:
            return h
        time.sleep(0.02)


async def stream_tokens(client, url, body):
    """POST a streaming completion; return (token ids, text, the usage event, [DONE] seen)."""
    ids, text, last, done = [], "", None, False
    async with client.stream("POST", f"{url}/completions", json=body | {"stream": True}) as r:
        assert r.status_code == 200, (r.status_code, await r.aread())
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            chunk = json.loads(line[6:])
            if chunk["choices"]:
                ids += chunk["choices"][0]["token_ids"]
                text += chunk["choices"][0]["text"]
            else:
                last = chunk
    return ids, text, last, done


async def stream_all(url, bodies):
    async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
        return await asyncio.gather(*(stream_tokens(client, url, b) for b in bodies))


# ---- the tokens ------------------------------------------------------------------------------------
def test_streamed_tokens_equal_generate_on_the_trained_model(agreement):
    """24 clients at once, text prompts of every length: each stream is exactly generate()'s
    answer alone (the trained model has no float ties to excuse a difference)."""
    model = load_model("agreement").model
    sentences = make_sentences(24, seed=5)
    prompts = [" ".join(s.words[1 : 2 + i % (len(s.words) - 2)]) for i, s in enumerate(sentences)]
    bodies = [
        {"prompt": p, "max_tokens": 16 - 1 - len(p.split()) - i % 3, "temperature": 0}
        for i, p in enumerate(prompts)
    ]
    answers = asyncio.run(stream_all(agreement, bodies))
    for prompt, body, (ids, text, last, done) in zip(prompts, bodies, answers):
        prompt_ids = [VOCAB.bos_id] + VOCAB.encode(prompt)
        expected = generate(model, prompt_ids, body["max_tokens"])[len(prompt_ids) :].tolist()
        assert ids == expected, f"{prompt!r}: streamed {ids}, generate() alone gives {expected}"
        assert text == "".join(f" {VOCAB.words[t]}" for t in expected)
        assert done, "the stream did not end with data: [DONE]"
        usage = last["usage"]
        assert usage == {
            "prompt_tokens": len(prompt_ids),
            "completion_tokens": len(expected),
            "total_tokens": len(prompt_ids) + len(expected),
        }
        assert len(last["llmlab_timeline"]["token_times"]) == len(expected)
    assert wait_until_idle(agreement)["free_blocks"] == health(agreement)["num_blocks"]


def test_streamed_tokens_equal_generate_on_random_weights(tiny):
    """Token-id prompts on a random-weight model, 16 at once: generate()'s tokens, up to float
    ties (the two best logits within 1e-4; tests/test_serve.py counts the same way)."""
    model = load_model("tiny-random").model
    items = workload(16, model.config.vocab_size, (1, 40), (1, 30), seed=3)
    bodies = [{"prompt": i.prompt, "max_tokens": i.max_tokens, "temperature": 0} for i in items]
    answers = asyncio.run(stream_all(tiny, bodies))
    requests = [Request(i.prompt, i.max_tokens) for i in items]

    class Answer:
        def __init__(self, ids):
            self.tokens, self.error = ids, None

    found = divergences(model, requests, [Answer(ids) for ids, *_ in answers])
    assert all(gap <= 1e-4 for *_, gap in found), f"not float ties: {found}"
    assert all(len(ids) == i.max_tokens for (ids, *_), i in zip(answers, items))


def test_an_answer_without_streaming_is_the_streamed_one(agreement):
    body = {"prompt": "the dogs near the cat", "max_tokens": 4, "temperature": 0}
    whole = httpx.post(f"{agreement}/completions", json=body, trust_env=False).json()
    ids, text, last, _ = asyncio.run(stream_all(agreement, [body]))[0]
    choice = whole["choices"][0]
    assert choice["token_ids"] == ids and choice["text"] == text
    assert choice["finish_reason"] == "length"
    assert whole["usage"] == last["usage"]


def test_stop_ends_the_answer_with_the_stop_word(agreement):
    body = {"prompt": "the cats near the dog", "max_tokens": 8, "temperature": 0, "stop": "."}
    whole = httpx.post(f"{agreement}/completions", json=body, trust_env=False).json()
    choice = whole["choices"][0]
    assert choice["text"].endswith(" .") and choice["finish_reason"] == "stop", choice
    assert whole["usage"]["completion_tokens"] < 8


def test_models_and_health(agreement):
    card = httpx.get(f"{agreement}/models", trust_env=False).json()["data"][0]
    assert card["id"] == "agreement" and card["max_model_len"] == 16
    assert card["vocab_size"] == len(VOCAB)
    assert health(agreement)["status"] == "ok"


# ---- bad requests ----------------------------------------------------------------------------------
BAD = [  # (body, status, the field the error names, words its message must hold)
    ({"prompt": "", "max_tokens": 2}, 400, "prompt", "empty"),
    ({"prompt": [], "max_tokens": 2}, 400, "prompt", "empty"),
    ({"max_tokens": 2}, 400, "prompt", "prompt must be"),
    ({"prompt": "the cat", "max_tokens": 2, "model": "gpt-4"}, 404, "model", "does not exist"),
    ({"prompt": "the unicorn", "max_tokens": 2}, 400, "prompt", "unicorn"),
    ({"prompt": [1, 2, 39], "max_tokens": 2}, 400, "prompt", "outside the vocabulary"),
    ({"prompt": [1, -1], "max_tokens": 2}, 400, "prompt", "outside the vocabulary"),
    ({"prompt": [1, 2.0], "max_tokens": 2}, 400, "prompt", "token ids"),
    ({"prompt": ["the cat"], "max_tokens": 2}, 400, "prompt", "one prompt"),
    ({"prompt": "the cat", "max_tokens": 14}, 400, "max_tokens", "context"),
    ({"prompt": [1] * 16, "max_tokens": 1}, 400, "prompt", "context"),
    ({"prompt": "the cat", "max_tokens": 2.5}, 400, "max_tokens", "integer"),
    ({"prompt": "the cat", "max_tokens": "2"}, 400, "max_tokens", "integer"),
    ({"prompt": "the cat", "max_tokens": True}, 400, "max_tokens", "integer"),
    ({"prompt": "the cat", "max_tokens": 0}, 400, "max_tokens", ">= 1"),
    ({"prompt": "the cat", "temperature": -1}, 400, "temperature", "[0, 2]"),
    ({"prompt": "the cat", "seed": "x"}, 400, "seed", "integer"),
    ({"prompt": "the cat", "stream": "yes"}, 400, "stream", "true or false"),
    ({"prompt": "the cat", "stop": "unicorn"}, 400, "stop", "vocabulary"),
    ({"prompt": "the cat", "stop": [".", "the"]}, 400, "stop", "one string"),
    ({"prompt": "the cat", "n": 2}, 400, "n", "n must be 1"),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("body, status, param, words", BAD, ids=[str(b[0])[:40] for b in BAD])
def test_a_bad_request_gets_its_status_and_names_its_field(
    agreement, body, status, param, words, stream
):
    payload = body if "stream" in body else body | {"stream": stream}
    response = httpx.post(f"{agreement}/completions", json=payload, trust_env=False)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and words in error["message"], error


@pytest.mark.parametrize(
    "content, words",
    [(b'{"prompt": "the cat", ', "not valid JSON"), (b"[1, 2]", "JSON object"),
     (b"\xff\xfe", "not valid JSON")],
)  # fmt: skip
def test_a_body_that_is_not_a_json_object_gets_400(agreement, content, words):
    response = httpx.post(f"{agreement}/completions", content=content, trust_env=False)
    assert response.status_code == 400 and words in response.json()["error"]["message"]


def test_an_oversize_body_gets_413(agreement):
    body = json.dumps({"prompt": "the " * 400_000}).encode()  # 1.6 MB, over the 1 MiB default
    response = httpx.post(f"{agreement}/completions", content=body, trust_env=False)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


def test_unknown_paths_get_an_openai_error_body(agreement):
    response = httpx.get(f"{agreement}/chat/completions", trust_env=False)
    assert response.status_code in (404, 405) and "error" in response.json()


def test_bad_requests_never_disturb_the_others(agreement):
    body = {"prompt": "the cat near the dogs", "max_tokens": 5, "temperature": 0}

    async def mixed():
        async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
            bad = [client.post(f"{agreement}/completions", json={"prompt": [99]}) for _ in range(8)]
            good = [stream_tokens(client, agreement, body) for _ in range(8)]
            return await asyncio.gather(*bad, *good)

    answers = asyncio.run(mixed())
    assert all(r.status_code == 400 for r in answers[:8])
    assert len({tuple(a[0]) for a in answers[8:]}) == 1 and all(a[3] for a in answers[8:])


# ---- a bounded queue, and clients that leave --------------------------------------------------------
def test_a_full_queue_answers_503_with_retry_after():
    """One sequence at a time, two may wait: 12 long requests at once overflow the queue."""
    flags = (*ONE_THREAD, "--max-batch-size", "1", "--max-waiting", "2")
    with running_server("tiny-random", *flags) as url:
        body = {"prompt": [1, 2, 3], "max_tokens": 100, "temperature": 0}

        async def flood():
            async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
                return await asyncio.gather(
                    *(client.post(f"{url}/completions", json=body) for _ in range(12))
                )

        responses = asyncio.run(flood())
        full = [r for r in responses if r.status_code == 503]
        assert full, "12 requests at once never filled a queue of 2"
        assert all(r.headers.get("retry-after") == "1" for r in full)
        assert all(r.json()["error"]["code"] == "queue_full" for r in full)
        served = [r for r in responses if r.status_code == 200]
        assert len(served) + len(full) == 12, [r.status_code for r in responses]
        assert all(r.json()["usage"]["completion_tokens"] == 100 for r in served)


async def leave_after_first_event(url, body):
    """Open a stream, read its first token, and hang up."""
    async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
        async with client.stream("POST", f"{url}/completions", json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    return


def test_a_client_that_leaves_mid_stream_is_cancelled_and_its_blocks_freed(tiny):
    before = wait_until_idle(tiny)
    body = {"prompt": list(range(40)), "max_tokens": 80, "temperature": 0, "stream": True}

    async def leave_three():
        await asyncio.gather(*(leave_after_first_event(tiny, body) for _ in range(3)))

    asyncio.run(leave_three())
    after = wait_until_idle(tiny)
    assert after["cancelled"] - before["cancelled"] == 3, (before, after)
    assert after["free_blocks"] == after["num_blocks"], f"blocks leaked: {after}"
    # each left after one token: far fewer steps than 80 tokens would take
    assert after["steps"] - before["steps"] < 3 * 80, (before, after)


def test_a_client_that_leaves_while_waiting_is_dropped():
    """One sequence at a time: the second request waits, and its client leaves first."""
    with running_server("tiny-random", *ONE_THREAD, "--max-batch-size", "1") as url:
        long = {"prompt": [1, 2], "max_tokens": 120, "temperature": 0}

        async def scenario():
            async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
                first = asyncio.create_task(stream_tokens(client, url, long))
                await asyncio.sleep(0.05)
                second = client.stream("POST", f"{url}/completions", json=long | {"stream": True})
                async with second as response:
                    assert response.status_code == 200  # the events would follow; we leave
                waiting = health(url)["waiting"]
                return await first, waiting

        (ids, *_), waiting = asyncio.run(scenario())
        assert len(ids) == 120
        h = wait_until_idle(url)
        assert h["cancelled"] == 1 and h["free_blocks"] == h["num_blocks"], h
        assert h["steps"] <= 120 + 1, f"the waiting request ran after its client left: {h}"


# ---- the process ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_it_binds_loopback_by_default_and_stops_cleanly_on_a_signal(sig):
    command = [sys.executable, "-m", "llmlab.serve.http", "--port", "0", *ONE_THREAD]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        assert re.search(r"http://127\.0\.0\.1:\d+/v1", line), line
        url = re.search(r"http://\S+/v1", line).group(0)
        assert httpx.get(f"{url}/models", trust_env=False).status_code == 200
        process.send_signal(sig)
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output
        assert "stopped" in output and "Traceback" not in output, output
    finally:
        process.kill()
        process.wait()


# ---- a load test -----------------------------------------------------------------------------------
def test_overload_loses_nothing_and_leaves_the_server_healthy():
    """250 requests at 2,000/s, far above what 2 sequences at a time can serve: every request
    ends with its tokens or a 503 the client counts, and the server is idle and whole after."""
    flags = (*ONE_THREAD, "--max-batch-size", "2", "--max-waiting", "8")
    with running_server("agreement", *flags) as url:
        items = workload(250, len(VOCAB), (2, 8), (4, 8), seed=7)
        result = run(url, items, rate=2000.0, time_limit=60)
        s = result.summary()
        full = s["errors"].get("HTTP 503 queue_full", 0)
        assert s["sent"] == 250 and s["not_sent"] == 0, s
        assert s["ok"] + full == 250, f"lost or failed otherwise: {s['errors']}"
        assert full > 0 and s["ok"] > 8, f"not overloaded, or nothing served: {s}"
        for r, item in zip(result.records, items):
            assert r.error or r.output_tokens == item.max_tokens == len(r.token_times), r
        h = wait_until_idle(url)
        assert h["status"] == "ok" and h["free_blocks"] == h["num_blocks"], h
        after = run(url, items[:4], concurrency=2)
        assert after.summary()["ok"] == 4, "the server did not serve after the overload"
