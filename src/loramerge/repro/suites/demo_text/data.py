"""Generated sentence-pair (NLI) tasks for the offline text demo, and the mixture its backbone is pre-trained on.

Each rule writes a premise and a hypothesis over its own small vocabulary so that the label (entailment, neutral,
contradiction, in SNLI's order) follows from the rule alone:
- `lexical`: adjectives of one dimension and pole are synonyms, the other pole antonyms, other dimensions unrelated;
- `hypernymy`: a kind of animal entails its family and `animal`, not the reverse; disjoint kinds contradict;
- `negation`: what someone is (not) doing; the hypothesis restates it, negates it, or speaks of someone or
  something else;
- `quantity`: a count against `more than` or `fewer than` a number; another object is unrelated;
- `geography`: living in a city entails living in its country, not the reverse; two places contradict.
Tasks may mask classes, as QNLI and RTE have no `neutral`: their labels are drawn from the other classes only.

Every split is drawn from a numpy generator seeded by (seed, rule, split), so the same arguments give the same pairs
and each split is its own stream. Pairs are text (words joined by spaces); `tokenizer` turns them into ids.

The backbone is pre-trained briefly on a mixture of the tasks' rules (pooled vocabulary, draws of its own), so that,
like a base language model, it is a partly competent NLI model that an adapter specialises. A label-free pretext
(copied, altered or unrelated hypotheses) was tried first: the adapters then had to rewrite the attention layers
(updates as large as the weights) and any two of them merged fell to chance, which leaves a merging demo nothing
to show.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from loramerge.repro.splits import DataError

CLASS_NAMES = ("entailment", "neutral", "contradiction")
ENTAILMENT, NEUTRAL, CONTRADICTION = range(3)

Words = list[str]


@dataclass(frozen=True)
class PairSplit:
    premises: list[str]
    hypotheses: list[str]
    labels: np.ndarray  # int64, one per pair


@dataclass(frozen=True)
class Rule:
    draw: Callable[[int, np.random.Generator], tuple[Words, Words]]  # (label, rng) -> (premise, hypothesis)
    words: frozenset[str]  # every word `draw` can write


def _rng(seed: int, *tags: str) -> np.random.Generator:
    # crc32, not hash(): str hashes are salted per process, and the streams must not change between runs.
    return np.random.default_rng(np.random.SeedSequence([seed, *(zlib.crc32(tag.encode()) for tag in tags)]))


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _maybe(rng: np.random.Generator, probability: float, words: Words) -> Words:
    return list(words) if rng.random() < probability else []


def _words(*groups: object) -> frozenset[str]:
    """Every word of (nested) tuples, dicts and space-separated strings."""
    found: set[str] = set()
    for group in groups:
        if isinstance(group, str):
            found.update(group.split())
        elif isinstance(group, Mapping):
            found |= _words(*group.keys(), *group.values())
        else:
            found |= _words(*group)
    return frozenset(found)


# ------------------------------------------------------------------------------------------------------ lexical

# dimension -> (one pole's two synonyms, the opposite pole's two synonyms)
ADJECTIVES = {
    "size": (("big", "large"), ("small", "tiny")),
    "heat": (("hot", "boiling"), ("cold", "freezing")),
    "speed": (("fast", "quick"), ("slow", "sluggish")),
    "light": (("bright", "shiny"), ("dark", "dim")),
    "age": (("old", "ancient"), ("new", "modern")),
    "sound": (("loud", "noisy"), ("quiet", "silent")),
    "water": (("wet", "damp"), ("dry", "arid")),
    "dirt": (("clean", "tidy"), ("dirty", "filthy")),
}
PLACES = ("house", "river", "road", "box", "tower", "lake", "garden", "bridge", "wall", "street")


def _lexical(label: int, rng: np.random.Generator) -> tuple[Words, Words]:
    dimension = _pick(rng, sorted(ADJECTIVES))
    pole, word = int(rng.integers(2)), int(rng.integers(2))
    first = ADJECTIVES[dimension][pole][word]
    if label == ENTAILMENT:
        second = ADJECTIVES[dimension][pole][1 - word]
    elif label == CONTRADICTION:
        second = _pick(rng, ADJECTIVES[dimension][1 - pole])
    else:
        other = _pick(rng, [name for name in sorted(ADJECTIVES) if name != dimension])
        second = _pick(rng, ADJECTIVES[other][int(rng.integers(2))])
    place = _pick(rng, PLACES)
    near = _maybe(rng, 0.5, ["near", "the", _pick(rng, [p for p in PLACES if p != place])])
    premise = ["the", place, *near, "is", *_maybe(rng, 0.3, ["very"]), first]
    return premise, ["the", place, "is", *_maybe(rng, 0.3, ["very"]), second]


LEXICAL = Rule(_lexical, _words(ADJECTIVES, PLACES, "the near is very"))

# ---------------------------------------------------------------------------------------------------- hypernymy

ANIMALS = {
    "dog": ("poodle", "beagle", "terrier"),
    "cat": ("tabby", "siamese", "persian"),
    "bird": ("robin", "sparrow", "eagle"),
    "fish": ("trout", "salmon", "carp"),
}
TOP_CATEGORY = "animal"
PET_NAMES = ("rex", "max", "bella", "luna", "kiki", "milo", "nala", "otto")


def _taxonomy(tree: Mapping[str, Sequence[str]], top: str) -> dict[str, str]:
    """Child -> parent over a two-level tree under `top`."""
    parents = {family: top for family in tree}
    parents.update({kind: family for family, kinds in tree.items() for kind in kinds})
    return parents


def _ancestors(category: str, parents: Mapping[str, str]) -> list[str]:
    found = []
    while category in parents:
        category = parents[category]
        found.append(category)
    return found


def _related(label: int, rng: np.random.Generator, parents: Mapping[str, str]) -> tuple[str, str, bool]:
    """(premise category, hypothesis category, whether the hypothesis is about someone else) for `label` over a
    tree of categories: up the tree entails, down it is open, across it contradicts."""
    categories = sorted(parents)  # every category but the top
    if label == ENTAILMENT:
        first = _pick(rng, categories)
        return first, _pick(rng, _ancestors(first, parents)), False
    if label == CONTRADICTION:
        first = _pick(rng, categories)
        above = _ancestors(first, parents)
        disjoint = [c for c in categories if c != first and c not in above and first not in _ancestors(c, parents)]
        return first, _pick(rng, disjoint), False
    if rng.random() < 0.3:  # someone else: nothing follows, whatever the categories
        first = _pick(rng, categories)
        return first, _pick(rng, _ancestors(first, parents)), True
    second = _pick(rng, categories)
    return _pick(rng, _ancestors(second, parents)), second, False


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


_ANIMAL_PARENTS = _taxonomy(ANIMALS, TOP_CATEGORY)


def _hypernymy(label: int, rng: np.random.Generator) -> tuple[Words, Words]:
    first, second, someone_else = _related(label, rng, _ANIMAL_PARENTS)
    name = _pick(rng, PET_NAMES)
    other = _pick(rng, [n for n in PET_NAMES if n != name]) if someone_else else name
    return [name, "is", _article(first), first], [other, "is", _article(second), second]


HYPERNYMY = Rule(_hypernymy, _words(ANIMALS, TOP_CATEGORY, PET_NAMES, "is a an"))

# ----------------------------------------------------------------------------------------------------- negation

PEOPLE = ("boy", "girl", "man", "woman", "farmer", "doctor", "teacher", "pilot")
ACTIVITIES = ("running", "sleeping", "singing", "swimming", "reading", "dancing", "cooking", "painting")
TIMES = ("today", "now", "again")


def _clause(person: str, negated: bool, activity: str) -> Words:
    return ["the", person, "is", *(["not"] if negated else []), activity]


def _negation(label: int, rng: np.random.Generator) -> tuple[Words, Words]:
    person, activity, negated = _pick(rng, PEOPLE), _pick(rng, ACTIVITIES), bool(rng.random() < 0.5)
    premise = [*_maybe(rng, 0.5, [_pick(rng, TIMES)]), *_clause(person, negated, activity)]
    if label == ENTAILMENT:
        return premise, _clause(person, negated, activity)
    if label == CONTRADICTION:
        return premise, _clause(person, not negated, activity)
    if rng.random() < 0.5:  # someone else
        other = _pick(rng, [p for p in PEOPLE if p != person])
        return premise, _clause(other, bool(rng.random() < 0.5), _pick(rng, ACTIVITIES))
    other = _pick(rng, [a for a in ACTIVITIES if a != activity])
    return premise, _clause(person, bool(rng.random() < 0.5), other)


NEGATION = Rule(_negation, _words(PEOPLE, ACTIVITIES, TIMES, "the is not"))

# ----------------------------------------------------------------------------------------------------- quantity

NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
OBJECTS = ("apples", "books", "coins", "cups", "lamps", "boats", "chairs", "pens")
CONTAINERS = (("on", "the", "table"), ("in", "the", "room"), ("in", "the", "box"))
COMPARISONS: dict[str, Callable[[int, int], bool]] = {
    "more than": lambda count, bound: count > bound,
    "fewer than": lambda count, bound: count < bound,
}


def _quantity(label: int, rng: np.random.Generator) -> tuple[Words, Words]:
    thing = _pick(rng, OBJECTS)
    while True:  # rejection sampling: a count, a comparison and a bound whose truth matches the label
        count, bound = int(rng.integers(2, 10)), int(rng.integers(1, 10))
        comparison = _pick(rng, sorted(COMPARISONS))
        if label == NEUTRAL or COMPARISONS[comparison](count, bound) == (label == ENTAILMENT):
            break
    other = _pick(rng, [o for o in OBJECTS if o != thing]) if label == NEUTRAL else thing
    premise = ["there", "are", NUMBERS[count - 1], thing, *_maybe(rng, 0.5, list(_pick(rng, CONTAINERS)))]
    return premise, ["there", "are", *comparison.split(), NUMBERS[bound - 1], other]


QUANTITY = Rule(_quantity, _words(NUMBERS, OBJECTS, CONTAINERS, tuple(COMPARISONS), "there are"))

# ---------------------------------------------------------------------------------------------------- geography

COUNTRIES = {
    "france": ("paris", "lyon", "nice"),
    "spain": ("madrid", "seville", "valencia"),
    "italy": ("rome", "milan", "naples"),
    "germany": ("berlin", "munich", "hamburg"),
    "japan": ("tokyo", "osaka", "kyoto"),
}
# The European countries sit under a third level, so that one place may entail two others (paris: france, europe).
TOP_PLACE, EUROPE = "europe", ("france", "spain", "italy", "germany")
PERSON_NAMES = ("anna", "omar", "lena", "ivan", "sara", "yuki", "paul", "nora")
RESIDENCE_VERBS = ("lives", "works", "studies")
_PLACE_PARENTS = {
    **_taxonomy({country: COUNTRIES[country] for country in EUROPE}, TOP_PLACE),
    **dict.fromkeys(COUNTRIES["japan"], "japan"),
}


def _geography(label: int, rng: np.random.Generator) -> tuple[Words, Words]:
    first, second, someone_else = _related(label, rng, _PLACE_PARENTS)
    name, verb = _pick(rng, PERSON_NAMES), _pick(rng, RESIDENCE_VERBS)
    other = _pick(rng, [n for n in PERSON_NAMES if n != name]) if someone_else else name
    return [name, verb, "in", first], [other, verb, "in", second]


GEOGRAPHY = Rule(_geography, _words(COUNTRIES, TOP_PLACE, PERSON_NAMES, RESIDENCE_VERBS, "in"))

RULES: dict[str, Rule] = {
    "lexical": LEXICAL,
    "hypernymy": HYPERNYMY,
    "negation": NEGATION,
    "quantity": QUANTITY,
    "geography": GEOGRAPHY,
}


def vocabulary() -> list[str]:
    """Every word any rule writes, sorted: the tokenizer's word vocabulary."""
    return sorted(set().union(*(rule.words for rule in RULES.values())))


