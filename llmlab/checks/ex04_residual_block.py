"""Checks for exercises/04_residual_block.ipynb: a pre-LN transformer block with residuals.

The learner writes block_forward(block, x) -> (B, T, C) from an engine Block's sublayers:
block.ln_1, block.attn (which returns (output, weights)), block.ln_2 and block.mlp. The
reference is llmlab.model.Block.forward itself; when the output is off, the checks rebuild the
classic mistakes from the same sublayers and name the one that matches.
"""

import copy
import itertools

import torch
import torch.nn as nn

from llmlab import agreement
from llmlab.checks import CheckFailed, crashed, describe_difference, run_checks
from llmlab.checks.differential import Difference, Differential, case, differs, reference
from llmlab.model import Block, GPTConfig

ATOL = 1e-5


def _block(seed=0, n_embd=16, n_head=4, zero_sublayers=False):
    """A Block whose sublayers change x visibly (Xavier weights, non-trivial norm scales and shifts),
    so that every misplaced norm or residual shows in the output."""
    torch.manual_seed(seed)
    block = Block(GPTConfig(vocab_size=8, block_size=16, n_layer=1, n_head=n_head, n_embd=n_embd))
    with torch.no_grad():
        for p in block.parameters():
            if p.dim() == 2:
                nn.init.xavier_normal_(p)
            else:
                p.normal_(0.0, 0.3)
        for norm in (block.ln_1, block.ln_2):
            norm.weight.add_(1.0)  # scales around 1, different in ln_1 and ln_2
        if zero_sublayers:
            for linear in (block.attn.out_proj, block.mlp.proj):
                linear.weight.zero_()
                linear.bias.zero_()
    return block.eval()


def _x(shape=(2, 7, 16), seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _run(block_forward, block, x):
    """The learner's function; a crash becomes one sentence naming its likely cause."""
    try:
        return block_forward(block, x)
    except (NotImplementedError, CheckFailed):
        raise
    except TypeError as error:
        if "tuple" in str(error):
            raise CheckFailed(
                "block.attn returns a pair (output, weights): take its first element before "
                "adding it to x"
            ) from None
        raise crashed("block_forward", error) from None
    except RuntimeError as error:
        hint = None
        if "must match the size" in str(error):
            hint = (
                "a sum of tensors of different shapes: block.attn returns (output, weights), and "
                "the weights, (B, n_heads, T, T), cannot be added to x; add the output, element 0"
            )
        raise crashed("block_forward", error, hint) from None


def _call(block_forward, block, x):
    with torch.no_grad():
        out = _run(block_forward, block, x)
    if isinstance(out, tuple):
        raise CheckFailed(
            f"block_forward() returned a tuple of {len(out)}; return only the new hidden state, one (B, T, C) tensor"
        )
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"block_forward() must return a torch.Tensor, got {type(out).__name__}")
    return out


# The classic mistakes, rebuilt from the block's own sublayers. Each sublayer (attention with
# ln_1, MLP with ln_2) can be wired in one of these ways; "pre" is the right one.
def _wire(mode, norm, f, x):
    if mode == "pre":
        return x + f(norm(x))
    if mode == "post":
        return norm(x + f(x))  # the 2017 layout: norm after the residual
    if mode == "none":
        return f(norm(x))  # residual forgotten
    if mode == "normed":
        h = norm(x)
        return h + f(h)  # residual taken from the normalised input
    if mode == "twice":
        return norm(x + f(norm(x)))  # pre-LN and post-LN at once
    if mode == "double_norm":
        return x + f(norm(norm(x)))  # the input normalised twice
    return x  # "skip": the sublayer is left out


_MODES = ("pre", "post", "none", "normed", "twice", "double_norm", "skip")
_ONE_WRONG = {  # one sublayer wired wrongly
    "post": "{name} normalises after its residual (post-LN); the norm belongs inside: x + {f}({ln}(x))",
    "none": "{name} has no residual: add its output to x, x + {f}({ln}(x))",
    "normed": "{name} adds its output to {ln}(x) instead of to x itself",
    "twice": "{name} normalises twice, before the sublayer and again after its residual; keep "
    "only the first: x + {f}({ln}(x))",
    "double_norm": "{name} normalises its input twice, {f}({ln}({ln}(x))); once is enough",
    "skip": "{name} is missing: the block runs attention, then the MLP",
}
_BOTH_WRONG = {  # both wired the same wrong way
    "post": "the norm sits after the residual (post-LN, the 2017 layout): normalise each sublayer's input "
    "instead, x + attn(ln_1(x)), then x + mlp(ln_2(x))",
    "none": "there is no residual: add each sublayer's output to its input, x + attn(ln_1(x)), then x + mlp(ln_2(x))",
    "normed": "the residual adds the normalised input (ln_1(x) + attn(ln_1(x))); add each sublayer's output to x",
    "twice": "each sublayer normalises twice, before it and again after the residual; keep only "
    "the first: x + attn(ln_1(x)), then x + mlp(ln_2(x))",
    "double_norm": "each sublayer's input is normalised twice (ln(ln(x))); once is enough",
    "skip": "the block returns x unchanged: apply attention, then the MLP",
}


