"""Checks for exercises/05_kv_cache_loop.ipynb: a greedy generation loop with a KV cache.

The learner writes generate_cached(model, prompt_ids, max_new_tokens) -> (ids, logits): ids
(B, P + N) is the prompt followed by N greedy tokens, logits (B, N, V) the logits each new token
was picked from. The checks watch the model while the loop runs (hooks on the position
embedding and the first block record what every forward step was given), so they can say which
step went wrong and how: positions restarted at 0, the prompt fed again, the cache not advanced
or not used, and compare tokens and logits with llmlab.generate and a full forward pass.
"""

from dataclasses import dataclass, field

import torch

from llmlab.checkpoint import load_agreement_model
from llmlab.checks import CheckFailed, crashed, run_checks
from llmlab.generate import generate
from llmlab.model import GPTConfig, TinyGPT

# Batch 2, GQA (4 query heads, 2 KV heads), a prompt longer than one token and several new
# tokens: every slip below changes something these record.
_CONFIG = GPTConfig(vocab_size=61, block_size=32, n_layer=2, n_head=4, n_embd=32, n_kv_head=2)
_PROMPT_LEN, _NEW = 5, 6
_LOGIT_TOLERANCE = 1e-4  # float32 rounding of a cached vs a full pass is ~1e-6 here


def _model():
    torch.manual_seed(5)
    model = TinyGPT(_CONFIG).eval()
    prompt = torch.randint(
        _CONFIG.vocab_size, (2, _PROMPT_LEN), generator=torch.Generator().manual_seed(6)
    )
    return model, prompt


@dataclass
class _Step:
    """What the first block saw in one forward step."""

    n_tokens: int
    cache: object  # the KVCache object, or None
    cache_length: int | None  # positions the cache said it held when the step began
    positions: list[int] = field(default_factory=list)


@dataclass
class _Run:
    ids: object = None
    logits: object = None
    steps: list[_Step] = field(default_factory=list)
    error: Exception | None = None
    caches_made: int = 0  # calls to model.new_kv_cache
    final_norms: int = 0  # calls to model.ln_f


def _record(generate_cached, model, prompt, n_new) -> _Run:
    """Run the learner's loop with hooks recording every step; keep its error for later."""
    run = _Run()

    pending = {}  # wpe runs before block 0 in a step: its positions wait here for the block

    def on_positions(module, args, output):
        pos = args[0]
        if pos.dim() == 2 and bool((pos == pos[:1]).all()):
            pos = pos[0]  # (B, T) positions, every row the same: one row says it
        pending["positions"] = pos.reshape(-1).tolist()

    def on_block(module, args, kwargs):
        x = args[0] if args else kwargs["x"]
        cache = args[1] if len(args) > 1 else kwargs.get("kv_cache")
        length = None if cache is None else int(cache.length)
        run.steps.append(_Step(x.size(1), cache, length, pending.pop("positions", [])))

    def on_final_norm(module, args, output):
        run.final_norms += 1

    make_cache = model.new_kv_cache

    def new_kv_cache(*args, **kwargs):
        run.caches_made += 1
        return make_cache(*args, **kwargs)

    model.new_kv_cache = new_kv_cache  # on this instance only: the checks make a fresh model
    hooks = [
        model.wpe.register_forward_hook(on_positions),
        model.blocks[0].register_forward_pre_hook(on_block, with_kwargs=True),
        model.ln_f.register_forward_hook(on_final_norm),
    ]
    try:
        out = generate_cached(model, prompt.clone(), n_new)
        if not isinstance(out, tuple) or len(out) != 2:
            raise CheckFailed(
                f"generate_cached() returned {type(out).__name__}; return a pair (ids, logits)"
            )
        run.ids, run.logits = out
    except (CheckFailed, NotImplementedError):
        raise
    except Exception as error:  # noqa: BLE001 - kept: the step record may explain it better
        run.error = error
    finally:
        for hook in hooks:
            hook.remove()
        del model.new_kv_cache
    return run


def _crash_hint(error):
    text = str(error)
    if "kv_cache is full" in text:
        return (
            "the cache is too short: make it for the prompt and every new token, "
            "model.new_kv_cache(B, P + max_new_tokens)"
        )
    if "kv_cache holds a batch of" in text:
        return "the cache was made for another batch size: model.new_kv_cache(B, ...), B rows"
    if "same number of dimensions" in text:
        return (
            "argmax(dim=-1) drops the last dimension: keepdim=True gives (B, 1), which "
            "torch.cat can append to ids (B, T)"
        )
    return None


def _crashed(run):
    if run.error is not None:
        raise crashed("generate_cached", run.error, _crash_hint(run.error)) from None


def _tokens(n):
    return f"{n} token{'s' if n != 1 else ''}"


