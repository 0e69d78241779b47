"""Self-checks for the exercises in exercises/.

Each exercise module (ex01_attention.py, ...) defines a list of checks. A check is a function
that takes the learner's code and raises CheckFailed("one sentence saying what is wrong") or
returns a short description of what it verified. run_checks runs them all and prints one line per
check, starting with PASS, FAIL or TODO:

    PASS  output shape: (2, 5, 8) as expected
    FAIL  rows sum to 1: row sums range from 0.41 to 2.37; apply softmax over the keys (last dim)
    TODO  not solved yet: attention() still raises NotImplementedError

TODO means the stub has not been replaced yet; CI runs every exercise as shipped and requires
all TODO, and with its solution in place and requires all PASS (see tests/test_exercises.py).
"""

from dataclasses import dataclass

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
                    f"not solved yet: {function_name}() still raises NotImplementedError",
                )
            )
        except CheckFailed as failure:
            results.append(Result(FAIL, name, str(failure)))
        except Exception as error:  # the learner's code crashed: say how, in one line
            results.append(
                Result(FAIL, name, f"{function_name}() raised {type(error).__name__}: {error}")
            )
    report = Report(tuple(results))
    print(report)
    if report.solved:
        print(f"All {len(results)} checks pass.")
    return report