def _describe(first, second):
    if first == second:
        return _BOTH_WRONG[first]
    parts = [
        _ONE_WRONG[mode].format(name=name, f=f, ln=ln)
        for mode, name, f, ln in (
            (first, "the attention sublayer", "attn", "ln_1"),
            (second, "the MLP sublayer", "mlp", "ln_2"),
        )
        if mode != "pre"
    ]
    return "; ".join(parts)


def _candidates(block):
    """(description, function of x) for each wrong wiring of the block, in a fixed order."""

    def attn(h):
        return block.attn(h)[0]

    def wired(first, second):
        return lambda x: _wire(second, block.ln_2, block.mlp, _wire(first, block.ln_1, attn, x))

    out = [
        (_describe(a, m), wired(a, m))
        for a, m in itertools.product(_MODES, repeat=2)
        if (a, m) != ("pre", "pre")
    ]

    def parallel(x):
        return x + attn(block.ln_1(x)) + block.mlp(block.ln_2(x))

    def swapped_norms(x):
        x = x + attn(block.ln_2(x))
        return x + block.mlp(block.ln_1(x))

    def mlp_first(x):
        x = x + block.mlp(block.ln_2(x))
        return x + attn(block.ln_1(x))

    def same_norm(x):
        x = x + attn(block.ln_1(x))
        return x + block.mlp(block.ln_1(x))

    def mlp_reads_attention(x):
        a = attn(block.ln_1(x))
        return x + a + block.mlp(block.ln_2(a))

    out += [
        (
            "ln_1 is used before the MLP too: each sublayer has its own norm, the MLP reads "
            "ln_2(x)",
            same_norm,
        ),
        (
            "the MLP reads the attention output alone; it must read x after the attention output "
            "has been added, mlp(ln_2(x))",
            mlp_reads_attention,
        ),
        (
            "the MLP reads the block's input x; it must read x after the attention output has been added",
            parallel,
        ),
        (
            "ln_1 and ln_2 are swapped: ln_1 goes before attention, ln_2 before the MLP",
            swapped_norms,
        ),
        ("the MLP runs before attention; attention comes first", mlp_first),
    ]
    return out


def _diagnose(out, block, x):
    """A sentence naming the most likely mistake when the output differs from Block's."""
    with torch.no_grad():
        for description, wrong in _candidates(block):
            if torch.allclose(out, wrong(x), atol=ATOL):
                return description
        expected, _ = block(x)
    return describe_difference(out, expected)


def check_returns_tensor(block_forward):
    _call(block_forward, _block(), _x())
    return "returns one tensor, the new hidden state"


def check_shape(block_forward):
    out = _call(block_forward, _block(), _x((3, 5, 16)))
    if tuple(out.shape) != (3, 5, 16):
        raise CheckFailed(
            f"output has shape {tuple(out.shape)}, expected (3, 5, 16): the same (B, T, C) shape as the input"
        )
    return "(B, T, C) in, (B, T, C) out"


def check_input_unchanged(block_forward):
    x = _x()
    before = x.clone()
    _call(block_forward, _block(), x)
    if not torch.equal(x, before):
        raise CheckFailed(
            "block_forward() changed its input in place (x += ...); write x = x + ... so the caller's x stays as it was"
        )
    return "the input tensor is left untouched"


def check_identity(block_forward):
    block, x = _block(zero_sublayers=True), _x()
    out = _call(block_forward, block, x.clone())
    gap = (out - x).abs().max().item()
    if gap > 1e-6:
        if torch.allclose(out, torch.zeros_like(out), atol=1e-6):
            raise CheckFailed(
                "with both sublayers outputting zero the block returned zeros instead of x: the residual is missing"
            )
        with torch.no_grad():
            normalised = (block.ln_1(x), block.ln_2(x), block.ln_2(block.ln_1(x)))
        if any(torch.allclose(out, n, atol=1e-5) for n in normalised):
            raise CheckFailed(
                "with both sublayers outputting zero the block returned a normalised x instead of x: a norm sits "
                "on the residual path; normalise only what goes into attn and mlp"
            )
        raise CheckFailed(
            f"with both sublayers outputting zero the block should return x unchanged, but its output differs "
            f"from x by up to {gap:.3g}"
        )
    return "with zeroed sublayers the block is exactly the identity"