def _diagnose_steps(run, prompt_len, n_new):
    """None if every step was fed and cached as it should be; else one sentence on the first slip.

    When the learner's code raised, the steps it ran are still judged; the sentence then ends
    with the error, and a missing step is never blamed on its own.
    """
    steps = run.steps
    if not steps:
        if run.error is not None:
            return None
        return "the model was never run: call it once on the prompt, then once per new token"
    if all(s.cache is None for s in steps):
        if run.caches_made:
            return (
                "a cache was made but no block was given it: pass it to every block call, "
                "block(x, cache, layer), so that a step computes only the new token"
            )
        return (
            "no step used a KV cache: make one with model.new_kv_cache(batch, max_len) and pass "
            "it to every step, so a step computes only the new token"
        )
    first = steps[0]
    if first.n_tokens != prompt_len:
        return (
            f"the first step (the prefill) fed {_tokens(first.n_tokens)}; feed the whole prompt "
            f"({_tokens(prompt_len)}) at once"
        )
    if first.cache_length not in (None, 0):
        return (
            f"the cache said it held {first.cache_length} positions before the prefill wrote "
            "any: advance it after the blocks have run (each block writes at cache.length), "
            "not before"
        )
    if first.positions and first.positions != list(range(prompt_len)):
        if first.positions == list(range(1, prompt_len + 1)):
            return (
                f"the prefill used positions 1..{prompt_len}; the first token sits at position "
                f"0, so the prompt is at 0..{prompt_len - 1}"
            )
        return (
            f"the prefill used positions {first.positions}; the prompt sits at 0..{prompt_len - 1}"
        )
    for i, step in enumerate(steps[1:], start=1):
        expected_length = prompt_len + i - 1
        if step.cache is None:
            return f"step {i} ran without the KV cache; pass the cache to every step"
        if step.cache is not first.cache:
            return (
                f"step {i} used a new cache: make the cache once before the loop and keep it, "
                "or each step forgets the tokens before it"
            )
        if step.n_tokens != 1:
            return (
                f"step {i} fed {step.n_tokens} tokens: the prompt (or the whole sequence) is fed "
                "again every step; feed only the token picked last, the cache holds the rest"
            )
        if step.cache_length != expected_length:
            if step.cache_length == expected_length + 1:
                return (
                    f"at step {i} the cache says it holds {step.cache_length} positions before "
                    f"the step wrote its token, not {expected_length}: advance it after the "
                    "blocks have run (each block writes at cache.length), not before"
                )
            if step.cache_length in (0, prompt_len):
                return (
                    f"the cache was not advanced: at step {i} it says it holds "
                    f"{step.cache_length} positions, not {expected_length}; call "
                    "kv_cache.advance(n_tokens) once per step, after all layers"
                )
            return (
                f"at step {i} the cache holds {step.cache_length} positions, not "
                f"{expected_length}: advance it by the number of new tokens, once per step "
                "(not once per layer)"
            )
        if step.positions and step.positions != [expected_length]:
            if step.positions == [0]:
                return (
                    f"positions restarted at 0: step {i}'s token sits at position "
                    f"{expected_length}, so it needs position embedding {expected_length}, "
                    "not 0; start positions at the cache's length"
                )
            if step.positions == [expected_length + 1]:
                return (
                    f"step {i} used position {expected_length + 1}, one too far: that is the "
                    f"length of ids with the new token in it; the token sits at "
                    f"{expected_length}, the number of tokens before it (cache.length)"
                )
            return (
                f"step {i} used positions {step.positions}; the new token sits at position "
                f"{expected_length} (the number of tokens before it)"
            )
    if run.error is None and len(steps) != n_new:
        return (
            f"the model ran {len(steps)} times for {n_new} new tokens; one prefill and "
            f"{n_new - 1} one-token steps make {n_new} (the last token is picked, never fed)"
        )
    return None


