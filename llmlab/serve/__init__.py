"""llmlab.serve: a small serving engine over TinyGPT.

A paged KV cache (PagedKVPool, BlockManager), continuous or static batching (Scheduler), chunked
prefill and prefix caching, and an engine loop with a clock that advances by measured compute time.
One file per idea, in the order a request meets them: request -> sequence -> scheduler (with the
block_manager) -> runner (with the paged_cache) -> engine.
"""

from llmlab.serve.engine import POLICIES, Engine, TokenEvent
from llmlab.serve.request import Request, Result, Results, StepStats

__all__ = ["POLICIES", "Engine", "Request", "Result", "Results", "StepStats", "TokenEvent"]