def check_matches_block(block_forward):
    block, x = _block(seed=2), _x(seed=3)
    pristine = copy.deepcopy(block)  # the reference from the block as it was before the call
    # A copy of x: an update in place is check_input_unchanged's business.
    out = _call(block_forward, block, x.clone())
    with torch.no_grad():
        expected, _ = pristine(x)
    if tuple(out.shape) != tuple(expected.shape) or not torch.allclose(out, expected, atol=ATOL):
        if tuple(out.shape) != tuple(expected.shape):
            raise CheckFailed(
                f"output has shape {tuple(out.shape)}, expected {tuple(expected.shape)}"
            )
        raise CheckFailed(_diagnose(out, pristine, x))
    return f"matches llmlab.model.Block to {ATOL:g}"


def _as_block_forward(block_forward, block):
    """block_forward(block, x) in the shape of Block.forward, which the model calls."""

    def forward(x, kv_cache=None, layer=0):
        return _run(block_forward, block, x), None

    return forward


def check_trained_model(block_forward):
    from llmlab.checkpoint import load_agreement_model

    model = load_agreement_model()
    sentences = agreement.make_sentences(200, seed=4)
    inputs, _ = agreement.to_batch(sentences)
    with torch.no_grad():
        expected = model(inputs)
        mine = copy.deepcopy(model)
        for block in mine.blocks:  # route every block of a copy through the learner's function
            block.forward = _as_block_forward(block_forward, block)
        logits = mine(inputs)
    gap = (logits - expected).abs().max().item()
    if gap > 1e-4:
        accuracy = agreement.agreement_accuracy(mine, sentences)
        raise CheckFailed(
            f"in the shipped model your block changes the logits by up to {gap:.3g} "
            f"and the agreement accuracy to {accuracy:.0%}"
        )
    accuracy = agreement.agreement_accuracy(mine, sentences)
    return f"the shipped model with your block: same logits (max difference {gap:.1e}), {accuracy:.0%} agreement"


# ---- differential: the learner's function against the reference, input by input --------------
def _quiet_block(seed, n_embd, n_head, zero_sublayers=False):
    """_block without touching the caller's global random state."""
    with torch.random.fork_rng(devices=[]):
        return _block(seed, n_embd=n_embd, n_head=n_head, zero_sublayers=zero_sublayers)


def _compare(got, expected, c):
    if not torch.is_tensor(got):
        return Difference("", got, expected, "is not a tensor")
    if got.dtype != c.args[1].dtype:
        return Difference("", got, expected, f"is {got.dtype}, not {c.args[1].dtype}")
    return differs(got, expected, rtol=ATOL, atol=ATOL)


def _named(c, got, expected):
    block, x = c.args
    if not torch.is_tensor(got) or got.shape != x.shape:
        return None
    with torch.no_grad():
        for description, wrong in _candidates(block):
            candidate = wrong(x)
            if not torch.allclose(candidate, expected, atol=ATOL) and torch.allclose(
                got, candidate, atol=ATOL
            ):
                return description
    return None


def _show(c):
    block, x = c.args
    heads = block.attn.n_head if hasattr(block.attn, "n_head") else "?"
    return f"a Block of width {x.size(-1)} with {heads} heads and x of shape {tuple(x.shape)}"


def _generate(draw):
    n_head = draw.choice([1, 2, 4])
    n_embd = n_head * draw.choice([2, 4, 8])
    block = _quiet_block(draw.seed(), n_embd, n_head, zero_sublayers=draw.boolean(0.1))
    x = draw.tensor(draw.integer(1, 3), draw.integer(1, 8), n_embd, scale=draw.choice([1.0, 3.0]))
    return case(block, x)


DIFF = Differential(
    reference("04_residual_block", "block_forward"),
    boundaries=[
        case(_quiet_block(0, 16, 4), _x()).because("x + attn(ln_1(x)), then + mlp(ln_2(x))"),
        case(_quiet_block(1, 16, 4, zero_sublayers=True), _x(seed=2)).because(
            "sublayers that output zero leave x as it is: the residual path is never normalised"
        ),
        case(_quiet_block(3, 8, 2), _x((1, 1, 8), seed=4)).because("one token"),
        case(_quiet_block(5, 8, 1), _x((3, 5, 8), seed=6)).because("one head; a batch of three"),
    ],
    generate=_generate,
    n_generated=50,
    compare=_compare,
    diagnose=_named,
    show_input=_show,
)


CHECKS = [
    ("returns a tensor", check_returns_tensor),
    ("shape", check_shape),
    ("input unchanged", check_input_unchanged),
    ("identity", check_identity),
    ("matches Block", check_matches_block),
    ("trained model", check_trained_model),
    *DIFF.checks(),
]


def check_residual_block(block_forward):
    """Run every check on the learner's block_forward; prints one line per check."""
    return run_checks(CHECKS, block_forward, "block_forward")