def _shapes(run, prompt, n_new, vocab_size):
    B, P = prompt.shape
    ids, logits = run.ids, run.logits
    if not isinstance(ids, torch.Tensor) or not isinstance(logits, torch.Tensor):
        raise CheckFailed(
            f"generate_cached() returned ({type(ids).__name__}, {type(logits).__name__}); "
            "return two tensors (ids, logits)"
        )
    want_ids, want_logits = (B, P + n_new), (B, n_new, vocab_size)
    if tuple(ids.shape) == want_logits and tuple(logits.shape) == want_ids:
        raise CheckFailed("the pair is the wrong way round: return (ids, logits), ids first")
    if tuple(ids.shape) != want_ids:
        if tuple(ids.shape) == (B, n_new):
            raise CheckFailed(
                f"ids has shape {tuple(ids.shape)}: only the new tokens; return the prompt "
                f"followed by them, shape {want_ids}"
            )
        raise CheckFailed(
            f"ids has shape {tuple(ids.shape)}, expected {want_ids} "
            f"(batch, prompt {P} + {n_new} new tokens)"
        )
    if ids.dtype != torch.long:
        raise CheckFailed(f"ids has dtype {ids.dtype}; token ids are torch.long")
    if not torch.equal(ids[:, :P].cpu(), prompt):
        raise CheckFailed(
            "ids does not start with the prompt; return the prompt, then the new tokens"
        )
    if tuple(logits.shape) != want_logits:
        if tuple(logits.shape) == (n_new, B, vocab_size) and n_new != B:
            raise CheckFailed(
                f"logits has shape {tuple(logits.shape)}, steps first: stack the rows along "
                f"dim 1, torch.stack(rows, dim=1), to get (B, N, V) = {want_logits}"
            )
        raise CheckFailed(
            f"logits has shape {tuple(logits.shape)}, expected {want_logits}: one row "
            "of vocabulary logits per new token, the row its token was picked from"
        )
    if not logits.is_floating_point():
        raise CheckFailed(f"logits has dtype {logits.dtype}; return the float logits")


def check_shapes(generate_cached):
    model, prompt = _model()
    run = _record(generate_cached, model, prompt, _NEW)
    _crashed(run)
    _shapes(run, prompt, _NEW, _CONFIG.vocab_size)
    return f"ids {tuple(run.ids.shape)} start with the prompt; logits {tuple(run.logits.shape)}"


def check_steps(generate_cached):
    model, prompt = _model()
    run = _record(generate_cached, model, prompt, _NEW)
    slip = _diagnose_steps(run, _PROMPT_LEN, _NEW)
    if slip and run.error is not None:
        raw = crashed("generate_cached", run.error)
        raise CheckFailed(f"{slip}; then {raw}")
    if slip:
        raise CheckFailed(slip)
    _crashed(run)
    return (
        f"one prefill of {_PROMPT_LEN} tokens, then {_NEW - 1} one-token steps against one cache, "
        "advanced each step, at the right positions"
    )


def _full_pass(model, ids):
    """Logits at every position of ids, no cache: what each new token should be picked from."""
    with torch.inference_mode():
        return model(ids.cpu()).double()


def check_logits(generate_cached):
    model, prompt = _model()
    run = _record(generate_cached, model, prompt, _NEW)
    _crashed(run)
    _shapes(run, prompt, _NEW, _CONFIG.vocab_size)
    full = _full_pass(model, run.ids[:, :-1])  # (B, P + N - 1, V): every position, no cache
    expected = full[:, _PROMPT_LEN - 1 :]  # the positions each new token was predicted from
    got = run.logits.detach().double().cpu()
    if torch.allclose(got.sum(-1), torch.ones((), dtype=got.dtype), atol=1e-3) and (got >= 0).all():
        raise CheckFailed(
            "logits rows sum to 1: these are probabilities (softmax); return raw logits"
        )
    if torch.allclose(got.logsumexp(-1), torch.zeros((), dtype=got.dtype), atol=1e-3):
        raise CheckFailed(
            "logits rows are log-probabilities (log_softmax: exp sums to 1); return raw logits"
        )
    error = (got - expected).abs().amax(dim=(0, 2))  # per step
    if error.max() > _LOGIT_TOLERANCE:
        step = int((error > _LOGIT_TOLERANCE).nonzero()[0])
        if step == 0 and (got[:, 0] - full[:, 0]).abs().max() <= _LOGIT_TOLERANCE:
            raise CheckFailed(
                "step 0's logits are those of the prompt's first position; take the last "
                "position's (logits[:, -1])"
            )
        if run.final_norms == 0:
            raise CheckFailed(
                "the final layer norm is skipped: logits are model.lm_head(model.ln_f(x)), "
                "not model.lm_head(x)"
            )
        raise CheckFailed(
            f"step {step}'s logits differ from a full forward pass over the same tokens by up to "
            f"{error[step]:.2g} (tolerance {_LOGIT_TOLERANCE:g})"
        )
    return f"each step's logits match a full forward pass to {error.max():.1e}"


