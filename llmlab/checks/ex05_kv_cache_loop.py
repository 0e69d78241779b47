"""Checks for exercises/05_kv_cache_loop.ipynb: a greedy generation loop with a KV cache.

The learner writes generate_cached(model, prompt_ids, max_new_tokens) -> (ids, logits): ids
(B, P + N) is the prompt followed by N greedy tokens, logits (B, N, V) the logits each new token
was picked from. The checks judge behaviour, never internals: the returned tokens and logits
(against a full forward pass of a pristine copy of the model, so a loop that changes the model
cannot grade itself), and what the loop gave the cache it passed, the public object every
forward pass writes to (how many passes wrote to it, how many tokens each fed, at which cache
length, and whether it was one cache). Which submodules ran, and how positions were computed,
are never looked at: a slip in the positions shows in the logits, and is named by rebuilding
each known slip (positions restarted at 0, shifted by one) and finding the one that matches.

Then llmlab.checks.differential compares the learner's loop with the reference in
exercises/solutions/ on the task's example, a boundary table (one new token, a one-token prompt,
a batch of one, a sequence that fills the context, multi-head attention) and generated models
and prompts, shrunk to the smallest disagreement.
"""

import copy
from dataclasses import dataclass, field

import torch

from llmlab.checkpoint import load_agreement_model
from llmlab.checks import CheckFailed, crashed, run_checks
from llmlab.checks.differential import Difference, Differential, case, changed, reference
from llmlab.generate import generate
from llmlab.kv_cache import KVCache
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
class _Pass:
    """One forward pass, as the cache it wrote to saw it."""

    cache: object  # the KVCache written to
    n_tokens: int  # tokens fed (the T of the keys written)
    cache_length: int  # cache.length when layer 0 wrote: where this pass's tokens went
    later_lengths: list[int] = field(default_factory=list)  # cache.length at layers 1, 2, ...


@dataclass
class _Run:
    ids: object = None
    logits: object = None
    passes: list[_Pass] = field(default_factory=list)
    error: Exception | None = None
    caches_made: int = 0
    changed: str | None = None  # how the learner's function changed the model or the prompt


def _record(generate_cached, model, prompt, n_new) -> _Run:
    """Run the learner's loop on a copy of (model, prompt), recording what each pass wrote to a
    KVCache; keep its error for later, and note any change to the model or the prompt."""
    run = _Run()
    pristine = (copy.deepcopy(model), prompt.clone())
    update, init = KVCache.update, KVCache.__init__

    def recording_update(self, layer, k, v):
        if layer == 0 or not run.passes or run.passes[-1].cache is not self:
            run.passes.append(_Pass(self, int(k.size(2)), int(self.length)))
        else:
            run.passes[-1].later_lengths.append(int(self.length))
        return update(self, layer, k, v)

    def counting_init(self, *args, **kwargs):
        run.caches_made += 1
        init(self, *args, **kwargs)

    KVCache.update, KVCache.__init__ = recording_update, counting_init
    try:
        out = generate_cached(model, prompt, n_new)
        if not isinstance(out, tuple) or len(out) != 2:
            raise CheckFailed(
                f"generate_cached() returned {type(out).__name__}; return a pair (ids, logits)"
            )
        run.ids, run.logits = out
    except (CheckFailed, NotImplementedError):
        raise
    except Exception as error:  # noqa: BLE001 - kept: the pass record may explain it better
        run.error = error
    finally:
        KVCache.update, KVCache.__init__ = update, init
    run.changed = changed(pristine[0], model, "the model") or changed(
        pristine[1], prompt, "prompt_ids"
    )
    return run


