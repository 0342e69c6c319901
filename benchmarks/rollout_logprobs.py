"""Peak memory and time of caching rollouts with their sampling log-probs.

`tokencredit.sampling.sample` records each token's log-prob with a logits processor that keeps one
[rows, vocab] tensor; generate's `output_scores` (what the cache used before) keeps one per step,
rows x steps x vocab floats. Both sample the same prompts with the same seed and model in one run;
the log-probs they give are compared too. Peak memory is the tensor memory a call adds above what
was live before it (harness.peak_bytes); time is the median of --repeats calls.

    python benchmarks/rollout_logprobs.py --shape tiny
"""

from __future__ import annotations

import argparse

import torch

import harness
from tokencredit.batching import encode_prompts
from tokencredit.dataset import load_images, load_split
from tokencredit.models import vision_token_ids
from tokencredit.sampling import sample


def with_output_scores(model, processor, questions, images, n: int, temperature: float, max_new_tokens: int) -> torch.Tensor:
    """[rows, steps] log-probs of the sampled tokens, read from generate's per-step scores."""
    inputs = encode_prompts(processor, questions, images).to(model.device)
    out = model.generate(
        **inputs, max_new_tokens=max_new_tokens, num_return_sequences=n, do_sample=True, temperature=temperature, top_k=0,
        top_p=1.0, pad_token_id=processor.tokenizer.pad_token_id, suppress_tokens=vision_token_ids(model),
        output_scores=True, return_dict_in_generate=True,
    )  # fmt: skip
    tokens = out.sequences[:, inputs["input_ids"].shape[1] :]
    return torch.stack([torch.log_softmax(s.float(), -1).gather(-1, tokens[:, t, None]).squeeze(-1) for t, s in enumerate(out.scores)], 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    args = harness.parse_args(p)
    with harness.world(args.shape) as w:
        model, processor = w.new_policy()
        load = w.workload
        prompts = load_split(w.data_dir, "train").head(load.prompts)
        questions, images = list(prompts["question"]), load_images(prompts, w.data_dir)
        shape = (load.generations, 1.0, load.completion_length)

        def recorder():
            torch.manual_seed(0)
            return sample(model, processor, questions, images, *shape)

        def scores():
            torch.manual_seed(0)
            return with_output_scores(model, processor, questions, images, *shape)

        recorder()  # warm-up
        samples = recorder()
        reference = scores()
        gap = max(
            (abs(a - b) for s, row in zip(samples, reference.tolist()) for a, b in zip(s["sampling_logp"], row)), default=0.0
        )  # the same tokens, so the same log-probs up to float noise
        tokens = sum(len(s["token_ids"]) for s in samples)
        rows = []
        for name, fn in (("output_scores (before)", scores), ("SampledLogProbs (now)", recorder)):
            peak, _ = harness.peak_bytes(fn)
            rows.append([name, peak / 2**20, harness.median_seconds(fn, args.repeats)])
    base_peak, base_time = rows[0][1], rows[0][2]
    body = harness.table(
        ["sampling log-probs from", "peak extra MiB", "vs before", "time s", "vs before"],
        [[name, peak, f"{peak / base_peak:.3f}", took, f"{took / base_time:.2f}"] for name, peak, took in rows],
    )
    settings = (
        f"{load.prompts} prompts x {load.generations} samples, up to {load.completion_length} new tokens ({tokens} generated), "
        f"vocabulary {model.config.get_text_config().vocab_size}, {load.image_size}x{load.image_size} images; largest log-prob "
        f"difference between the two {gap:.2e}; times are medians of {args.repeats} calls. CPU peaks: torch tensor memory "
        "from the profiler."
    )
    harness.report("rollout_logprobs", args.shape, settings, body, record=not args.no_record)


if __name__ == "__main__":
    main()
