"""A generated corpus of movie-review-like texts, used when no IMDB data is on disk.

Seeded and reproducible, in IMDB's text form (mixed case, punctuation, ``<br /><br />``
between paragraphs, a rating out of ten). Positive and negative reviews share the neutral
vocabulary and differ in their opinion words (seven in ten agree with the label) and in the
closing verdict (agreeing 85% of the time): an LSTM learns it within one epoch, and it is
not a lookup table.
"""

from __future__ import annotations

import random

POSITIVE = [
    "wonderful",
    "brilliant",
    "superb",
    "moving",
    "delightful",
    "excellent",
    "charming",
    "gripping",
    "masterful",
    "beautiful",
    "hilarious",
    "touching",
    "stunning",
    "memorable",
    "great",
    "clever",
    "heartfelt",
    "riveting",
    "gorgeous",
    "fantastic",
]
NEGATIVE = [
    "awful",
    "boring",
    "dreadful",
    "terrible",
    "dull",
    "clumsy",
    "pointless",
    "tedious",
    "lifeless",
    "horrible",
    "forgettable",
    "bland",
    "mediocre",
    "weak",
    "stupid",
    "predictable",
    "lazy",
    "painful",
    "messy",
    "disappointing",
]
NOUNS = [
    "story",
    "plot",
    "script",
    "cast",
    "acting",
    "direction",
    "soundtrack",
    "ending",
    "dialogue",
    "cinematography",
    "pacing",
    "score",
    "editing",
    "screenplay",
]
FILMS = ["film", "movie", "picture", "feature", "thriller", "comedy", "drama", "western"]
NAMES = [
    "Anna Reyes",
    "Tom Becker",
    "Lena Holt",
    "Marcus Vale",
    "Ruth Okafor",
    "Jon Park",
    "Ida Stone",
    "Paul Mercer",
    "Nina Castell",
    "Omar Haddad",
    "Clara Moss",
    "Victor Lund",
]
ROLES = [
    "a tired detective",
    "a young widow",
    "a small-town mayor",
    "a retired boxer",
    "a nervous pilot",
]
PLACES = "Chicago|a fishing village|1970s Berlin|a desert town|the suburbs|a boarding school"
WHEN = "last night|on a rainy Sunday|at a festival|on cable|years ago|with low expectations"
WHO = "my wife|two friends|my father|the whole family|nobody|my sister"
INTENSIFIERS = ["really", "truly", "quite", "simply", "rather", "absolutely", "pretty"]
NEUTRAL = (
    "I saw this {film} {when} with {who}.",
    "The {film} is set in {place} and runs about {minutes} minutes.",
    "{name} plays {role}, and {name2} shows up halfway through.",
    "It is based on a novel I have not read.",
    "The first half hour introduces the family and the town.",
    "There is a long scene at a train station.",
    "Some of the jokes are about the weather.",
    "The director also made a documentary about {place}.",
)
OPINION = (
    "The {noun} was {int} {adj}.",
    "I thought the {noun} was {adj}.",
    "{name} gives a {adj} performance as {role}.",
    "What a {adj} {noun}!",
    "Honestly, the {noun} is {adj} from start to finish.",
)
VERDICT = ("Overall, a {adj} {film}.", "In the end it is a {adj} {film}.", "{Adj}. {rating}/10.")


def _pick(rng: random.Random, words: str | tuple[str, ...] | list[str]) -> str:
    """One choice from a list or a ``|``-separated string."""
    return rng.choice(words.split("|") if isinstance(words, str) else words)


def _fill(rng: random.Random, template: str, adj: str, rating: int) -> str:
    """Fill a sentence template with seeded choices."""
    return template.format(
        film=_pick(rng, FILMS),
        when=_pick(rng, WHEN),
        who=_pick(rng, WHO),
        place=_pick(rng, PLACES),
        minutes=rng.randrange(85, 160),
        name=_pick(rng, NAMES),
        name2=_pick(rng, NAMES),
        role=_pick(rng, ROLES),
        noun=_pick(rng, NOUNS),
        int=_pick(rng, INTENSIFIERS),
        adj=adj,
        Adj=adj.capitalize(),
        rating=rating,
    )


def generate_review(rng: random.Random, positive: bool) -> tuple[str, int]:
    """One review text and its rating (7-10 for positive, 1-4 for negative)."""
    own, other = (POSITIVE, NEGATIVE) if positive else (NEGATIVE, POSITIVE)
    rating = rng.randint(7, 10) if positive else rng.randint(1, 4)
    sentences = [_fill(rng, _pick(rng, NEUTRAL), "", rating) for _ in range(rng.randint(2, 6))]
    for _ in range(rng.randint(2, 5)):
        adj = _pick(rng, own if rng.random() < 0.7 else other)
        sentences.insert(rng.randrange(len(sentences) + 1), _fill(rng, _pick(rng, OPINION), adj, 0))
    verdict = _pick(rng, own if rng.random() < 0.85 else other)
    sentences.append(_fill(rng, _pick(rng, VERDICT), verdict, rating))
    cut = rng.randrange(1, len(sentences))
    text = " ".join(sentences[:cut]) + "<br /><br />" + " ".join(sentences[cut:])
    return text, rating


def generate_reviews(n: int, seed: int = 0) -> list[tuple[str, int]]:
    """``n`` reviews as (text, label) pairs, half positive (label 1), in a seeded order."""
    rng = random.Random(seed)
    reviews = [(generate_review(rng, i % 2 == 0)[0], int(i % 2 == 0)) for i in range(n)]
    rng.shuffle(reviews)
    return reviews
