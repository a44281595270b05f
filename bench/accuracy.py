"""Accuracy of each variant: the cosine of its pooled embeddings to the reference file's (fp32).

Measured on :data:`ACCURACY_SENTENCES`, a fixed mix of 32 real sentences chosen for variety, not the
held-out STS sentences the build's int8 gates use; the two figures answer different questions and
every table says which sentences it is on.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..pooling import rowwise_cosine, spearman

__all__ = ["ACCURACY_SENTENCES", "accuracy_label", "cosine_to_reference", "scores_to_reference"]

# Varied real sentences for the accuracy check: short and long, questions, numbers, code, accents,
# other scripts. Fixed so numbers from different runs and machines compare.
ACCURACY_SENTENCES: tuple[str, ...] = (
    "A man is playing a guitar.",
    "A woman is slicing an onion in the kitchen.",
    "The cat sat on the mat and watched the birds outside the window.",
    "How do I reset my password if I no longer have access to my email?",
    "What is the capital of Australia?",
    "Canberra is the capital city of Australia, not Sydney as many people assume.",
    "Stock markets fell sharply on Tuesday after the central bank raised interest rates by 0.75 points.",
    "The quarterly report shows revenue of $4.2 billion, up 12% year over year.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "def add(a, b): return a + b  # a tiny Python function",
    "SELECT name, COUNT(*) FROM users GROUP BY name HAVING COUNT(*) > 1;",
    "Ünïcödé text with accents: café, naïve, façade, jalapeño.",
    "東京は日本の首都です。",
    "Das Wetter ist heute schön, aber morgen soll es regnen.",
    "¿Dónde está la biblioteca más cercana?",
    "lol ok 👍",
    "ok",
    "The committee postponed the vote until next week because several members were absent.",
    "Researchers found that regular exercise improves sleep quality in older adults.",
    "Two dogs are running through a field of tall grass.",
    "A child is riding a red bicycle down a quiet street.",
    "The new smartphone features a larger battery, a faster processor and an improved camera.",
    "Please remember to bring your passport and a printed copy of your ticket to the airport.",
    "Error: connection refused while trying to reach the database on port 5432.",
    "In 1969, Apollo 11 landed on the Moon and Neil Armstrong became the first person to walk on it.",
    "The recipe calls for two cups of flour, one egg, a pinch of salt and a cup of milk.",
    "Is it safe to take ibuprofen and paracetamol together?",
    "Machine learning models can inherit biases present in their training data.",
    "The river flooded the village after three days of heavy rain.",
    "He didn't say anything; he just smiled and walked away.",
    (
        "The history of the city goes back more than two thousand years: it was founded as a small trading"
        " post on the river, grew into a fortified market town in the middle ages, was largely destroyed by"
        " fire in the seventeenth century, and was rebuilt in stone with the wide streets and squares that"
        " visitors still admire today, while its port, railway station and university made it one of the"
        " most important centres of commerce, industry and learning in the region during the nineteenth"
        " and twentieth centuries."
    ),
    (
        "To install the package, create a virtual environment, activate it, upgrade pip, and then run the"
        " install command with the extras you need; if the build fails because a compiler is missing,"
        " install the system build tools first, or use a prebuilt wheel for your platform, and check that"
        " the Python version matches one of the versions listed on the project's download page."
    ),
)


def cosine_to_reference(embedders: Mapping[str, Any], reference: str, sentences: Sequence[str],
                        batch_size: int = 8) -> dict[str, tuple[float, float]]:
    """``{variant: (mean cosine, min cosine)}`` of each embedder's vectors to the reference's, row by row.

    >>> cosine_to_reference({"fp32": fp32, "O2": o2}, "fp32", ACCURACY_SENTENCES)  # doctest: +SKIP
    {'fp32': (1.0, 1.0), 'O2': (0.9999999, 0.9999998)}
    """
    texts = list(sentences)
    ref = embedders[reference].encode(texts, batch_size=batch_size)
    out: dict[str, tuple[float, float]] = {}
    for name, emb in embedders.items():
        vecs = ref if name == reference else emb.encode(texts, batch_size=batch_size)
        cos = rowwise_cosine(vecs, ref)
        out[name] = (float(cos.mean()), float(np.min(cos)))
    return out


def accuracy_label(n_sentences: int, reference: str = "fp32", *, custom: bool = False) -> str:
    """What the bench's cosine figures were measured on, for tables and JSON.

    >>> accuracy_label(32)
    'cosine to fp32 on 32 bench sentences'
    """
    which = "given" if custom else "bench"
    return f"cosine to {reference} on {n_sentences} {which} sentences"


def scores_to_reference(rerankers: Mapping[str, Any], reference: str, pairs: Sequence[tuple[str, str]],
                        batch_size: int = 32) -> dict[str, tuple[float, float]]:
    """``{variant: (Spearman of its scores with the reference's, max |score difference|)}`` over ``pairs``.

    Scores after the model's activation (as ``Reranker.score`` returns them); for a multi-label model
    over all labels, flattened.
    """
    ref = np.asarray(rerankers[reference].score(list(pairs), batch_size=batch_size)).ravel()
    out: dict[str, tuple[float, float]] = {}
    for name, rr in rerankers.items():
        got = ref if name == reference else np.asarray(rr.score(list(pairs), batch_size=batch_size)).ravel()
        out[name] = (spearman(got, ref), float(np.abs(got - ref).max()) if len(ref) else 0.0)
    return out
