import torch

from tokencredit.rollout_batch import merge_rows, mixed_groups

PAD = 0


def batch(prompt_lens, completion_lens, patches_per_image, offset):
    """A TRL-style generation batch: left-padded prompts, right-padded completions, flat pixel rows."""
    n = len(prompt_lens)
    p_width, c_width = max(prompt_lens), max(completion_lens)
    prompt_ids = torch.zeros(n, p_width, dtype=torch.long)
    completion_ids = torch.zeros(n, c_width, dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompt_lens, completion_lens)):
        prompt_ids[i, p_width - p :] = offset + 10 * i + 1
        completion_ids[i, :c] = offset + 10 * i + 2
    pixel_values = torch.cat([torch.full((patches_per_image, 3), float(offset + i)) for i in range(n)])
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": (prompt_ids != PAD).long(),
        "completion_ids": completion_ids,
        "completion_mask": (completion_ids != PAD).long(),
        "mm_token_type_ids": torch.cat([(prompt_ids != PAD).long(), torch.zeros_like(completion_ids)], dim=1),
        "advantages": torch.arange(n, dtype=torch.float) + offset,
        "pixel_values": pixel_values,
        "image_grid_thw": torch.tensor([[1, 2, patches_per_image // 2]] * n),
        "num_images": [1] * n,
        "num_items_in_batch": torch.tensor(sum(completion_lens)),
    }


def test_merge_rows_repads_and_keeps_each_row_intact():
    a = batch([2, 3], [4, 1], patches_per_image=4, offset=100)
    b = batch([5, 1, 2], [2, 6, 3], patches_per_image=4, offset=200)
    out = merge_rows([a, b], [[1], [0, 2]], pad_token_id=PAD)
    assert out["prompt_ids"].shape == (3, 5) and out["completion_ids"].shape == (3, 6)
    # row 0 = a[1]: prompt of 3 tokens left-padded, completion of 1 token right-padded
    assert out["prompt_ids"][0].tolist() == [0, 0, 111, 111, 111]
    assert out["completion_ids"][0].tolist() == [112, 0, 0, 0, 0, 0]
    assert out["prompt_ids"][2].tolist() == [0, 0, 0, 221, 221]
    assert out["completion_mask"].sum().item() == 1 + 2 + 3 == out["num_items_in_batch"].item()
    assert out["advantages"].tolist() == [101.0, 200.0, 202.0]
    assert out["pixel_values"][:, 0].tolist() == [101.0] * 4 + [200.0] * 4 + [202.0] * 4
    assert out["image_grid_thw"].shape == (3, 3) and out["num_images"] == [1, 1, 1]
    assert out["mm_token_type_ids"].shape == (3, 11)
    assert out["mm_token_type_ids"][0, :5].tolist() == [0, 0, 1, 1, 1]


def test_mixed_groups_are_decided_from_rewards_with_a_tolerance():
    rewards = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    assert mixed_groups(rewards, 2).tolist() == [False, False, True, False]
    assert mixed_groups(rewards, 4).tolist() == [False, True]
    # weighted rewards with float noise are equal; NaN (unscored) rows are left out
    noisy = torch.tensor([0.9, 0.9 + 1e-7, 0.9, 0.9 - 1e-7, 0.1, torch.nan, 0.1, 0.1, 0.1, torch.nan, 1.0, torch.nan])
    assert mixed_groups(noisy, 4).tolist() == [False, False, True]
    assert mixed_groups(torch.full((4,), torch.nan), 4).tolist() == [False]
