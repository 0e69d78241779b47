"""Differential checks: the learner's function against the reference solution, input by input.

A gallery of known mistakes only proves the mistakes someone thought of. A differential check
runs the learner's function and the reference in exercises/solutions/ on the same inputs and
reports the first input where they disagree, shrunk to the smallest one found, with both results:

    FAIL  generated inputs: for lengths=[1, 10] and batch_size=2 your padding_waste() returned
          0.55; the answer is 0.45

Three sets of inputs, in this order (one check line each):

1. the task's worked examples;
2. a boundary table, one row per rule the task text states (empty, single, ties, zero, exact
   boundaries, each stated error); a row's `rule` is shown with its counterexample;
3. inputs generated over the whole stated domain from a fixed seed with a bounded budget (no
   Hypothesis: the reader's environment has no test tools), shrunk to the smallest disagreement.

Inputs are the caller's: every call gets deep copies, the reference runs on pristine copies, and
a learner's function that changes an argument (an array's values, a model's weights, dtype or
device) fails with a sentence saying so. Results are compared with tolerances that any correct
float32 answer meets on any CPU (never bit equality); where the reference raises (a stated
error), the learner must raise the same kind of exception.

Generation and shrinking work on the sequence of choices a `Draw` makes (as Hypothesis and
minithesis do): a shrunk input is replayed through the same generator, so it is always inside the
domain the generator states. Shrinking deletes choices and moves each toward its smallest value
(0, False, the first option, the lower bound).
"""

import copy
import importlib.util
import inspect
import math
import numbers
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import torch

from llmlab.checks import CheckFailed, as_number, one_line

SOLUTIONS = Path(__file__).resolve().parents[2] / "exercises" / "solutions"


# ---- the reference --------------------------------------------------------------------------


