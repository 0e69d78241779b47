"""The agreement language and the shipped model that chapters 1-4 study."""

import pytest
import torch

from llmlab import agreement, load_agreement_model
from llmlab.checkpoint import CHECKPOINT, machine_fingerprint
from llmlab.train import N_TRAIN, TRAIN_SEED, heldout_sentences, train_agreement_model


@pytest.fixture(scope="module")
def training():
    return agreement.make_sentences(N_TRAIN, seed=TRAIN_SEED)


@pytest.fixture(scope="module")
def heldout():
    return heldout_sentences()


def test_shipped_model_agrees_on_sentences_it_never_saw(heldout):
    model = load_agreement_model()
    assert agreement.agreement_accuracy(model, heldout) >= 0.95


def test_a_two_word_window_cannot_do_agreement(training, heldout):
    # The word before the verb is the distractor, whose number is independent of the subject's.
    assert 0.4 <= agreement.NgramBaseline(training, context=2).accuracy(heldout) <= 0.6


def test_heldout_sentences_are_new(training, heldout):
    assert not {s.text for s in training} & {s.text for s in heldout}


def test_sentences_are_reproducible_from_the_seed():
    assert agreement.make_sentences(50, seed=7) == agreement.make_sentences(50, seed=7)
    assert agreement.make_sentences(50, seed=7) != agreement.make_sentences(50, seed=8)


def test_sentences_follow_the_grammar(training):
    for s in training[:500]:
        subject, distractor, verb = (
            s.words[s.subject_pos],
            s.words[s.distractor_pos],
            s.words[s.verb_pos],
        )
        assert s.words[0] == "<bos>" and s.words[-1] == "."
        assert s.distractor_pos == s.verb_pos - 1, "the distractor must sit right before the verb"
        assert any(subject == pair[s.plural] for pair in agreement.NOUNS)
        assert any(distractor in pair for pair in agreement.NOUNS)
        assert verb in (agreement.PLURAL_VERBS if s.plural else agreement.SINGULAR_VERBS)
        assert len(s.words) <= agreement.MAX_LEN


def test_vocab_round_trips_and_names_unknown_words():
    vocab = agreement.VOCAB
    text = "<bos> the old cat near the dogs sits quietly ."
    assert vocab.decode(vocab.encode(text)) == text
    with pytest.raises(ValueError, match="zebra"):
        vocab.encode("the zebra sits")


def test_training_is_reproducible_from_the_seed(heldout):
    a, history_a = train_agreement_model(steps=30, log_every=0)
    b, _ = train_agreement_model(steps=30, log_every=0)
    c, history_c = train_agreement_model(steps=30, log_every=0, seed=TRAIN_SEED + 1)
    weights_a, weights_b, weights_c = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a), (
        "same seed, different weights"
    )
    assert not all(torch.equal(weights_a[k], weights_c[k]) for k in weights_a), (
        "the seed does not reach the training run"
    )
    # The comparisons the slow test makes can fail: another seed's loss curve strays past the
    # tolerance, and a barely trained model decides differently from the shipped one.
    assert loss_gap(history_a, history_c, width=10) > LOSS_TOLERANCE
    with pytest.raises(AssertionError, match="differently from the shipped one"):
        assert_follows_the_shipped_run(a, history_a, load_agreement_model(), heldout)


def test_shipped_checkpoint_records_how_it_was_made():
    """What a retrain is compared with: the loss at every step, and the machine it ran on."""
    info = load_agreement_model().info
    assert len(info["loss_curve"]) == info["steps"] == 1500
    assert set(info["machine"]) == {"cpu", "cpu_capability", "torch", "threads"}
    assert info["heldout_accuracy"] >= 0.95


# How closely a retrain elsewhere must follow the shipped run. Measured by retraining with the
# defaults on the AMD EPYC (AVX-512) that made the checkpoint, with torch's other kernels, as another
# CPU would take them (ATEN_CPU_CAPABILITY=avx2 and =default), and with 1 thread instead of 2.
# Weights ended up to 0.036 (avx2), 0.081 (default) and 0.005 (1 thread) away from the shipped
# ones, yet every variant was 100% accurate, made the same agreement decision as the shipped model
# on all 2000 held-out sentences, and kept its loss, averaged over 50-step windows, within 0.0004,
# 0.0025 and 0.0001 of the recorded curve. The bounds below leave 20 sentences and 4x that noise of
# slack; another seed's curve strays past the loss bound (see the test above).
SAME_DECISIONS = 0.99  # share of held-out sentences; 1% = 20 sentences of slack
LOSS_WINDOW, LOSS_TOLERANCE = 50, 0.01


def loss_gap(history, curve, width=LOSS_WINDOW):
    """Largest gap between two loss curves averaged over windows of `width` steps (single steps
    are batch noise). history: [(step, loss), ...] as training returns it; curve: losses."""
    a = torch.tensor([loss for _, loss in history], dtype=torch.float64)
    b = torch.tensor([loss for _, loss in curve] if curve and isinstance(curve[0], tuple) else curve,
                     dtype=torch.float64)  # fmt: skip
    n = min(len(a), len(b)) // width * width
    return (a[:n].view(-1, width).mean(1) - b[:n].view(-1, width).mean(1)).abs().max().item()


def assert_follows_the_shipped_run(model, history, shipped, heldout):
    same = agreement.verb_preferences(model, heldout) == agreement.verb_preferences(
        shipped, heldout
    )
    assert same.float().mean() >= SAME_DECISIONS, (
        f"the retrained model decides {int((~same).sum())} of {len(heldout)} held-out sentences "
        "differently from the shipped one"
    )
    assert agreement.agreement_accuracy(model, heldout) >= 0.95
    gap = loss_gap(history, shipped.info["loss_curve"])
    assert gap <= LOSS_TOLERANCE, (
        f"the training loss strays {gap:.4f} from the recorded curve (averaged over "
        f"{LOSS_WINDOW}-step windows); float noise between CPUs stays under {LOSS_TOLERANCE}"
    )


@pytest.mark.slow
def test_shipped_checkpoint_is_reproducible_from_the_seed(heldout):
    """Retrain with the defaults (`python -m llmlab.train`, 2 threads) and get the shipped model back.

    Anywhere: a model that behaves like the shipped one and a loss curve that follows the recorded
    one. Bit for bit only on the machine the checkpoint records (CPU, kernels, torch, threads):
    float sums follow the order of additions, which the BLAS kernel and thread count decide.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        here = machine_fingerprint()
        model, history = train_agreement_model(log_every=0)  # the checkpoint's settings
    finally:
        torch.set_num_threads(threads)
    shipped = load_agreement_model()
    assert_follows_the_shipped_run(model, history, shipped, heldout)
    if here != shipped.info["machine"]:
        return  # another CPU or build: behaviour is the promise, bits are not
    weights = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)["state_dict"]
    for name, weight in weights.items():
        torch.testing.assert_close(model.state_dict()[name], weight, rtol=0, atol=0, msg=name)
