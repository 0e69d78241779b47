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
    """POST a streaming completion that asks for usage; return (token ids, text, the usage event
    with the engine's timeline added from the last choice's event, [DONE] seen)."""
    ids, text, last, done, timeline = [], "", None, False, None
    body = body | {"stream": True, "stream_options": {"include_usage": True}}
    async with client.stream("POST", f"{url}/completions", json=body) as r:
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
                timeline = chunk.get("llmlab_timeline") or timeline
            else:
                last = chunk | {"llmlab_timeline": timeline}
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


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("stop", [" .", ["unicorn", ". ."], ["at .", " ."], "t ."])
def test_stop_ends_the_answer_before_the_stop_string(agreement, stop, stream):
    """As OpenAI's API: the text ends where the first stop string begins, the string left out;
    several strings, and strings that span or split tokens, work streamed or not."""
    body = {"prompt": "the cats near the dog", "max_tokens": 8, "temperature": 0}
    free = httpx.post(f"{agreement}/completions", json=body, trust_env=False).json()
    text = free["choices"][0]["text"]  # greedy: ' eat . . ...', the stop strings' source
    cut = min(i for i in (text.find(s) for s in ([stop] if isinstance(stop, str) else stop))
              if i >= 0)  # fmt: skip
    if stream:
        ids, got, last, _ = asyncio.run(stream_all(agreement, [body | {"stop": stop}]))[0]
        reason, used = None, last["usage"]["completion_tokens"]
    else:
        whole = httpx.post(f"{agreement}/completions", json=body | {"stop": stop},
                           trust_env=False).json()  # fmt: skip
        got, reason = whole["choices"][0]["text"], whole["choices"][0]["finish_reason"]
        used = whole["usage"]["completion_tokens"]
    assert got == text[:cut], (stop, got, text)
    assert reason in (None, "stop") and used < 8, (reason, used)
    assert wait_until_idle(agreement)["free_blocks"] == health(agreement)["num_blocks"]


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
    ({"prompt": "the cat", "seed": 2**64}, 400, "seed", "[0, 2**64 - 1]"),
    ({"prompt": "the cat", "seed": -1}, 400, "seed", "[0, 2**64 - 1]"),
    ({"prompt": "the cat", "logprobs": 21}, 400, "logprobs", "[0, 20]"),
    ({"prompt": "the cat", "logprobs": True}, 400, "logprobs", "integer"),
    ({"prompt": "the cat", "echo": 1}, 400, "echo", "true or false"),
    ({"prompt": "the cat", "top_p": 0.5}, 400, "top_p", "not implemented"),
    ({"prompt": "the cat", "presence_penalty": 1}, 400, "presence_penalty", "not implemented"),
    ({"prompt": "the cat", "frequency_penalty": 1}, 400, "frequency_penalty", "not implemented"),
    ({"prompt": "the cat", "logit_bias": {"3": 5}}, 400, "logit_bias", "not implemented"),
    ({"prompt": "the cat", "best_of": 2}, 400, "best_of", "not implemented"),
    ({"prompt": "the cat", "suffix": " dog"}, 400, "suffix", "not implemented"),
    ({"prompt": "the cat", "max_token": 2}, 400, "max_token", "unrecognized parameters"),
    (
        {"prompt": "the cat", "stream": False, "stream_options": {"include_usage": True}},
        400,
        "stream_options",
        "stream: true",
    ),
    (
        {"prompt": "the cat", "stream": True, "stream_options": {"usage": 1}},
        400,
        "stream_options",
        "include_usage",
    ),
    ({"prompt": "the cat", "user": 3}, 400, "user", "string"),
    ({"prompt": "the cat", "stream": "yes"}, 400, "stream", "true or false"),
    ({"prompt": "the cat", "stop": 3}, 400, "stop", "string or a list"),
    ({"prompt": "the cat", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "up to 4"),
    ({"prompt": "the cat", "stop": ""}, 400, "stop", "non-empty"),
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


# ---- what real clients send (issue 25) -------------------------------------------------------------
def test_a_seed_past_the_generators_range_gets_400_and_the_server_goes_on(agreement):
    """A seed of 2**64 once killed the engine loop (manual_seed overflowed during admission):
    every later request hung and /health still said ok."""
    body = {"prompt": "the cat", "max_tokens": 3, "temperature": 1.0}
    for seed, status in [(2**64, 400), (2**64 - 1, 200), (0, 200)]:
        r = httpx.post(f"{agreement}/completions", json=body | {"seed": seed}, trust_env=False,
                       timeout=10)  # fmt: skip
        assert r.status_code == status, (seed, r.text)
    after = httpx.post(f"{agreement}/completions", json=body, trust_env=False, timeout=10)
    assert after.status_code == 200 and health(agreement)["status"] == "ok"


def test_unseeded_sampling_differs_and_a_seed_repeats(tiny):
    """Five identical requests at temperature 1: without a seed, five answers (each draws a
    fresh seed); with one, the same answer five times."""
    body = {"prompt": [1, 2, 3], "max_tokens": 12, "temperature": 1.0}

    def texts(extra):
        return [httpx.post(f"{tiny}/completions", json=body | extra, trust_env=False)
                .json()["choices"][0]["text"] for _ in range(5)]  # fmt: skip

    assert len(set(texts({}))) == 5
    assert len(set(texts({"seed": 12345}))) == 1


def test_logprobs_are_the_models_and_echo_returns_the_prompt(tiny):
    """logprobs=k: each token's log-probability under the model and the k most likely, in
    OpenAI's completions shape; echo puts the prompt's tokens first (the first has none)."""
    import torch

    model = load_model("tiny-random").model
    prompt = [5, 17, 42, 9]
    body = {"prompt": prompt, "max_tokens": 4, "temperature": 0, "logprobs": 3, "echo": True}
    whole = httpx.post(f"{tiny}/completions", json=body, trust_env=False).json()
    choice = whole["choices"][0]
    answer = choice["token_ids"]
    ids = prompt + answer
    assert choice["text"] == "".join(f"[{t}]" for t in ids)
    lp = choice["logprobs"]
    assert lp["tokens"] == [f"[{t}]" for t in ids]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert lp["text_offset"] == [len("".join(f"[{t}]" for t in ids[:i])) for i in range(len(ids))]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids]))[0].float(), dim=-1)
    for i in range(1, len(ids)):
        assert lp["token_logprobs"][i] == pytest.approx(logp[i - 1, ids[i]].item(), abs=1e-4)
        top = torch.topk(logp[i - 1], 4)
        expected = {f"[{t}]": v for t, v in zip(top.indices.tolist(), top.values.tolist())}
        got = lp["top_logprobs"][i]
        assert list(got.values()) == pytest.approx(list(expected.values())[:3], abs=1e-4), i
        tie = top.values[2] - top.values[3] < 1e-4  # a float tie may swap the 3rd and 4th
        assert list(got)[:2] == list(expected)[:2] and (tie or list(got) == list(expected)[:3])
    plain = httpx.post(f"{tiny}/completions", json=body | {"echo": False, "logprobs": None},
                       trust_env=False).json()["choices"][0]  # fmt: skip
    assert plain["token_ids"] == answer and plain["logprobs"] is None