@cache
def _solution_module(stem: str):
    path = SOLUTIONS / f"{stem}.py"
    if not path.exists():
        raise RuntimeError(
            f"the reference solution {path} is missing: the checks need the course repository "
            "(install llmlab from it with pip install -e .)"
        )
    spec = importlib.util.spec_from_file_location(f"llmlab_reference_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference(stem: str, name: str):
    """The function `name` of exercises/solutions/<stem>.py (loaded once, never the learner's)."""
    return getattr(_solution_module(stem), name)


# ---- inputs ---------------------------------------------------------------------------------


@dataclass
class Case:
    """One call: positional and keyword arguments, and the rule of the task it tests (if any)."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    rule: str | None = None

    def because(self, rule: str) -> "Case":
        """This case as a boundary row: `rule` (the task's words) is shown when it fails."""
        return Case(self.args, self.kwargs, rule)


def case(*args, **kwargs) -> Case:
    """case(lengths, batch_size=4): the call padding_waste(lengths, batch_size=4)."""
    return Case(tuple(args), dict(kwargs))


class _Overrun(Exception):
    """A replayed choice sequence asked for more choices than allowed."""


class Draw:
    """The source of every generated value: random on first run, replayed while shrinking.

    Each method records one or more choices (integers from 0 up); a smaller choice gives a
    simpler value (0, False, the first option, the lower bound, a shorter list).
    """

    MAX_CHOICES = 5000

    def __init__(self, rng: random.Random | None = None, prefix: list[int] | None = None):
        self._rng, self._prefix, self.choices = rng, prefix, []

    def _choose(self, n: int, random_value) -> int:
        """A choice in 0..n: from the prefix when replaying, else random_value()."""
        i = len(self.choices)
        if i >= self.MAX_CHOICES:
            raise _Overrun
        if self._prefix is not None:
            value = min(self._prefix[i], n) if i < len(self._prefix) else 0
        else:
            value = random_value()
        self.choices.append(value)
        return value

    def integer(self, lo: int, hi: int) -> int:
        """An int in lo..hi (bounds included): often a bound, shrinks toward lo."""
        if hi < lo:
            raise ValueError(f"integer({lo}, {hi}): hi must be >= lo")
        n = hi - lo

        def pick():
            r = self._rng.random()
            return 0 if r < 0.1 else n if r < 0.2 else self._rng.randint(0, n)

        return lo + self._choose(n, pick)

    def boolean(self, p: float = 0.5) -> bool:
        """True with probability p; shrinks toward False."""
        return bool(self._choose(1, lambda: int(self._rng.random() < p)))

    def choice(self, options):
        """One of `options`; shrinks toward the first."""
        options = list(options)
        return options[self.integer(0, len(options) - 1)]

    def decimal(self, lo: float, hi: float, places: int = 3) -> float:
        """A number in [lo, hi] with `places` decimals (readable in a message); shrinks toward lo."""
        steps = round((hi - lo) * 10**places)
        return round(lo + self.integer(0, steps) / 10**places, places)

    def real(self, lo: float, hi: float) -> float:
        """A number in [lo, hi] on a fine grid (10^6 steps); shrinks toward lo."""
        return lo + (hi - lo) * self.integer(0, 10**6) / 10**6

    def list(self, element, min_size: int = 0, max_size: int = 10, average: float = 4.0):
        """[element(draw), ...] of min_size..max_size items; shrinks toward fewer, simpler ones."""
        items = [element(self) for _ in range(min_size)]
        p_more = 1 - 1 / (average - min_size + 1) if average > min_size else 0.0
        while len(items) < max_size and self.boolean(p_more):
            items.append(element(self))
        return items

    def seed(self) -> int:
        """A seed for a random generator (values that need not shrink one by one)."""
        return self.integer(0, 2**16 - 1)

    def tensor(self, *shape, dtype=torch.float32, scale: float = 1.0) -> torch.Tensor:
        """Standard normal values times `scale` from a drawn seed; shrinks toward seed 0."""
        g = torch.Generator().manual_seed(self.seed())
        return torch.randn(*shape, generator=g, dtype=torch.float64).mul(scale).to(dtype)


# ---- how values read in a message ----------------------------------------------------------


def _number(x: float, digits: int = 4, exact: bool = False) -> str:
    """An int as itself; a float to `digits` significant digits, or (exact) in the fewest digits
    that give back the same float (1e+12, not 1000000000000.0)."""
    if isinstance(x, int):
        return str(x)
    if exact:
        for d in range(1, 18):
            text = f"{x:.{d}g}"
            if float(text) == x:
                return text + (".0" if text.lstrip("-").isdigit() else "")
        return repr(x)
    if x.is_integer() and abs(x) < 1e6:
        return f"{x:.1f}"
    return f"{x:.{digits}g}"


def show(value, limit: int = 12, exact: bool = False) -> str:
    """A value as a learner reads it: numbers to 4 significant digits (exact: every digit that
    matters, as inputs are shown), tensors by shape."""
    if value is None or isinstance(value, (bool, str)):
        return repr(value)
    if isinstance(value, torch.Tensor):
        kind = str(value.dtype).replace("torch.", "")
        if value.numel() <= 6:
            flat = value.detach().cpu().flatten().tolist()
            if value.dtype in (torch.float32, torch.float16, torch.bfloat16):
                # float32 numbers in float32's own shortest form: -2.54, not -2.5399999618530273
                values = ", ".join(str(np.float32(v)) if exact else _number(v) for v in flat)
            else:
                values = ", ".join(_number(v, exact=exact) for v in flat)
            return f"a {kind} tensor of shape {tuple(value.shape)} [{values}]"
        return f"a {kind} tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        if value.size <= 6:
            return f"array({show(value.tolist(), exact=exact)}, dtype={value.dtype})"
        return f"a {value.dtype} array of shape {value.shape}"
    if isinstance(value, torch.nn.Module):
        return f"a {type(value).__name__}"
    number = as_number(value) if not isinstance(value, (list, tuple, dict)) else None
    if number is not None:
        return _number(value if isinstance(value, int) else number, exact=exact)
    if isinstance(value, dict):
        items = [f"{k!r}: {show(v, limit, exact)}" for k, v in list(value.items())[:limit]]
        return "{" + ", ".join(items) + (", ..." if len(value) > limit else "") + "}"
    if isinstance(value, (list, tuple)):
        items = [show(v, limit, exact) for v in list(value)[:limit]]
        more = f", ... ({len(value)} items)" if len(value) > limit else ""
        text = ", ".join(items) + more
        return (
            f"[{text}]" if isinstance(value, list) else f"({text}{',' if len(value) == 1 else ''})"
        )
    return repr(value)


def _pair(got, expected) -> tuple[str, str]:
    """Two numbers shown with enough digits to look different (ints as they are)."""
    if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (got, expected)):
        return str(int(got)), str(int(expected))
    a, b = as_number(got), as_number(expected)
    if a is None or b is None or a == b:
        return show(got), show(expected)
    for digits in range(4, 18):
        x, y = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if x != y:
            return x, y
    return show(got), show(expected)


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def bind(function, c: Case) -> dict:
    """The case's arguments by parameter name (as the reference names them)."""
    try:
        bound = inspect.signature(function).bind(*c.args, **c.kwargs)
        return dict(bound.arguments)
    except (TypeError, ValueError):
        return {f"argument {i + 1}": a for i, a in enumerate(c.args)} | c.kwargs


# ---- comparing results -----------------------------------------------------------------------


@dataclass
class Difference:
    """Where a result differs: `where` ("" for the whole result, "['ttft_p50']", "[1][0, 2]")."""

    where: str
    got: object
    expected: object
    note: str = ""  # what is off when it is not a value ("has shape (2, 3)")


def _tensor_like(x):
    return isinstance(x, (torch.Tensor, np.ndarray))


def _as_tensor(x) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    return x.detach().cpu()


def default_tolerance(got_dtype=None) -> dict:
    """Tolerances that a right answer computed in float32 meets on any CPU."""
    if got_dtype in (torch.float64, np.float64):
        return {"rtol": 1e-9, "atol": 1e-9}
    return {"rtol": 2e-5, "atol": 2e-5}


def differs(got, expected, rtol=None, atol=None, where: str = "") -> Difference | None:
    """None when `got` is `expected` within tolerance, else the first Difference.

    Numbers of any type (int, float, NumPy scalar, one-element tensor) compare as numbers; lists
    and tuples compare item by item (a list may stand for a tuple); dicts by key; tensors and
    arrays by shape, then value (NaN equals NaN), within rtol/atol (default: float32-safe, or
    float64's when `got` is float64).
    """
    if expected is None or isinstance(expected, (bool, str)):
        return (
            None
            if (got is expected or (type(got) is type(expected) and got == expected))
            else (Difference(where, got, expected))
        )
    if _tensor_like(expected):
        if not _tensor_like(got):
            return Difference(where, got, expected, f"is {show(got)}, not a tensor")
        g, e = _as_tensor(got), _as_tensor(expected)
        if tuple(g.shape) != tuple(e.shape):
            return Difference(where, got, expected, f"has shape {tuple(g.shape)}")
        if g.is_complex() or e.is_complex() or g.dtype == torch.bool or e.dtype == torch.bool:
            return None if torch.equal(g, e) else Difference(where, got, expected)
        tol = default_tolerance(g.dtype)
        tol = {"rtol": rtol if rtol is not None else tol["rtol"],
               "atol": atol if atol is not None else tol["atol"]}  # fmt: skip
        g64, e64 = g.double(), e.double()
        ok = torch.isclose(g64, e64, equal_nan=True, **tol)
        if bool(ok.all()):
            return None
        error = torch.where(ok, torch.zeros_like(g64), (g64 - e64).abs().nan_to_num(math.inf))
        index = tuple(int(i) for i in torch.unravel_index(error.argmax(), error.shape))
        label = f"[{', '.join(map(str, index))}]" if index else ""
        return Difference(where + label, g64[index].item(), e64[index].item())
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return Difference(where, got, expected, f"is {show(got)}, not a dict")
        if set(got) != set(expected):
            return Difference(where, got, expected, f"has the keys {sorted(got, key=str)}")
        for key in expected:
            found = differs(got[key], expected[key], rtol, atol, f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            return Difference(where, got, expected)
        for i, (g, e) in enumerate(zip(got, expected)):
            found = differs(g, e, rtol, atol, f"{where}[{i}]")
            if found:
                return found
        return None
    e = as_number(expected)
    if e is not None:
        g = as_number(got) if not isinstance(got, (list, tuple, dict)) else None
        if g is None:
            return Difference(where, got, expected)
        tol = default_tolerance(getattr(got, "dtype", None))
        r = rtol if rtol is not None else tol["rtol"]
        a = atol if atol is not None else tol["atol"]
        same = (math.isnan(g) and math.isnan(e)) or math.isclose(g, e, rel_tol=r, abs_tol=a)
        return None if same else Difference(where, got, expected)
    return None if got == expected else Difference(where, got, expected)


# ---- inputs that must stay as they were ------------------------------------------------------


def _permutation(before, after, depth) -> bool:
    """Whether `after` holds the items of `before` in another order (a sort in place)."""
    if len(before) > 200:
        return False
    left = list(after)
    for b in before:
        match = next((i for i, a in enumerate(left) if changed(b, a, "", depth + 1) is None), None)
        if match is None:
            return False
        left.pop(match)
    return True


def changed(before, after, label: str = "the input", depth: int = 0) -> str | None:
    """How `after` (what the learner's function was given) differs from `before`, as a phrase
    about `label` ("lengths[0] changed from 2 to 1"), or None when it is unchanged."""
    if depth > 6:
        return None
    if isinstance(before, torch.nn.Module):
        b, a = before.state_dict(), after.state_dict()
        for name, tensor in b.items():
            other = a.get(name)
            if other is None:
                return f"{label} lost its {name}"
            if other.dtype != tensor.dtype:
                return f"{label}'s {name} is now {other.dtype} (it was {tensor.dtype})"
            if other.device != tensor.device:
                return f"{label}'s {name} moved to {other.device} (it was on {tensor.device})"
            if other.shape != tensor.shape or not torch.equal(other, tensor):
                return f"{label}'s weights changed ({name})"
        return None
    if isinstance(before, torch.Tensor):
        if not isinstance(after, torch.Tensor):
            return f"{label} is no longer a tensor"
        if after.dtype != before.dtype:
            return f"{label}'s dtype changed from {before.dtype} to {after.dtype}"
        if after.device != before.device:
            return f"{label} moved from {before.device} to {after.device}"
        if after.shape != before.shape:
            return f"{label}'s shape changed from {tuple(before.shape)} to {tuple(after.shape)}"
        if before.is_floating_point():
            same = torch.equal(before.isnan(), after.isnan()) and torch.equal(
                before.nan_to_num(0.0), after.nan_to_num(0.0)
            )
        else:
            same = torch.equal(before, after)
        return None if same else f"{label}'s values changed"
    if isinstance(before, np.ndarray):
        if not isinstance(after, np.ndarray):
            return f"{label} is no longer an array"
        if after.dtype != before.dtype or after.shape != before.shape:
            return f"{label} became a {after.dtype} array of shape {after.shape}"
        same = np.array_equal(before, after, equal_nan=before.dtype.kind in "fc")
        return None if same else f"{label}'s values changed"
    if isinstance(before, dict):
        if not isinstance(after, dict) or set(before) != set(after):
            return f"{label}'s keys changed"
        for key in before:
            found = changed(before[key], after[key], f"{label}[{key!r}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(before, (list, tuple)):
        if type(after) is not type(before) or len(after) != len(before):
            return f"{label} went from {len(before)} to {len(after)} items"
        for i, (b, a) in enumerate(zip(before, after)):
            found = changed(b, a, f"{label}[{i}]", depth + 1)
            if found:
                return f"{label} was reordered" if _permutation(before, after, depth) else found
        return None
    if hasattr(before, "__dict__") and not isinstance(before, type):
        if not hasattr(after, "__dict__"):
            return f"{label} was replaced"
        return changed(vars(before), vars(after), label, depth + 1)
    try:
        same = bool(before == after)
    except Exception:
        return None
    return None if same else f"{label} changed from {show(before)} to {show(after)}"


# ---- the check -------------------------------------------------------------------------------


@contextmanager
def _one_thread():
    """Torch on one thread while a check runs: its tensors are tiny, and with another program on
    a core, idle OpenMP threads that spin waiting for each other made a check 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Stop(Exception):
    """The time or call budget ran out while shrinking."""


class Differential:
    """The learner's function against `reference`, on examples, a boundary table and generated
    inputs. Each `check_*` method is a check for run_checks: it returns a short description or
    raises CheckFailed with the (smallest) input where the two disagree and both results.

    reference: the right function (use `reference(stem, name)`: the file in exercises/solutions).
    examples, boundaries: lists of Case (boundary rows carry their rule: case(...).because(...)).
    generate: draw -> Case, the stated domain; n_generated cases from `seed` are tried.
    compare: (got, expected, case) -> Difference | None; default `differs` with rtol/atol. A
        compare with a fourth parameter also gets the learner's function, to probe it further
        (say, whether an answer that follows another accepted convention does so consistently).
    diagnose: (case, got, expected) -> a sentence naming the mistake, or None (second layer);
        a diagnose with a fourth parameter also gets the learner's function.
    explain_crash: (function, case, error) -> why the learner's `function` crashed, or None
        (it may retry `function` on simpler inputs).
    show_input: case -> "lengths=[1, 10] and batch_size=2" (default: name=value per argument).
    same_error: (raised, expected) -> bool, whether the learner raised the right exception
        (default: an instance of the reference's exception type).
    name: the function's name in messages (default: the reference's __name__).
    time_limit: a safety cap, in CPU seconds (a busy machine does not shorten the search), on the
        generated inputs and again on shrinking; n_generated and max_shrink_calls set the budget.
    """

    def __init__(
        self,
        reference,
        *,
        examples=(),
        boundaries=(),
        generate=None,
        n_generated: int = 100,
        seed: int = 0,
        compare=None,
        rtol: float | None = None,
        atol: float | None = None,
        diagnose=None,
        explain_crash=None,
        show_input=None,
        same_error=None,
        name: str | None = None,
        max_shrink_calls: int = 300,
        time_limit: float = 2.0,
    ):
        self.reference = reference
        self.examples, self.boundaries = list(examples), list(boundaries)
        self.generate, self.n_generated, self.seed = generate, n_generated, seed
        self.compare = compare or (lambda got, expected, c: differs(got, expected, rtol, atol))
        self._compare_gets_function = len(inspect.signature(self.compare).parameters) >= 4
        self._diagnose_gets_function = bool(diagnose) and (
            len(inspect.signature(diagnose).parameters) >= 4
        )
        self.diagnose, self.show_input, self.same_error = diagnose, show_input, same_error
        self.explain_crash = explain_crash
        self.name = name or getattr(reference, "__name__", "function")
        self.max_shrink_calls, self.time_limit = max_shrink_calls, time_limit

    # -- one case --

    def inputs(self, c: Case) -> str:
        if self.show_input:
            return self.show_input(c)
        parts = [f"{k}={show(v, exact=True)}" for k, v in bind(self.reference, c).items()]
        return _and(parts) if parts else "no arguments"

    def _expected(self, c: Case):
        """(True, value) or (False, exception) from the reference on pristine copies."""
        args, kwargs = copy.deepcopy((c.args, c.kwargs))
        try:
            return True, self.reference(*args, **kwargs)
        except Exception as error:  # a stated error: the learner must raise it too
            return False, error

    def disagreement(self, function, c: Case) -> str | None:
        """None when `function` agrees with the reference on `c`, else the sentence to show.

        NotImplementedError from the learner propagates (the stub: TODO).
        """
        ok, expected = self._expected(c)
        pristine = (c.args, c.kwargs)  # the case's own values: only copies are ever passed
        args, kwargs = copy.deepcopy((c.args, c.kwargs))
        where = f"for {self.inputs(c)}" + (f" ({c.rule})" if c.rule else "")
        you = f"your {self.name}()"
        try:
            got = function(*args, **kwargs)
        except NotImplementedError:
            raise
        except Exception as error:
            raised = f"{type(error).__name__} ({one_line(error, 100)})"
            if not ok:
                same = (self.same_error or (lambda e, x: isinstance(e, type(x))))(error, expected)
                if same:
                    return None
                return (
                    f"{where} {you} raised {raised}; it should raise {type(expected).__name__} "
                    f"({one_line(expected, 100)})"
                )
            message = f"{where} {you} raised {raised}; the answer is {show(expected)}"
            hint = self.explain_crash(function, c, error) if self.explain_crash else None
            return f"{message}; {hint}" if hint else message
        for name, before in bind(self.reference, Case(*pristine)).items():
            after = bind(self.reference, Case(args, kwargs)).get(name)
            what = changed(before, after, name)
            if what:
                return (
                    f"{where} {you} changed its argument {name} ({what}); the caller's data must "
                    "stay as it was: work on a copy"
                )
        if not ok:
            return (
                f"{where} {you} returned {show(got)}; it should raise "
                f"{type(expected).__name__} ({one_line(expected, 100)})"
            )
        try:
            if self._compare_gets_function:
                difference = self.compare(got, expected, c, function)
            else:
                difference = self.compare(got, expected, c)
        except Exception as error:  # the comparison itself must never blame the learner
            difference = Difference("", got, expected, f"cannot be compared ({one_line(error)})")
        if difference is None:
            return None
        message = f"{where} {you} returned " + self._describe(difference)
        if self._diagnose_gets_function:
            named = self.diagnose(c, got, expected, function)
        else:
            named = self.diagnose(c, got, expected) if self.diagnose else None
        return f"{message}; {named}" if named else message

    @staticmethod
    def _describe(d: Difference) -> str:
        where = d.where
        if where.startswith("['") and where.endswith("']") and where.count("[") == 1:
            where = where[2:-2]  # a top-level key reads as its name: ttft_p50 = 0.25
        label = f"{where} " if where else ""
        if d.note:
            whose = f"a result whose {where}" if where else "a result that"
            return f"{whose} {d.note}; the answer is {show(d.expected)}"
        got, expected = _pair(d.got, d.expected)
        return f"{label}{'= ' if label else ''}{got}; the answer is {expected}"

    # -- the three sets --

    def _first(self, function, cases):
        with _one_thread():
            for c in cases:
                message = self.disagreement(function, c)
                if message:
                    raise CheckFailed(message)

    def check_examples(self, function) -> str:
        self._first(function, self.examples)
        n = len(self.examples)
        return f"agrees with the reference on the task's {n} worked example{'s' * (n != 1)}"

    def check_boundaries(self, function) -> str:
        self._first(function, self.boundaries)
        return f"agrees with the reference on {len(self.boundaries)} boundary cases, one per rule"

    def _replay(self, function, prefix):
        draw = Draw(prefix=prefix)
        c = self.generate(draw)
        return draw.choices, c, self.disagreement(function, c)

    def check_generated(self, function) -> str:
        with _one_thread():
            return self._generated(function)

    def _generated(self, function) -> str:
        rng = random.Random(self.seed)
        start = time.process_time()
        for i in range(self.n_generated):
            draw = Draw(rng=rng)
            c = self.generate(draw)
            message = self.disagreement(function, c)
            if message:
                raise CheckFailed(self._shrink(function, draw.choices, message))
            if time.process_time() - start > self.time_limit:
                return f"agrees with the reference on {i + 1} generated inputs (seed {self.seed})"
        return (
            f"agrees with the reference on {self.n_generated} generated inputs (seed {self.seed})"
        )

    def _shrink(self, function, choices, message) -> str:
        """The message of the smallest failing choice sequence found within the budget."""
        best, best_message = list(choices), message
        seen = {tuple(best)}
        calls, deadline = [0], time.process_time() + self.time_limit

        def attempt(candidate) -> bool:
            nonlocal best, best_message
            if tuple(candidate) in seen:
                return False
            seen.add(tuple(candidate))
            if calls[0] >= self.max_shrink_calls or time.process_time() > deadline:
                raise _Stop
            calls[0] += 1
            try:
                used, _, found = self._replay(function, candidate)
            except NotImplementedError:
                raise
            except _Overrun:
                return False
            if found and (len(used), used) < (len(best), best):
                best, best_message = used, found
                return True
            return False

        try:
            improved = True
            while improved:
                improved = False
                for k in (8, 4, 2, 1):  # delete k choices (list items, flags)
                    i = len(best) - k
                    while i >= 0:
                        if attempt(best[:i] + best[i + k :]):
                            improved = True
                        i -= 1
                for k in (8, 4, 2, 1):  # zero k choices at once
                    for i in range(len(best) - k, -1, -1):
                        if any(best[i : i + k]) and attempt(best[:i] + [0] * k + best[i + k :]):
                            improved = True
                for i in range(len(best)):  # each choice as small as it can be
                    if i >= len(best) or best[i] == 0:
                        continue
                    lo, hi = 0, best[i]
                    if attempt(best[:i] + [0] + best[i + 1 :]):
                        improved = True
                        continue
                    while lo + 1 < hi and i < len(best):
                        mid = (lo + hi) // 2
                        if attempt(best[:i] + [mid] + best[i + 1 :]):
                            hi, improved = mid, True
                        else:
                            lo = mid
        except _Stop:
            pass
        return best_message

    def checks(self, pick=lambda solution: solution, prefix: str = "") -> list:
        """[(name, check)] for run_checks; `pick` gets this function from what run_checks passes."""
        found = []
        if self.examples:
            found.append((f"{prefix}worked examples", lambda s: self.check_examples(pick(s))))
        if self.boundaries:
            found.append((f"{prefix}boundary cases", lambda s: self.check_boundaries(pick(s))))
        if self.generate:
            found.append((f"{prefix}generated inputs", lambda s: self.check_generated(pick(s))))
        return found
