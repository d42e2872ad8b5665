"""The official SQuAD scoring, as the task tests' independent expectation (test/tasks.test.ts).

normalize_answer, f1_score, exact_match_score and metric_max_over_ground_truths are the functions of
the official SQuAD v1.1 evaluation script (evaluate-v1.1.py, rajpurkar.github.io/SQuAD-explorer);
get_tokens / compute_exact / compute_f1 and the "no gold answer -> ['']" rule are those of
evaluate-v2.0.py. Written out here from those scripts (they are short and have not changed since
2018) because neither is installed on these machines.

stdin: {"cases": [[prediction, [gold, ...]], ...]}  ->  stdout: {"v1": [[em, f1], ...], "v2": [[em, f1], ...]}
"""
import collections
import json
import re
import string
import sys


def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


# ---- evaluate-v1.1.py
def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def exact_match_score(prediction, ground_truth):
    return (normalize_answer(prediction) == normalize_answer(ground_truth))


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


# ---- evaluate-v2.0.py
def get_tokens(s):
    if not s:
        return []
    return normalize_answer(s).split()


def compute_exact(a_gold, a_pred):
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold, a_pred):
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # If either is no-answer, then F1 is 1 if they agree, 0 otherwise
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def v2_scores(pred, golds):
    gold_answers = [a for a in golds if normalize_answer(a)]
    if not gold_answers:
        gold_answers = ['']
    return [max(compute_exact(a, pred) for a in gold_answers), max(compute_f1(a, pred) for a in gold_answers)]


cases = json.load(sys.stdin)["cases"]
v1 = [[float(metric_max_over_ground_truths(exact_match_score, p, g)) if g else None,
       float(metric_max_over_ground_truths(f1_score, p, g)) if g else None] for p, g in cases]
v2 = [v2_scores(p, g) for p, g in cases]
json.dump({"v1": v1, "v2": v2, "normalized": [normalize_answer(p) for p, _ in cases]}, sys.stdout)