def _token_problem(model, run, prompt_len, reference):
    """None if every new token is the argmax of a full pass over the learner's own tokens.

    A token within _LOGIT_TOLERANCE of the top logit counts as the argmax: float32 rounding may
    break such a near-tie either way on another CPU. `reference` is llmlab.generate's answer,
    named in the sentence.
    """
    ids = run.ids.cpu()
    full = _full_pass(model, ids[:, :-1])[:, prompt_len - 1 :]  # (B, N, V)
    picked = ids[:, prompt_len:]
    gap = full.amax(-1) - full.gather(-1, picked.unsqueeze(-1)).squeeze(-1)  # (B, N), >= 0
    if bool((gap <= _LOGIT_TOLERANCE).all()):
        return None
    row, step = (gap > _LOGIT_TOLERANCE).nonzero()[0].tolist()
    own = run.logits[row, step].argmax().item()
    if own == picked[row, step].item():
        return None  # its own logits are off; the logits check names that
    if full[row, step].argmax().item() == own:
        return (
            f"new token {step} of sequence {row} is {picked[row, step].item()}, not the argmax "
            f"of its own logits row ({own}); pick greedily: logits.argmax(dim=-1)"
        )
    return (
        f"new token {step} of sequence {row} is {picked[row, step].item()}, llmlab.generate "
        f"picks {reference[row, prompt_len + step].item()}"
    )


def check_tokens(generate_cached):
    model, prompt = _model()
    run = _record(generate_cached, model, prompt, _NEW)
    _crashed(run)
    _shapes(run, prompt, _NEW, _CONFIG.vocab_size)
    problem = _token_problem(model, run, _PROMPT_LEN, generate(model, prompt, _NEW))
    if problem is None:
        problem = _logits_problem(model, run)
    if problem:
        raise CheckFailed(problem)
    return "the greedy tokens of a full forward pass (llmlab.generate's), batch of 2, GQA model"


def _logits_problem(model, run):
    """Tokens that follow the learner's own (wrong) logits: say the tokens inherit the slip."""
    full = _full_pass(model, run.ids[:, :-1].cpu())[:, _PROMPT_LEN - 1 :]
    if (run.logits.detach().double().cpu() - full).abs().max() <= _LOGIT_TOLERANCE:
        return None
    picked = run.ids[:, _PROMPT_LEN:].cpu()
    gap = full.amax(-1) - full.gather(-1, picked.unsqueeze(-1)).squeeze(-1)
    if bool((gap <= _LOGIT_TOLERANCE).all()):
        return None
    return (
        "the tokens are the argmax of your logits, but those differ from a full forward pass "
        "(see the logits check), so the tokens differ from llmlab.generate's"
    )


def check_one_new_token(generate_cached):
    model, prompt = _model()
    run = _record(generate_cached, model, prompt, 1)
    slip = _diagnose_steps(run, _PROMPT_LEN, 1)
    _crashed(run)
    if slip:
        raise CheckFailed(f"with max_new_tokens=1: {slip}")
    _shapes(run, prompt, 1, _CONFIG.vocab_size)
    problem = _token_problem(model, run, _PROMPT_LEN, generate(model, prompt, 1))
    if problem:
        raise CheckFailed(f"with max_new_tokens=1 {problem}")
    return "max_new_tokens=1: the prefill alone, one token"


def check_trained_model(generate_cached):
    from llmlab import agreement

    model = load_agreement_model()
    sentences = [
        "<bos> the old cat near the dogs",
        "<bos> the cats near the dog",
        "<bos> the happy children behind the small mouse",
    ]
    for sentence in sentences:
        prompt = torch.tensor([agreement.VOCAB.encode(sentence)])
        n_new = model.config.block_size - prompt.size(1)
        run = _record(generate_cached, model, prompt, n_new)
        _crashed(run)
        _shapes(run, prompt, n_new, model.config.vocab_size)
        expected = generate(model, prompt, n_new)
        if _not_greedy(model, run, prompt.size(1)):
            raise CheckFailed(
                f'on the trained model, "{sentence}" continues as '
                f'"{agreement.VOCAB.decode(run.ids[0, prompt.size(1) :].tolist())}", llmlab.generate '
                f'gives "{agreement.VOCAB.decode(expected[0, prompt.size(1) :].tolist())}"'
            )
    return (
        f"the trained agreement model continues {len(sentences)} sentences as llmlab.generate does"
    )


def _not_greedy(model, run, prompt_len):
    """True when a token is not (within tolerance) the argmax of a full pass at its position."""
    full = _full_pass(model, run.ids[:, :-1].cpu())[:, prompt_len - 1 :]
    picked = run.ids[:, prompt_len:].cpu()
    gap = full.amax(-1) - full.gather(-1, picked.unsqueeze(-1)).squeeze(-1)
    return not bool((gap <= _LOGIT_TOLERANCE).all())


CHECKS = [
    ("returns (ids, logits)", check_shapes),
    ("prefill, then one token per step", check_steps),
    ("logits", check_logits),
    ("tokens", check_tokens),
    ("one new token", check_one_new_token),
    ("trained model", check_trained_model),
]


def check_generate_cached(generate_cached):
    """Run every check on the learner's generate_cached; print and return the report."""
    return run_checks(CHECKS, generate_cached, "generate_cached")
