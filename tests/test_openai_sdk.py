"""The official `openai` Python SDK (a test tool only) against `python -m llmlab.serve.http`:
completions and chat, streamed and not, the loop of OpenAI's own documentation, logprobs and
echo, errors as the SDK's exceptions, and the SDK's timeouts and retries, which must not leave
orphaned sequences running."""

import time

import httpx
import pytest

from llmlab.serve.http import running_server

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.xdist_group("http_server")  # one worker starts these servers
ONE_THREAD = ("--threads", "1")


@pytest.fixture(scope="module")
def url():
    with running_server("agreement", *ONE_THREAD, "--max-batch-size", "4") as url:
        yield url


@pytest.fixture(scope="module")
def client(url):
    with openai.OpenAI(base_url=url, api_key="not-needed", max_retries=0) as client:
        yield client


def health(url):
    return httpx.get(url.removesuffix("/v1") + "/health", trust_env=False).json()


def test_a_completion_streamed_and_not(client):
    kwargs = dict(model="agreement", prompt="the cats near the dog", max_tokens=5, temperature=0)
    whole = client.completions.create(**kwargs)
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 5 and whole.usage.prompt_tokens == 6
    stream = client.completions.create(**kwargs, stream=True)
    texts = []
    for chunk in stream:  # the loop of OpenAI's documentation: every chunk has a choice
        texts.append(chunk.choices[0].text)
    assert "".join(texts) == whole.choices[0].text and len(texts) == 5


def test_usage_in_a_stream_when_asked_for(client):
    stream = client.completions.create(model="agreement", prompt="the cat", max_tokens=3,
                                       temperature=0, stream=True,
                                       stream_options={"include_usage": True})  # fmt: skip
    chunks = list(stream)
    assert [len(c.choices) for c in chunks] == [1, 1, 1, 0]
    assert chunks[-1].usage.completion_tokens == 3 and chunks[0].usage is None


def test_chat_streamed_and_not(client):
    messages = [{"role": "user", "content": "the cats near the dog"}]
    whole = client.chat.completions.create(model="agreement", messages=messages, max_tokens=4,
                                           temperature=0)  # fmt: skip
    text = whole.choices[0].message.content
    assert whole.choices[0].message.role == "assistant" and len(text.split()) == 4
    stream = client.chat.completions.create(model="agreement", messages=messages, max_tokens=4,
                                            temperature=0, stream=True)  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in stream) == text


def test_logprobs_and_echo(client):
    answer = client.completions.create(model="agreement", prompt="the cat", max_tokens=2,
                                       temperature=0, logprobs=2, echo=True)  # fmt: skip
    choice = answer.choices[0]
    assert choice.text.startswith(" the cat")
    lp = choice.logprobs
    assert lp.tokens[:2] == [" the", " cat"] and len(lp.tokens) == 4
    assert all(len(top) == 2 for top in lp.top_logprobs)
    assert all(v <= 0 for v in lp.token_logprobs)  # each given the <bos> and the words before


def test_errors_are_the_sdks_exceptions(client):
    with pytest.raises(openai.BadRequestError, match="top_p"):
        client.completions.create(model="agreement", prompt="the cat", top_p=0.5)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="gpt-4", prompt="the cat")
    with pytest.raises(openai.BadRequestError, match="seed"):
        client.completions.create(model="agreement", prompt="the cat", seed=2**64)
    assert client.models.retrieve("agreement").id == "agreement"
    assert [m.id for m in client.models.list()] == ["agreement"]


def test_timeouts_and_retries_leave_nothing_running():
    """One call with a 0.3 s timeout and the SDK's default two retries sends three requests
    that each need seconds (GPT-2-small's shape on one thread): each is cancelled when its
    connection closes (they once all ran on to the end, three orphans)."""
    with running_server("gpt2-small-random", *ONE_THREAD, "--max-batch-size", "1") as url:
        impatient = openai.OpenAI(base_url=url, api_key="x", timeout=0.3, max_retries=2)
        with impatient, pytest.raises(openai.APITimeoutError):
            impatient.completions.create(model="gpt2-small-random", prompt=[1], max_tokens=100,
                                         temperature=0)  # fmt: skip
        deadline = time.monotonic() + 30
        while (h := health(url))["running"] + h["waiting"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert h["cancelled"] == 3 and h["free_blocks"] == h["num_blocks"], h
        assert h["steps"] < 3 * 100 // 2, f"the abandoned requests ran on: {h}"