def _unchanged(run):
    if run.changed:
        raise CheckFailed(
            f"generate_cached() changed its input: {run.changed}; leave the caller's model and "
            "prompt as they are (work on a copy if you need another dtype or device)"
        )


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
    """None if every pass was fed and cached as it should be; else one sentence on the first slip.

    When the learner's code raised, the passes it ran are still judged; the sentence then ends
    with the error, and a missing pass is never blamed on its own.
    """
    passes = run.passes
    if not passes:
        if run.error is not None:
            return None
        if run.caches_made:
            return (
                "a cache was made but no block was given it: pass it to every block call, "
                "block(x, cache, layer), so that a step computes only the new token"
            )
        return (
            "no step used a KV cache: make one with model.new_kv_cache(batch, max_len) and pass "
            "it to every step, so a step computes only the new token"
        )
    first = passes[0]
    if first.n_tokens != prompt_len:
        return (
            f"the first step (the prefill) fed {_tokens(first.n_tokens)}; feed the whole prompt "
            f"({_tokens(prompt_len)}) at once"
        )
    if first.cache_length != 0:
        return (
            f"the cache said it held {first.cache_length} positions before the prefill wrote "
            "any: advance it after the blocks have run (each block writes at cache.length), "
            "not before"
        )
    for i, step in enumerate(passes):
        if any(length != step.cache_length for length in step.later_lengths):
            return (
                f"in step {i} the cache's length changed between layers: advance it by the "
                "number of new tokens, once per step, after every layer has written "
                "(not once per layer)"
            )
    for i, step in enumerate(passes[1:], start=1):
        expected_length = prompt_len + i - 1
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
    if run.error is None and len(passes) != n_new:
        return (
            f"the model ran {len(passes)} times for {n_new} new tokens; one prefill and "
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
        "advanced after each step"
    )


def check_inputs_unchanged(generate_cached):
    model, prompt = _model()
    run = _record(generate_cached, model, prompt, _NEW)
    _unchanged(run)
    _crashed(run)
    return "the caller's model (weights, dtype, device) and prompt are as they were"


def _full_pass(model, ids):
    """Logits at every position of ids, no cache: what each new token should be picked from."""
    with torch.inference_mode():
        return model(ids.cpu()).double()


@torch.inference_mode()
def _variant(model, prompt, n_new, restart=False, prefill_shift=0, decode_shift=0, norm=True):
    """The reference loop with one known slip: its (ids, logits), or None if it cannot run."""
    B, P = prompt.shape
    cache = model.new_kv_cache(B, P + n_new)
    ids, new, rows = prompt, prompt, []
    try:
        for step in range(n_new):
            start = (0 if restart else cache.length) + (
                prefill_shift if step == 0 else decode_shift
            )
            x = model.wte(new) + model.wpe(torch.arange(start, start + new.size(1)))
            for layer, block in enumerate(model.blocks):
                x, _ = block(x, cache, layer)
            cache.advance(new.size(1))
            h = x[:, -1]
            logits = model.lm_head(model.ln_f(h) if norm else h)
            rows.append(logits)
            new = logits.argmax(-1, keepdim=True)
            ids = torch.cat([ids, new], dim=1)
    except (IndexError, ValueError, RuntimeError):  # a position past the table
        return None
    return ids, torch.stack(rows, dim=1).double()


_VARIANTS = [  # (sentence, slip): the known slips that show only in the logits
    ("positions restarted at 0: a token fed after the prefill sits at position cache.length "
     "(P, P + 1, ...), so it needs that position's embedding, not 0's; start positions at the "
     "cache's length", {"restart": True}),
    ("the prefill used positions 1..P; the first token sits at position 0, so the prompt is at "
     "0..P-1", {"prefill_shift": 1, "decode_shift": 1}),
    ("each one-token step used a position one too far: that is the length of ids with the new "
     "token in it; the token sits at the number of tokens before it (cache.length)",
     {"decode_shift": 1}),
    ("the final layer norm is skipped: logits are model.lm_head(model.ln_f(x)), not "
     "model.lm_head(x)", {"norm": False}),
]  # fmt: skip


def _named_slip(model, prompt, n_new, logits):
    """The sentence of the one known slip whose logits the learner's match, or None."""
    got = logits.detach().double().cpu()
    found = []
    for sentence, slip in _VARIANTS:
        out = _variant(model, prompt, n_new, **slip)
        if out is not None and tuple(out[1].shape) == tuple(got.shape):
            if (out[1] - got).abs().max() <= _LOGIT_TOLERANCE:
                found.append(sentence)
    if len(found) == 1:
        prompt_len = prompt.size(1)
        return (
            found[0].replace("1..P", f"1..{prompt_len}").replace("0..P-1", f"0..{prompt_len - 1}")
        )
    return None


