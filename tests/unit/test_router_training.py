"""How a router's classifier is trained: the numpy head, cross-validated thresholds,
the background corpus, and the share a fine-tuned encoder keeps unseen."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from extensions.router.background import Background, corpus_lines, far_enough
from extensions.router.calibration import calibration_mask, fold_ids, out_of_fold_scores
from extensions.router.classifier import (
    OOS_LABEL,
    Head,
    Verdict,
    classify_row,
    fit_thresholds,
    train_head,
)
from extensions.router.examples import BACKGROUND_SOURCE, Example, stratified_split
from extensions.router.logreg import Fit, fit_multinomial
from extensions.router.settings import BackgroundCorpus, Calibration, Thresholds
from extensions.router.training import train_classifier

pytestmark = pytest.mark.unit


def blobs(k: int, n: int, d: int, spread: float, sample: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``k`` overlapping Gaussian classes on the unit sphere, like sentence embeddings;
    ``sample`` draws other points around the same centres."""
    centers = np.random.default_rng(0).normal(size=(k, d))
    rng = np.random.default_rng(100 + sample)
    x = np.concatenate([c + rng.normal(0, spread, (n, d)) for c in centers])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(k), n)


def test_numpy_head_matches_scikit_learn() -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = blobs(k=12, n=60, d=32, spread=1.2)
    x_test, yt = blobs(k=12, n=60, d=32, spread=1.2, sample=1)
    ours = fit_multinomial(x, y, 12, c=20.0)
    assert ours.converged
    ref = LogisticRegression(C=20.0, max_iter=5000, tol=1e-8).fit(x, y)
    ours_pred = (x_test @ ours.weights.T + ours.bias).argmax(axis=1)
    ref_pred = ref.predict(x_test)
    assert np.mean(ours_pred == ref_pred) >= 0.99
    assert abs(np.mean(ours_pred == yt) - np.mean(ref_pred == yt)) <= 0.01
    # the same optimum: weights agree up to the softmax's shift invariance
    w_ref = ref.coef_ - ref.coef_.mean(axis=0)
    w_ours = ours.weights - ours.weights.mean(axis=0)
    assert np.abs(w_ours - w_ref).max() < 0.05 * np.abs(w_ref).max()


def test_numpy_head_is_deterministic_and_weighted() -> None:
    x, y = blobs(k=3, n=30, d=8, spread=1.5)
    a, b = fit_multinomial(x, y, 3), fit_multinomial(x, y, 3)
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)
    heavy = np.where(y == 0, 10.0, 1.0)
    w = fit_multinomial(x, y, 3, sample_weight=heavy)

    def share(f: Fit) -> float:
        return float(np.mean((x @ f.weights.T + f.bias).argmax(axis=1) == 0))

    assert share(w) > share(a)  # a heavier class claims more of the overlap


def test_train_head_two_classes_and_errors() -> None:
    x, y = blobs(k=2, n=20, d=8, spread=0.3)
    head = train_head(x, ["yes" if v else "no" for v in y])
    assert head.labels == ("no", "yes") and head.weights.shape == (2, 8)
    assert np.mean(head.probabilities(x).argmax(axis=1) == y) == 1.0
    with pytest.raises(ValueError, match="at least two labels"):
        train_head(x, ["a"] * len(x))


def test_train_head_is_fast_for_a_small_router() -> None:
    x, y = blobs(k=8, n=14, d=384, spread=1.0)  # the demo router's size
    started = time.perf_counter()
    train_head(x, [str(v) for v in y])
    assert time.perf_counter() - started < 10.0  # about 0.1 s alone; CI's cores are shared


