import pytest

from tokencredit.rewards import extract_answer, format_reward, overlong_penalty


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>red red. red 2</think><answer>2</answer>", "2"),
        ("<answer>1</answer> then <answer> 3 </answer>", "3"),
        ("so the answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("\\boxed{1} and \\boxed{4}", "4"),
        ("<answer>5</answer> \\boxed{4}", "5"),
        ("no answer here", None),
        ("\\boxed{unclosed", None),
        ("<answer>7", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_format_reward():
    completions = [
        "<think>red. red 1</think><answer>1</answer>",
        "  <think>a\nb</think><answer>1</answer>\n",
        "<think>a</think> <answer>1</answer>",
        "<answer>1</answer>",
        "<think>a</think><answer>1</answer> trailing",
        [{"role": "assistant", "content": "<think></think><answer></answer>"}],
    ]
    assert format_reward(completions) == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]


def test_overlong_penalty():
    assert overlong_penalty([10, 40, 44, 48, 49], max_len=48, cache=8) == [0.0, 0.0, -0.5, -1.0, -1.0]
    with pytest.raises(ValueError, match="cache"):
        overlong_penalty([1], max_len=8, cache=9)


def test_math_equal_reads_whole_expressions_not_a_leading_number():
    from tokencredit.rewards import math_equal

    assert math_equal("2.0", "2") and math_equal("\\frac{1}{2}", "0.5")
    assert not math_equal("2\\sqrt{3}", "2")