def _logits_sentence(model, prompt, run):
    """None when the learner's logits are a full pass's; else one sentence naming the slip."""
    prompt_len, n_new = prompt.size(1), run.logits.size(1)
    full = _full_pass(model, run.ids[:, :-1])  # (B, P + N - 1, V): every position, no cache
    expected = full[:, prompt_len - 1 :]  # the positions each new token was predicted from
    got = run.logits.detach().double().cpu()
    if torch.allclose(got.sum(-1), torch.ones((), dtype=got.dtype), atol=1e-3) and (got >= 0).all():
        return "logits rows sum to 1: these are probabilities (softmax); return raw logits"
    if torch.allclose(got.logsumexp(-1), torch.zeros((), dtype=got.dtype), atol=1e-3):
        return "logits rows are log-probabilities (log_softmax: exp sums to 1); return raw logits"
    error = (got - expected).abs().amax(dim=(0, 2))  # per step
    if error.max() <= _LOGIT_TOLERANCE:
        return None
    step = int((error > _LOGIT_TOLERANCE).nonzero()[0])
    if step == 0 and (got[:, 0] - full[:, 0]).abs().max() <= _LOGIT_TOLERANCE:
        return (
            "step 0's logits are those of the prompt's first position; take the last "
            "position's (logits[:, -1])"
        )
    named = _named_slip(model, prompt, n_new, run.logits)
    if named:
        return named
    return (
        f"step {step}'s logits differ from a full forward pass over the same tokens by up to "
        f"{error[step]:.2g} (tolerance {_LOGIT_TOLERANCE:g})"
    )


def check_logits(generate_cached):
    model, prompt = _model()
    run = _record(generate_cached, model, prompt, _NEW)
    _crashed(run)
    _shapes(run, prompt, _NEW, _CONFIG.vocab_size)
    pristine, _ = _model()
    problem = _logits_sentence(pristine, prompt, run)
    if problem and run.changed:
        _unchanged(run)
    if problem:
        raise CheckFailed(problem)
    full = _full_pass(pristine, run.ids[:, :-1])[:, _PROMPT_LEN - 1 :]
    error = (run.logits.detach().double().cpu() - full).abs().max()
    return f"each step's logits match a full forward pass to {error:.1e}"


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
    pristine, _ = _model()
    problem = _token_problem(pristine, run, _PROMPT_LEN, generate(pristine, prompt, _NEW))
    if problem is None:
        problem = _logits_problem(pristine, run)
    if problem and run.changed:
        _unchanged(run)
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
    pristine, _ = _model()
    problem = _token_problem(pristine, run, _PROMPT_LEN, generate(pristine, prompt, 1))
    if problem:
        raise CheckFailed(f"with max_new_tokens=1 {problem}")
    return "max_new_tokens=1: the prefill alone, one token"


def check_trained_model(generate_cached):
    from llmlab import agreement

    pristine = load_agreement_model()
    sentences = [
        "<bos> the old cat near the dogs",
        "<bos> the cats near the dog",
        "<bos> the happy children behind the small mouse",
    ]
    for sentence in sentences:
        prompt = torch.tensor([agreement.VOCAB.encode(sentence)])
        n_new = pristine.config.block_size - prompt.size(1)
        run = _record(generate_cached, copy.deepcopy(pristine), prompt, n_new)
        _crashed(run)
        _shapes(run, prompt, n_new, pristine.config.vocab_size)
        expected = generate(pristine, prompt, n_new)
        if _not_greedy(pristine, run, prompt.size(1)):
            if run.changed:
                _unchanged(run)
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


# ---- the learner's loop against the reference (llmlab.checks.differential) -----------------


def _tiny(seed, vocab_size, n_layer, n_head, n_kv_head, head_dim, block_size=16):
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                       n_head=n_head, n_embd=n_head * head_dim, n_kv_head=n_kv_head)  # fmt: skip
    return TinyGPT(config).eval()


def _prompt(seed, batch, length, vocab_size):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(vocab_size, (batch, length), generator=g)


def _compare(got, expected, c):
    """None when (ids, logits) are a greedy run of the (pristine) model, else a Difference."""
    model, prompt, n_new = c.args
    B, P = prompt.shape
    V = model.config.vocab_size
    if not isinstance(got, tuple) or len(got) != 2:
        return Difference("", got, expected, "is not a pair (ids, logits)")
    ids, logits = got
    for what, value, shape in (("ids", ids, (B, P + n_new)), ("logits", logits, (B, n_new, V))):
        if not isinstance(value, torch.Tensor):
            return Difference(what, value, None, f"is {type(value).__name__}, not a tensor")
        if tuple(value.shape) != shape:
            return Difference(what, value, None, f"has shape {tuple(value.shape)}, not {shape}")
    if ids.dtype != torch.long or not logits.is_floating_point():
        return Difference("ids", ids, expected[0], f"has dtype {ids.dtype} (logits {logits.dtype})")
    ids, got_logits = ids.cpu(), logits.detach().double().cpu()
    if not torch.equal(ids[:, :P], prompt):
        return Difference("ids[:, :P]", ids[:, :P], prompt, "is not the prompt")
    full = _full_pass(model, ids[:, :-1])[:, P - 1 :]  # (B, N, V)
    error = (got_logits - full).abs()
    if error.max() > _LOGIT_TOLERANCE:
        b, step, v = (int(i) for i in torch.unravel_index(error.argmax(), error.shape))
        return Difference(f"logits[{b}, {step}, {v}]", got_logits[b, step, v].item(),
                          full[b, step, v].item())  # fmt: skip
    picked = ids[:, P:]
    gap = full.amax(-1) - full.gather(-1, picked.unsqueeze(-1)).squeeze(-1)
    if bool((gap > _LOGIT_TOLERANCE).any()):
        b, step = (gap > _LOGIT_TOLERANCE).nonzero()[0].tolist()
        return Difference(f"ids[{b}, {P + step}]", int(picked[b, step]),
                          int(full[b, step].argmax()))  # fmt: skip
    return None