def test_the_usage_event_only_when_asked_for(tiny):
    body = {"prompt": [1, 2], "max_tokens": 3, "temperature": 0, "stream": True}

    def events(extra):
        with httpx.stream("POST", f"{tiny}/completions", json=body | extra,
                          trust_env=False) as r:  # fmt: skip
            return [json.loads(line[6:]) for line in r.iter_lines()
                    if line.startswith("data: {")]  # fmt: skip

    plain = events({})
    assert len(plain) == 3 and all(e["choices"] for e in plain), plain
    assert plain[-1]["choices"][0]["finish_reason"] == "length" and "usage" not in plain[-1]
    asked = events({"stream_options": {"include_usage": True}})
    assert asked[-1]["choices"] == [] and asked[-1]["usage"]["completion_tokens"] == 3
    assert all(e["usage"] is None for e in asked[:-1])
    every = events({"stream_options": {"include_usage": True, "continuous_usage_stats": True}})
    assert [e["usage"]["completion_tokens"] for e in every] == [1, 2, 3, 3]  # vLLM's extension


def test_chat_completions_use_the_stated_template(agreement):
    """A chat's prompt is its messages' contents joined by a space: the same tokens as that
    text sent to /v1/completions."""
    messages = [{"role": "system", "content": "the cats"},
                {"role": "user", "content": [{"type": "text", "text": "near the dog"}]}]  # fmt: skip
    body = {"max_tokens": 4, "temperature": 0}
    chat = httpx.post(f"{agreement}/chat/completions", json=body | {"messages": messages},
                      trust_env=False).json()  # fmt: skip
    text = httpx.post(f"{agreement}/completions", json=body | {"prompt": "the cats near the dog"},
                      trust_env=False).json()["choices"][0]["text"]  # fmt: skip
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": text}
    assert chat["usage"]["prompt_tokens"] == 6  # <bos> and five words
    with httpx.stream("POST", f"{agreement}/chat/completions", trust_env=False,
                      json=body | {"messages": messages, "stream": True}) as r:  # fmt: skip
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == text
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    bad = httpx.post(f"{agreement}/chat/completions", json={"messages": [{"role": "x"}]},
                     trust_env=False)  # fmt: skip
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"