def test_serving_modules_do_not_import_heavy_training_libraries() -> None:
    code = (
        "import sys, numpy as np\n"
        "from extensions.router.engine import compile_routers, RouterEngine\n"
        "from extensions.router.classifier import train_head\n"
        "from extensions.router.training import cached_classifier\n"
        "x = np.random.default_rng(0).normal(size=(40, 8)).astype('float32')\n"
        "train_head(x, ['a', 'b'] * 20)\n"
        "heavy = {'sklearn', 'scipy', 'torch', 'sentence_transformers', 'transformers'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_folds_are_stratified_and_out_of_fold_rows_are_unseen() -> None:
    labels = ["a"] * 10 + ["b"] * 10 + ["c"] * 3
    folds = fold_ids(labels, 5)
    for label in "ab":
        rows = [f for f, lb in zip(folds, labels, strict=True) if lb == label]
        assert sorted(rows) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    # a lone example of a label: its own fold's head never saw that label
    x, y = blobs(k=2, n=20, d=8, spread=0.5)
    names = ["a" if v else "b" for v in y]
    x = np.concatenate([x, x[:1] * -1])
    names.append("lone")
    held = out_of_fold_scores(x, names, ("a", "b", "lone"), 5, 20.0)
    probs, scored = held.probs, held.scored
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert probs[-1, 2] == 0.0  # scored by heads that never saw it...
    assert scored[:-1].all() and not scored[-1]  # ...so it is left out of the fitting
    in_sample = train_head(x, names).probabilities(x)
    assert in_sample[-1, 2] > 0.5


def test_fit_thresholds_spends_the_budget_on_the_confidence_floor() -> None:
    head = Head(("a", "b", OOS_LABEL), np.eye(3, dtype=np.float32), np.zeros(3, np.float32))
    rng = np.random.default_rng(3)
    top = rng.uniform(0.5, 0.99, 300)
    in_scope = [np.array([p, 1 - p - 0.01, 0.01], np.float32) for p in top]
    oos = [np.array([0.05, 0.05, 0.9], np.float32)] * 40  # all caught by the oos class
    rows = np.stack(in_scope + oos)
    labels = ["a"] * 300 + [OOS_LABEL] * 40
    t = fit_thresholds(head, rows, labels, target_false_refusal=0.02, target_clarify_rate=0.0)
    refused = [classify_row(head, r, t).verdict is Verdict.OUT_OF_SCOPE for r in rows]
    assert sum(refused[:300]) == 6  # exactly 2%: room for off-topic queries unlike the examples
    assert all(refused[300:])
    none = fit_thresholds(head, rows, labels, target_false_refusal=0.0, target_clarify_rate=0.0)
    assert not any(classify_row(head, r, none).verdict is Verdict.OUT_OF_SCOPE for r in in_scope)


def test_background_corpus_is_shipped_and_clean() -> None:
    lines = corpus_lines()
    assert len(lines) >= 300
    assert len(set(lines)) == len(lines)
    assert not any(line.startswith("#") for line in lines)


def test_far_enough_drops_lines_near_an_intent() -> None:
    in_scope = np.eye(3, dtype=np.float32)
    near = np.array([0.95, 0.31, 0.0], np.float32)
    far = np.array([0.5, 0.5, 0.5], np.float32) / np.sqrt(0.75)
    keep = far_enough(np.stack([near, far / np.linalg.norm(far)]), in_scope, 0.6)
    assert keep.tolist() == [False, True]


def test_background_settings() -> None:
    assert Background.from_settings(BackgroundCorpus(enabled=False)).texts == ()
    on = Background.from_settings(BackgroundCorpus(max_similarity=0.5))
    assert on.texts == tuple(corpus_lines()) and on.max_similarity == 0.5
    with pytest.raises(ValueError, match="Extra inputs"):
        BackgroundCorpus.model_validate({"enabled": True, "lines": ["x"]})


def test_calibration_mask_matches_the_split_and_hashes_background() -> None:
    own = [Example(f"{lab}{i}", lab) for lab in "ab" for i in range(10)]
    extra = [Example(f"line {i}", OOS_LABEL, BACKGROUND_SOURCE) for i in range(40)]
    mask = calibration_mask(own + extra)
    _, held = stratified_split(own, 0.2)
    assert [e for e, m in zip(own, mask[:20], strict=True) if m] == held
    assert 0 < mask[20:].sum() < 20
    # a line's membership does not depend on which other lines survived filtering
    again = calibration_mask(own + extra[::2])
    assert np.array_equal(again[20:], mask[20:][::2])


def encode_letters(texts: list[str]) -> np.ndarray:
    """a…/b…/c… cluster by first letter; anything else lands in a fourth direction."""
    rows = []
    for t in texts:
        v = np.full(5, 0.02, dtype=np.float32)
        v["abcz".index(t[0]) if t[0] in "abcz" else 4] = 1.0
        v[(len(t) * 7) % 5] += 0.1
        rows.append(v / np.linalg.norm(v))
    return np.stack(rows)


def test_train_classifier_adds_background_and_fits_out_of_fold() -> None:
    examples = [Example(f"{lab}{i}", lab) for lab in "abc" for i in range(12)]
    background = Background(("a near line", "x far line", "y far too"), max_similarity=0.9)
    trained = train_classifier(examples, encode_letters, Thresholds(), background=background)
    assert OOS_LABEL in trained.model.labels
    assert trained.n_background == 2  # "a near line" sits on intent a
    scores = trained.model.scores(encode_letters(["x off topic", "b5"]))
    first, second = (
        classify_row(trained.model, p, trained.thresholds, float(n))
        for p, n in zip(scores.probs, scores.nearest, strict=True)
    )
    assert first.verdict is Verdict.OUT_OF_SCOPE
    assert second.intent == "b"
    holdout = Thresholds(calibration=Calibration.HOLDOUT)
    assert train_classifier(examples, encode_letters, holdout).model.labels == ("a", "b", "c")


def test_a_tiny_router_trains_with_cross_validation() -> None:
    """Two intents, one with a single example, no background: some folds cannot train a
    head; the router still trains (it used to raise at start-up)."""
    examples = [Example("a0", "a")] + [Example(f"b{i}", "b") for i in range(5)]
    trained = train_classifier(examples, encode_letters, Thresholds())
    assert trained.model.labels == ("a", "b")
    one_each = [Example("a0", "a"), Example("b0", "b")]  # nothing to cross-validate
    assert train_classifier(one_each, encode_letters, Thresholds()).model.labels == ("a", "b")


def test_the_oos_class_stays_within_the_budget_without_off_topic_rows() -> None:
    """A head with an oos class fitted on in-scope rows only: the oos rule's own refusals
    count against the budget (they once came on top of it: 29 of 200 at 1%)."""
    head = Head(("a", "b", OOS_LABEL), np.eye(3, dtype=np.float32), np.zeros(3, np.float32))
    rows = np.array([[0.69, 0.3, 0.01]] * 180 + [[0.3, 0.1, 0.6]] * 20, np.float32)
    t = fit_thresholds(head, rows, ["a"] * 200, target_false_refusal=0.01, target_clarify_rate=0)
    refused = sum(classify_row(head, r, t).verdict is Verdict.OUT_OF_SCOPE for r in rows)
    assert refused <= 2