# ------------------------------------------------------------------------------------------------------- drawing


def _rule(name: str) -> Rule:
    if name not in RULES:
        raise DataError(name, f"unknown rule; known: {sorted(RULES)}")
    return RULES[name]


def _balanced_labels(rng: np.random.Generator, count: int, classes: Sequence[int]) -> np.ndarray:
    return np.asarray(classes, dtype=np.int64)[rng.permutation(np.arange(count) % len(classes))]


def _draw_split(rule: Rule, count: int, classes: Sequence[int], rng: np.random.Generator) -> PairSplit:
    labels = _balanced_labels(rng, count, classes)
    pairs = [rule.draw(int(label), rng) for label in labels]
    return PairSplit([" ".join(p) for p, _ in pairs], [" ".join(h) for _, h in pairs], labels)


def generate_task(rule: str, sizes: Mapping[str, int], masked: Sequence[int], seed: int) -> dict[str, PairSplit]:
    """Split name -> pairs of `rule`, labels balanced over the classes that are not `masked`."""
    classes = [label for label in range(len(CLASS_NAMES)) if label not in set(masked)]
    if len(classes) < 2:
        raise DataError(rule, f"masked classes {list(masked)} leave fewer than two of {list(CLASS_NAMES)}")
    return {split: _draw_split(_rule(rule), count, classes, _rng(seed, rule, split)) for split, count in sizes.items()}


def generate_mixture(rules: Sequence[str], count: int, seed: int) -> PairSplit:
    """The backbone's pre-training pairs: every pair from one of `rules` (chosen at random), labels balanced over the
    three classes, from a stream of its own (not any task's split, and neutral even where a task masks it)."""
    chosen = [_rule(name) for name in sorted(set(rules))]
    if not chosen:
        raise DataError("pre-training mixture", "needs at least one rule")
    rng = _rng(seed, "mixture", *sorted(set(rules)))
    labels = _balanced_labels(rng, count, range(len(CLASS_NAMES)))
    pairs = [_pick(rng, chosen).draw(int(label), rng) for label in labels]
    return PairSplit([" ".join(p) for p, _ in pairs], [" ".join(h) for _, h in pairs], labels)