def test_a_model_card_by_id_and_created_per_response(agreement):
    card = httpx.get(f"{agreement}/models/agreement", trust_env=False)
    assert card.status_code == 200 and card.json()["id"] == "agreement"
    assert "joined by one space" in card.json()["chat_template"]
    missing = httpx.get(f"{agreement}/models/gpt-4", trust_env=False)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    time.sleep(max(0.0, card.json()["created"] + 1.1 - time.time()))  # a later second
    before = int(time.time())
    body = {"prompt": "the cat", "max_tokens": 1}
    answer = httpx.post(f"{agreement}/completions", json=body, trust_env=False).json()
    assert before <= answer["created"] <= time.time(), (before, answer["created"])


def test_a_client_that_leaves_a_request_that_is_not_streamed_cancels_it():
    """Eight clients that give up after 0.2 s on answers that are not streamed and need
    seconds (GPT-2-small's shape on one thread): all eight are cancelled (they once held every
    slot, and the next request waited a minute)."""
    with running_server("gpt2-small-random", *ONE_THREAD, "--max-batch-size", "2") as url:
        body = {"prompt": [1], "max_tokens": 100, "temperature": 0}

        async def give_up():
            async with httpx.AsyncClient(timeout=0.2, trust_env=False) as client:
                calls = [client.post(f"{url}/completions", json=body) for _ in range(8)]
                return await asyncio.gather(*calls, return_exceptions=True)

        answers = asyncio.run(give_up())
        assert all(isinstance(a, httpx.TimeoutException) for a in answers), answers
        h = wait_until_idle(url, timeout=30)
        assert h["cancelled"] == 8 and h["free_blocks"] == h["num_blocks"], h
        assert h["steps"] < 8 * 100 // 4, f"the abandoned requests ran on: {h}"
        started = time.perf_counter()
        quick = httpx.post(f"{url}/completions", json=body | {"max_tokens": 2}, trust_env=False)
        assert quick.status_code == 200 and time.perf_counter() - started < 10


def in_process(model="tiny-random"):
    """The app in this process (Starlette's TestClient runs its lifespan): its EngineLoop can be
    broken on purpose."""
    from starlette.testclient import TestClient

    from llmlab.serve import Engine
    from llmlab.serve.http import create_app

    served = load_model(model)
    app = create_app(served, Engine(served.model, max_batch_size=2))
    return app, TestClient(app)


def test_an_exception_in_admission_or_a_step_fails_its_requests_and_the_others_go_on():
    app, client = in_process()
    body = {"prompt": [1, 2], "max_tokens": 3, "temperature": 0}
    with client:
        loop = app.state.engine["loop"]
        add, step, broken = loop.session.add, loop.session.step, {"step": 1}

        def bad_add(request):  # a request the engine cannot take, found only at admission
            if request.prompt == [9, 9]:
                raise OverflowError("Overflow when unpacking long long")
            return add(request)

        def bad_step():
            if broken["step"]:
                broken["step"] -= 1
                raise RuntimeError("a step broke")
            return step()

        loop.session.add = bad_add
        r = client.post("/v1/completions", json=body | {"prompt": [9, 9]})
        assert r.status_code == 500 and "Overflow" in r.json()["error"]["message"], r.text
        assert client.post("/v1/completions", json=body).status_code == 200
        loop.session.step = bad_step
        r = client.post("/v1/completions", json=body)
        assert r.status_code == 500 and "a step broke" in r.json()["error"]["message"]
        after = client.post("/v1/completions", json=body)
        assert after.status_code == 200 and len(after.json()["choices"][0]["token_ids"]) == 3
        h = client.get("/health")
        assert h.status_code == 200 and h.json()["failures"] == 2, h.json()
        assert h.json()["free_blocks"] == h.json()["num_blocks"]


def test_health_answers_503_when_the_engine_loop_has_stopped(monkeypatch):
    from llmlab.serve.http import EngineLoop

    async def dies(self):
        raise RuntimeError("the loop died")

    monkeypatch.setattr(EngineLoop, "run", dies)
    app, client = in_process()
    with client:
        h = client.get("/health")
        assert h.status_code == 503 and "the loop died" in h.json()["error"], h.text
        r = client.post("/v1/completions", json={"prompt": [1], "max_tokens": 2})
        assert r.status_code == 503 and r.json()["error"]["code"] == "engine_stopped"
