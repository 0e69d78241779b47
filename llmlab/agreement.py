"""A tiny synthetic language where the verb must agree with a distant subject.

    <bos> the [adj] SUBJECT PREP the [adj] DISTRACTOR VERB [adverb] .

"the old cat near the dogs sits quietly ." The verb's number (sits / sit) follows the subject,
never the distractor noun right before it, whose number is drawn independently. A model that
looks only at the last few words is right half the time; to do better it must attend back to
the subject. Everything is generated from a seed: nothing is downloaded.
"""

import random
from collections import Counter, defaultdict
from dataclasses import dataclass

import torch

NOUNS = [
    ("cat", "cats"),
    ("dog", "dogs"),
    ("bird", "birds"),
    ("fox", "foxes"),
    ("child", "children"),
    ("mouse", "mice"),
]
VERBS = [("sits", "sit"), ("runs", "run"), ("sleeps", "sleep"), ("eats", "eat"), ("jumps", "jump")]
ADJECTIVES = ["big", "small", "old", "happy", "red"]
PREPOSITIONS = ["near", "behind", "with", "beside", "under"]
ADVERBS = ["quietly", "today", "again"]
SPECIALS = ["<pad>", "<bos>", "the", "."]

WORDS = SPECIALS + [w for pair in NOUNS for w in pair] + [w for pair in VERBS for w in pair]
WORDS += ADJECTIVES + PREPOSITIONS + ADVERBS
SINGULAR_VERBS = {s for s, _ in VERBS}
PLURAL_VERBS = {p for _, p in VERBS}
MAX_LEN = 11  # <bos> the adj noun prep the adj noun verb adverb .


class Vocab:
    """Word-level tokenizer: one id per word."""

    def __init__(self, words=WORDS):
        self.words = list(words)
        self.ids = {w: i for i, w in enumerate(self.words)}
        self.pad_id, self.bos_id = self.ids["<pad>"], self.ids["<bos>"]

    def __len__(self):
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        words = text.split()
        unknown = [w for w in words if w not in self.ids]
        if unknown:
            raise ValueError(
                f"words not in the vocabulary: {unknown}; known words: {' '.join(self.words)}"
            )
        return [self.ids[w] for w in words]

    def decode(self, ids) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return " ".join(self.words[i] for i in ids)


VOCAB = Vocab()


@dataclass(frozen=True)
class Sentence:
    words: tuple[str, ...]  # starts with <bos>, ends with "."
    subject_pos: int  # index of the subject noun in words
    distractor_pos: int  # index of the noun just before the verb
    verb_pos: int
    plural: bool  # the subject's (and so the verb's) number

    @property
    def text(self) -> str:
        return " ".join(self.words)


def make_sentence(rng: random.Random) -> Sentence:
    """One random sentence; rng is a random.Random so every caller controls the seed."""
    subj, dist = rng.choice(NOUNS), rng.choice(NOUNS)
    subj_plural, dist_plural = rng.random() < 0.5, rng.random() < 0.5  # independent numbers
    words = ["<bos>", "the"]
    if rng.random() < 0.5:
        words.append(rng.choice(ADJECTIVES))
    subject_pos = len(words)
    words += [subj[subj_plural], rng.choice(PREPOSITIONS), "the"]
    if rng.random() < 0.5:
        words.append(rng.choice(ADJECTIVES))
    distractor_pos = len(words)
    words.append(dist[dist_plural])
    verb_pos = len(words)
    words.append(rng.choice(VERBS)[subj_plural])
    if rng.random() < 0.5:
        words.append(rng.choice(ADVERBS))
    words.append(".")
    return Sentence(tuple(words), subject_pos, distractor_pos, verb_pos, subj_plural)


def make_sentences(n: int, seed: int, exclude=frozenset()) -> list[Sentence]:
    """n distinct-from-`exclude` sentences (exclude: a set of sentence texts), reproducible from seed."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        s = make_sentence(rng)
        if s.text not in exclude:
            out.append(s)
    return out


def to_batch(sentences, vocab=VOCAB):
    """(inputs, targets) as (N, MAX_LEN - 1) long tensors; padding targets are -100 (ignored)."""
    ids = torch.full((len(sentences), MAX_LEN), vocab.pad_id, dtype=torch.long)
    for row, s in enumerate(sentences):
        ids[row, : len(s.words)] = torch.tensor(vocab.encode(s.text))
    inputs, targets = ids[:, :-1], ids[:, 1:].clone()
    targets[targets == vocab.pad_id] = -100
    return inputs, targets


def agreement_accuracy(model, sentences, vocab=VOCAB) -> float:
    """Share of sentences where the model prefers the correct verb form over the wrong one.

    The prediction is read at the distractor position: the token *before* the verb is the one
    whose output predicts the verb. Correct = the logit of the agreeing form beats the other form.
    """
    return float(verb_preferences(model, sentences, vocab).float().mean())


def verb_preferences(model, sentences, vocab=VOCAB) -> torch.Tensor:
    """(N,) bool: for each sentence, did the model rank the agreeing verb above the other form?"""
    inputs, _ = to_batch(sentences, vocab)
    with torch.no_grad():
        logits = model(inputs.to(model.device)).cpu()
    rows = torch.arange(len(sentences))
    at = torch.tensor([s.distractor_pos for s in sentences])
    right, wrong = _verb_ids(sentences, vocab)
    step = logits[rows, at]  # (N, V) prediction made at the distractor
    return step[rows, right] > step[rows, wrong]


def _verb_ids(sentences, vocab):
    right, wrong = [], []
    for s in sentences:
        verb = s.words[s.verb_pos]
        pair = next(p for p in VERBS if verb in p)
        right.append(vocab.ids[verb])
        wrong.append(vocab.ids[pair[1 - pair.index(verb)]])
    return torch.tensor(right), torch.tensor(wrong)


class NgramBaseline:
    """Predicts the verb from the previous `context` words only, by counting the training data.

    With context=2 it sees "the dogs" but never the subject: it can only guess from the distractor,
    whose number is independent of the verb's, so it sits near chance (50%).
    """

    def __init__(self, train_sentences, context: int = 2):
        if context < 1:
            raise ValueError(f"context must be >= 1, got {context}")
        self.context = context
        self.counts = defaultdict(Counter)
        for s in train_sentences:
            self.counts[self._key(s)][s.words[s.verb_pos]] += 1

    def _key(self, s):
        return s.words[s.verb_pos - self.context : s.verb_pos]

    def accuracy(self, sentences) -> float:
        correct = 0
        for s in sentences:
            verb = s.words[s.verb_pos]
            pair = next(p for p in VERBS if verb in p)
            seen = self.counts.get(self._key(s), Counter())
            # Votes for each number of *this* verb; ties (or unseen contexts) count as half right.
            right, wrong = seen[verb], seen[pair[1 - pair.index(verb)]]
            correct += 1.0 if right > wrong else 0.5 if right == wrong else 0.0
        return correct / len(sentences)
