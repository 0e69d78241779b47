"""The agreement language and the shipped model that chapters 1-4 study."""

import pytest
import torch

from llmlab import agreement, load_agreement_model
from llmlab.checkpoint import CHECKPOINT
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


def test_training_is_reproducible_from_the_seed():
    a, _ = train_agreement_model(steps=30, log_every=0)
    b, _ = train_agreement_model(steps=30, log_every=0)
    c, _ = train_agreement_model(steps=30, log_every=0, seed=TRAIN_SEED + 1)
    a, b, c = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "same seed, different weights"
    assert not all(torch.equal(a[k], c[k]) for k in a), "the seed does not reach the training run"


@pytest.mark.slow
def test_shipped_checkpoint_is_reproducible_from_the_seed(heldout):
    """Retrain with the defaults and get the shipped weights back.

    Floating-point sums depend on the order of additions, which depends on the thread count
    (1 vs 2 threads: weights differ by 1.5e-5 after 30 steps) and can depend on the CPU's
    vector instructions. So this uses the 2 threads `python -m llmlab.train` uses; on a CPU
    unlike the one that made the checkpoint, rerun that command and compare instead.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model, _ = train_agreement_model(
            log_every=0
        )  # the default settings the checkpoint was made with
    finally:
        torch.set_num_threads(threads)
    assert agreement.agreement_accuracy(model, heldout) >= 0.95
    shipped = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)["state_dict"]
    retrained = model.state_dict()
    assert shipped.keys() == retrained.keys()
    for name, weight in shipped.items():
        torch.testing.assert_close(
            retrained[name], weight, rtol=0, atol=1e-6, msg=f"{name} differs"
        )
