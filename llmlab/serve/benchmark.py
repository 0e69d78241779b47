"""`python -m llmlab.bench serve`: the engine under load, against its alternatives.

    python -m llmlab.bench serve                 # GPT-2-small shape, random weights
    python -m llmlab.bench serve --requests 48 --rate 4
    python -m llmlab.bench serve --small         # a tiny model: a smoke run in seconds

Four comparisons, each on one machine in one run:
1. continuous vs static batching on the same mixed workload (prompts 16-256 tokens, outputs
   8-256, long-tailed): tokens/s, median and P95 latency, median time to first token;
2. one decode step at batch 1, 2, 4, 8, beside its roofline floor (the larger of bytes read /
   read bandwidth and FLOPs / matmul throughput);
3. the paged cache's decode step against the contiguous KVCache's, batch 1, context 512;
4. Hugging Face transformers' GPT2LMHeadModel.generate on padded static batches of the same
   requests (skipped if transformers is not installed: it is a test-only dependency).
"""

import argparse
import random
import statistics
import time

import torch

from llmlab.measure import decode_step_bytes, matmul_flops, read_bandwidth, time_it
from llmlab.serve.engine import Engine
from llmlab.serve.request import Request
from llmlab.serve.sequence import Sequence


def mixed_workload(n, vocab_size, seed=0, prompt=(16, 256), output=(8, 256), rate=None):
    """n requests: prompt lengths uniform in `prompt`, output lengths long-tailed in `output`
    (log-uniform: as many between 8 and 16 as between 128 and 256); Poisson arrivals at `rate`
    per second of engine clock, or all at time 0 when rate is None."""
    rng = random.Random(seed)
    low, high = output
    clock, requests = 0.0, []
    for _ in range(n):
        length = rng.randint(*prompt)
        new = round(low * (high / low) ** rng.random())
        requests.append(
            Request([rng.randrange(vocab_size) for _ in range(length)], new, arrival=clock)
        )
        if rate is not None:
            clock += rng.expovariate(rate)
    return requests


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def serve_figures(results) -> dict:
    latencies = [r.latency for r in results]
    return dict(
        tokens_per_s=results.generated_tokens / results.duration,
        p50_s=percentile(latencies, 0.5),
        p95_s=percentile(latencies, 0.95),
        ttft_p50_s=percentile([r.ttft for r in results], 0.5),
        steps=len(results.steps),
        preemptions=sum(r.preemptions for r in results),
        peak_kv_used=max(s.kv_used_bytes for s in results.steps),
        peak_kv_reserved=max(s.kv_reserved_bytes for s in results.steps),
    )


def paged_decode_step(engine: Engine, batch_size: int, context: int):
    """A function running one decode step for batch_size sequences that each hold `context`
    positions in the engine's paged pool (filled once here; every call recomputes the same step)."""
    vocab = engine.model.config.vocab_size
    gen = torch.Generator().manual_seed(batch_size)
    seqs = []
    for i in range(batch_size):
        tokens = torch.randint(vocab, (context + 1,), generator=gen).tolist()
        seq = Sequence(i, Request(tokens, 1), engine.model.device)
        if not engine.blocks.admit(seq, context + 1):
            raise ValueError(f"the pool cannot hold {batch_size} sequences of {context + 1}")
        seqs.append(seq)
    engine.runner.step([(seq, context) for seq in seqs])  # the prefill

    def step():
        for seq in seqs:
            seq.num_computed = context  # forget the timed token: the step repeats exactly
        return engine.runner.step([(seq, 1) for seq in seqs])

    return step


def roofline_floor_s(model, batch_size, context, bandwidth, flops):
    c = model.config
    nbytes = decode_step_bytes(model, context, batch_size)
    matrix_params = sum(p.nelement() for p in model.parameters() if p.dim() == 2)
    matrix_params -= model.wte.weight.nelement() + model.wpe.weight.nelement()
    attention = 4 * c.n_layer * c.n_embd * (context + 1)  # q.k and weights.v per token
    step_flops = batch_size * (2 * matrix_params + attention)
    return max(nbytes / bandwidth, step_flops / flops), nbytes / bandwidth, step_flops / flops