def _named(c, got, expected):
    model, prompt, n_new = c.args
    if not isinstance(got, tuple) or len(got) != 2 or not isinstance(got[1], torch.Tensor):
        return None
    if tuple(got[1].shape) != (prompt.size(0), n_new, model.config.vocab_size):
        return None
    return _named_slip(model, prompt, n_new, got[1])


def _show_input(c):
    model, prompt, n_new = c.args
    k = model.config
    shown = prompt.tolist() if prompt.numel() <= 12 else f"of shape {tuple(prompt.shape)}"
    return (
        f"a TinyGPT (n_layer={k.n_layer}, n_head={k.n_head}, n_kv_head={k.n_kv_head}, "
        f"n_embd={k.n_embd}, vocab_size={k.vocab_size}, block_size={k.block_size}), "
        f"prompt_ids={shown} and max_new_tokens={n_new}"
    )


def _generate(draw):
    n_kv_head = draw.integer(1, 2)
    n_head = n_kv_head * draw.choice([1, 2])
    model = _tiny(draw.seed(), draw.integer(5, 40), draw.integer(1, 2), n_head, n_kv_head,
                  draw.choice([4, 8]))  # fmt: skip
    batch, length = draw.integer(1, 3), draw.integer(1, 6)
    n_new = draw.integer(1, 6)
    return case(model, _prompt(draw.seed(), batch, length, model.config.vocab_size), n_new)


_EXAMPLE_MODEL, _EXAMPLE_PROMPT = _model()
_MHA = _tiny(3, 23, 2, 2, 2, 8)
DIFF = Differential(
    reference("05_kv_cache_loop", "generate_cached"),
    examples=[case(_EXAMPLE_MODEL, _EXAMPLE_PROMPT, _NEW)],
    boundaries=[
        case(_EXAMPLE_MODEL, _EXAMPLE_PROMPT, 1).because("N = 1: the prefill alone"),
        case(_MHA, _prompt(1, 2, 1, 23), 4).because("a one-token prompt"),
        case(_MHA, _prompt(2, 1, 3, 23), 3).because("a batch of one"),
        case(_MHA, _prompt(3, 2, 9, 23), 7).because(
            "P + N = block_size: the last token is picked, never fed"
        ),
        case(_tiny(4, 17, 1, 2, 1, 8), _prompt(4, 3, 4, 17), 5).because(
            "grouped-query attention (fewer KV heads than query heads)"
        ),
    ],
    generate=_generate,
    n_generated=40,
    seed=5,
    compare=_compare,
    diagnose=_named,
    show_input=_show_input,
)
_examples, _boundaries, _generated = DIFF.checks()


def _one_thread(check):
    """The check on one torch thread: the models are tiny, and spinning OpenMP threads on a busy
    machine made them many times slower."""

    def run(generate_cached):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return check(generate_cached)
        finally:
            torch.set_num_threads(threads)

    return run


CHECKS = [
    (name, _one_thread(check))
    for name, check in [
        _examples,
        ("returns (ids, logits)", check_shapes),
        ("prefill, then one token per step", check_steps),
        ("logits", check_logits),
        ("tokens", check_tokens),
        ("one new token", check_one_new_token),
        ("trained model", check_trained_model),
        ("inputs unchanged", check_inputs_unchanged),
        _boundaries,
        _generated,
    ]
]


def check_generate_cached(generate_cached):
    """Run every check on the learner's generate_cached; print and return the report."""
    return run_checks(CHECKS, generate_cached, "generate_cached")
