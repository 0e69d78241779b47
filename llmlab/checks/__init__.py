"""Self-checks for the exercises in exercises/.

Each exercise module (ex01_attention.py, ...) defines a list of checks. A check is a function
that takes the learner's code and raises CheckFailed("one sentence saying what is wrong") or
returns a short description of what it verified. run_checks runs them all and prints one line per
check, starting with PASS, FAIL or TODO:

    PASS  output shape: (2, 5, 8) as expected
    FAIL  values: the scores are divided by sqrt(d_v) = sqrt(v.size(-1)); divide by sqrt(d_k)
    TODO  not solved yet: attention() raises NotImplementedError

TODO means the stub has not been replaced yet; CI runs every exercise as shipped and requires
all TODO, and with its solution in place and requires all PASS (see tests/test_exercises.py).

A wrong value is explained by a diagnosis table before any generic message: the check rebuilds
the known mistakes (`diagnose`) and names the one the learner's output matches; only when none
matches does it fall back to `describe_difference` ("differs by up to X at ...").
"""

import numbers
from dataclasses import dataclass

import torch

PASS, FAIL, TODO = "PASS", "FAIL", "TODO"


class CheckFailed(Exception):
    """Raised by a check with a one-sentence message for the learner."""


@dataclass(frozen=True)
class Result:
    status: str  # PASS, FAIL or TODO
    name: str
    message: str

    def __str__(self):
        return f"{self.status}  {self.name}: {self.message}"


@dataclass(frozen=True)
class Report:
    results: tuple[Result, ...]

    @property
    def solved(self) -> bool:
        return bool(self.results) and all(r.status == PASS for r in self.results)

    def __str__(self):
        return "\n".join(str(r) for r in self.results)


def as_number(v):
    """v as a float if it is one number (a float, int, NumPy scalar or one-element tensor), else
    None: a learner's right value is never blamed on its type."""
    if isinstance(v, bool):
        return None
    if isinstance(v, numbers.Real):
        return float(v)
    size = v.numel() if hasattr(v, "numel") else getattr(v, "size", None)
    if size == 1 and hasattr(v, "item"):
        return float(v.item())
    return None


def one_line(error: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, cut to `limit` characters."""
    text = (str(error).strip().splitlines() or [""])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def crashed(function_name: str, error: BaseException, hint: str | None = None) -> CheckFailed:
    """A CheckFailed for learner code that raised: the likely cause first, the raw error after."""
    raw = f"{function_name}() raised {type(error).__name__} ({one_line(error, 100)})"
    return CheckFailed(f"{hint}; {raw}" if hint else raw)


def run_checks(checks, solution, function_name: str) -> Report:
    """Run each (name, check) on the learner's `solution`; print and return the Report."""
    results = []
    for name, check in checks:
        try:
            message = check(solution)
            results.append(Result(PASS, name, message))
        except NotImplementedError:
            results.append(
                Result(
                    TODO,
                    name,
                    f"not solved yet: {function_name}() raises NotImplementedError",
                )
            )
        except CheckFailed as failure:
            results.append(Result(FAIL, name, " ".join(str(failure).split())))
        except Exception as error:  # the learner's code crashed: say how, in one line
            results.append(Result(FAIL, name, str(crashed(function_name, error))))
    report = Report(tuple(results))
    print(report)
    if report.solved:
        print(f"All {len(results)} checks pass.")
    return report


def tolerance(dtype: torch.dtype) -> dict:
    """allclose tolerances that a correct answer computed in `dtype` always meets.

    float32 carries about 7 significant digits, so a correct float32 answer can differ from a
    float64 reference by ~1e-6 on values of order 1; every known mistake differs by far more.
    """
    if dtype == torch.float64:
        return {"atol": 1e-9, "rtol": 1e-9}
    return {"atol": 2e-5, "rtol": 2e-5}


def close(got: torch.Tensor, expected: torch.Tensor, **tol) -> bool:
    """got matches expected in shape and, within the tolerance for got's dtype, in value."""
    if tuple(got.shape) != tuple(expected.shape):
        return False
    tol = tol or tolerance(got.dtype)
    return torch.allclose(got.detach().double(), expected.detach().double(), **tol)


def diagnose(got: torch.Tensor, mistakes, **tol) -> str | None:
    """The message of the first (message, expected) pair whose expected output `got` matches.

    `expected` may be a tensor or a function that makes one (called only when needed). NaN
    matches NaN, so a mistake that makes NaN (a query with every key masked) can be named too.
    """
    tol = tol or tolerance(got.dtype)
    for message, expected in mistakes:
        if callable(expected):
            expected = expected()
        if tuple(got.shape) == tuple(expected.shape) and torch.allclose(
            got.detach().double(), expected.detach().double(), equal_nan=True, **tol
        ):
            return message
    return None


def describe_difference(got: torch.Tensor, expected: torch.Tensor, what: str = "output") -> str:
    """The generic last resort: where and by how much `got` is off (NaN and inf named as such)."""
    got, expected = got.detach().double(), expected.detach().double()
    verb = "differ" if what.endswith("s") else "differs"  # "weights differ", "output differs"
    has = "contain" if what.endswith("s") else "contains"
    bad = ~torch.isfinite(got)
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        kind = "NaN" if got.isnan().any() else "inf"
        return (
            f"{what} {has} {kind} ({int(bad.sum())} of {got.numel()} entries, the first at index "
            f"{index}): a division by zero, an exp that overflowed, or a row of only -inf"
        )
    error = (got - expected).abs()
    index = tuple(int(i) for i in torch.unravel_index(error.argmax(), error.shape))
    return (
        f"{what} {verb} from the expected value by up to {error.max().item():.3g} (at index {index}: "
        f"got {got[index].item():.4g}, expected {expected[index].item():.4g})"
    )