def hf_generate_tokens_per_s(config, requests, batch_size, seed=0):
    """Tokens/s of transformers' generate on padded static batches, in arrival order."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    hf = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=config.vocab_size,
            n_positions=config.block_size,
            n_embd=config.n_embd,
            n_layer=config.n_layer,
            n_head=config.n_head,
        )
    ).eval()
    useful, started = 0, time.perf_counter()
    for i in range(0, len(requests), batch_size):
        batch = requests[i : i + batch_size]
        width = max(len(r.prompt) for r in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for row, r in enumerate(batch):  # left padding: every row's last token is real
            ids[row, width - len(r.prompt) :] = torch.tensor(r.prompt)
            mask[row, width - len(r.prompt) :] = 1
        new = max(r.max_new_tokens for r in batch)
        with torch.inference_mode():
            hf.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
                pad_token_id=0,
            )
        useful += sum(r.max_new_tokens for r in batch)  # rows past their own length are waste
    return useful / (time.perf_counter() - started)


def main(argv, model, config, device, repeat: int):
    parser = argparse.ArgumentParser(prog="python -m llmlab.bench serve")
    parser.add_argument("--requests", type=int, default=32, help="requests in the workload")
    parser.add_argument(
        "--rate", type=float, default=None, help="Poisson arrivals per second (default: all at 0)"
    )
    parser.add_argument("--batch", type=int, default=8, help="max_batch_size of both policies")
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers comparison")
    parser.add_argument("--small", action="store_true", help="(handled by the caller)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.batch < 1 or (args.rate is not None and args.rate <= 0):
        parser.error("--requests and --batch must be >= 1, --rate > 0")
    small = config.n_embd < 256
    prompt, output = ((4, 32), (2, 32)) if small else ((16, 256), (8, 256))
    requests = mixed_workload(args.requests, config.vocab_size, 0, prompt, output, args.rate)
    print(
        f"workload: {len(requests)} requests, prompts {prompt[0]}-{prompt[1]} tokens, outputs "
        f"{output[0]}-{output[1]} (median {statistics.median(r.max_new_tokens for r in requests)}"
        f", {sum(r.max_new_tokens for r in requests)} in all), arrivals "
        + ("all at 0" if args.rate is None else f"Poisson {args.rate}/s")
    )

    print(f"\n1. continuous vs static batching, max_batch_size {args.batch}, block_size 16")
    print(f"{'policy':>10} {'tok/s':>7} {'p50 s':>7} {'p95 s':>7} {'ttft50 s':>8} {'steps':>6}")
    figures = {}
    # Each policy twice, alternating, keeping its faster run: a burst of load from other
    # programs then hits both alike instead of whichever ran during it.
    for policy in ("continuous", "static", "continuous", "static"):
        engine = Engine(model, max_batch_size=args.batch, policy=policy)
        engine.run(requests[:2])  # warm up allocator and kernels
        f = serve_figures(engine.run(requests))
        if policy in figures and figures[policy]["tokens_per_s"] >= f["tokens_per_s"]:
            continue
        figures[policy] = f
    for policy, f in figures.items():
        print(
            f"{policy:>10} {f['tokens_per_s']:>7.1f} {f['p50_s']:>7.2f} {f['p95_s']:>7.2f} "
            f"{f['ttft_p50_s']:>8.2f} {f['steps']:>6}"
        )
    c, s = figures["continuous"], figures["static"]
    print(
        f"continuous / static: {c['tokens_per_s'] / s['tokens_per_s']:.2f}x tokens/s, "
        f"P95 latency {c['p95_s'] / s['p95_s']:.2f}x"
    )

    context = 128
    bandwidth = read_bandwidth((16 if small else 512) * 2**20, device=device)
    flops = matmul_flops(512 if small else 2048, device=device)
    print(
        f"\n2. one decode step at context {context} (paged engine), beside its roofline floor;"
        f"\n   read bandwidth {bandwidth / 1e9:.1f} GB/s, fp32 matmul {flops / 1e9:.0f} GFLOP/s"
    )
    print(
        f"{'batch':>5} {'step ms':>8} {'tok/s':>7} {'bytes ms':>9} {'flops ms':>9} "
        f"{'floor ms':>9} {'x floor':>8}"
    )
    rates = {}
    for batch_size in (1, 2, 4, 8):
        engine = Engine(model, max_batch_size=batch_size)
        t = time_it(paged_decode_step(engine, batch_size, context), repeat=repeat, device=device)
        floor, by_bytes, by_flops = roofline_floor_s(model, batch_size, context, bandwidth, flops)
        rates[batch_size] = batch_size / t.median_s
        print(
            f"{batch_size:>5} {t.ms:>8.2f} {rates[batch_size]:>7.1f} {by_bytes * 1e3:>9.2f} "
            f"{by_flops * 1e3:>9.2f} {floor * 1e3:>9.2f} {t.median_s / floor:>7.2f}x"
        )
    print(f"batch 8 / batch 1: {rates[8] / rates[1]:.2f}x tokens/s")

    from llmlab.bench import cached_step  # here: llmlab.bench imports this module

    context = min(512, config.block_size - 1)
    engine = Engine(model, max_batch_size=1)
    paged = paged_decode_step(engine, 1, context)
    contiguous = cached_step(model, context)
    paged_t, contiguous_t = [], []
    for _ in range(3):  # interleaved, so a burst of load hits both alike
        paged_t.append(time_it(paged, repeat=repeat, device=device).median_s)
        contiguous_t.append(time_it(contiguous, repeat=repeat, device=device).median_s)
    p, q = min(paged_t), min(contiguous_t)
    print(
        f"\n3. decode step, batch 1, context {context}: paged {p * 1e3:.2f} ms, contiguous KVCache "
        f"{q * 1e3:.2f} ms: {p / q:.2f}x"
    )

    if args.no_hf:
        return
    try:
        import transformers
    except ImportError:
        print("\n4. transformers is not installed (pip install -r requirements-test.txt): skipped")
        return
    hf = hf_generate_tokens_per_s(config, requests, args.batch)
    print(
        f"\n4. transformers {transformers.__version__} GPT2LMHeadModel.generate, padded static "
        f"batches of {args.batch}: {hf:.1f} useful tok/s; llmlab continuous "
        f"{c['tokens_per_s']:.1f}: {c['tokens_per_s'] / hf:.2f}x"
    )
