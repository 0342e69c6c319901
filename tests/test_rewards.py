import pytest

from tokencredit.rewards import final_answer, format_reward, overlong_penalty


@pytest.mark.parametrize(
    "text, answer_format, expected",
    [
        ("<think>red red. red 2</think><answer>2</answer>", "tags", "2"),
        ("<answer>1</answer> then <answer> 3 </answer>", "tags", "3"),  # no </think>: the last tag anywhere
        ("so the answer is \\boxed{\\frac{1}{2}}.", "boxed", "\\frac{1}{2}"),  # nested braces
        ("\\boxed{1} and \\boxed{4}", "boxed", "4"),
        # the defect of issue 23: a tag inside the thinking no longer beats the boxed answer after it
        ("<think>maybe <answer>3</answer> no</think> \\boxed{5}", "boxed", "5"),
        ("<think>maybe <answer>3</answer> no</think> \\boxed{5}", "tags", None),
        # a marker of the other format is never read
        ("<think>t</think><answer>5</answer> \\boxed{4}", "tags", "5"),
        ("<think>t</think><answer>5</answer> \\boxed{4}", "boxed", "4"),
        ("<think>t</think><answer>5</answer>", "boxed", None),
        # markers inside a closed thinking do not count, even with none after it
        ("<think>it is \\boxed{3}</think> I am not sure.", "boxed", None),
        ("<think>\\boxed{3}</think> \\boxed{4}", "boxed", "4"),
        # several thinking blocks: only what follows the last </think>
        ("<think>a</think> \\boxed{1} <think>b</think> \\boxed{2}", "boxed", "2"),
        ("<think>a</think> \\boxed{1} <think>b</think> nothing", "boxed", None),
        # hedged: the last marker is the answer, a hedge inside one box is graded as written
        ("<think>t</think> \\boxed{3} or maybe \\boxed{5}", "boxed", "5"),
        ("<think>t</think> \\boxed{3 or 5}", "boxed", "3 or 5"),
        # without </think> (thinking cut off, or never opened), the whole response is read, as PAPO-Eval
        ("<think>so it is \\boxed{7} but", "boxed", "7"),
        ("The answer is \\boxed{7}.", "boxed", "7"),
        ("< /think > \\boxed{8}", "boxed", "8"),  # PAPO-Eval's tag-space rule
        ("<think>x</think>< answer > 7 </ answer >", "tags", "7"),
        ("no answer here", "boxed", None),
        ("\\boxed{unclosed", "boxed", None),
        ("<answer>7", "tags", None),
    ],
)
def test_final_answer(text, answer_format, expected):
    assert final_answer(text, answer_format) == expected


def test_unknown_answer_format_is_an_error():
    with pytest.raises(ValueError, match="unknown answer format 'latex'"):
        final_answer("\\boxed{1}", "latex")


def test_format_reward_follows_the_answer_format():
    tagged = [
        "<think>red. red 1</think><answer>1</answer>",
        "  <think>a\nb</think><answer>1</answer>\n",
        "<think>a</think> <answer>1</answer>",
        "<answer>1</answer>",
        "<think>a</think><answer>1</answer> trailing",
        [{"role": "assistant", "content": "<think></think><answer></answer>"}],
        "<think>a</think> so \\boxed{3}.",
    ]
    assert format_reward(tagged) == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]  # no column: the synthetic task's tags
    assert format_reward(tagged, answer_format=["tags"] * len(tagged)) == format_reward(tagged)
    # the papers' prompt: a correct boxed answer now scores 1 for format (VPPO's check, after its tag-space rule)
    boxed = ["<think>a</think> so \\boxed{3}.", "< think >a< /think >\\boxed{3}", "\\boxed{3}", "<think>a</think> 3", "<think>a</think><answer>3</answer>"]
    assert format_reward(boxed, answer_format=["boxed"] * len(boxed)) == [1.0, 1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        format_reward(boxed, answer_format=["boxed"])


def test_overlong_penalty():
    assert overlong_penalty([10, 40, 44, 48, 49], max_len=48, cache=8) == [0.0, 0.0, -0.5, -1.0, -1.0]
    with pytest.raises(ValueError, match="cache"):
        overlong_penalty([1], max_len=8, cache=9)


def test_math_equal_reads_whole_expressions_not_a_leading_number():
    from tokencredit.rewards import math_equal

    assert math_equal("2.0", "2") and math_equal("\\frac{1}{2}", "0.5")
    assert not math_equal("2\\sqrt{3}", "2")
