"""Write the small English corpus that `builtin:skipgram` and `builtin:cbow` train on: runtime/data/corpus.txt.

    python tools/make_corpus.py [--out PATH]

Simple sentences from a fixed grammar (seeded, so the file is the same on every machine), about 150 KB,
one sentence per line, lower case, words separated by spaces. Words of one kind share their contexts
(animals run and sleep, food is eaten and bought, kings and queens rule), and the male and female words
come in pairs used the same way (king/queen, he/she, his/her), so after training the nearest neighbours
of a word are words of its kind and king − man + woman lands near queen. Written by the project (no
third-party text); tests/test_builtin_text.py checks the shipped file equals this script's output.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ANIMALS = ["cat", "dog", "horse", "cow", "sheep", "goat", "pig", "rabbit", "mouse", "fox", "wolf", "bear",
           "duck", "hen"]
ANIMAL_VERBS = ["runs", "sleeps", "hides", "plays", "rests", "waits", "jumps"]
NATURE = ["forest", "field", "garden", "meadow", "river", "hill", "farm"]
BUILDINGS = ["house", "castle", "school", "market", "church", "inn", "mill", "tower"]
FOOD = ["bread", "cheese", "apple", "pear", "soup", "rice", "fish", "cake", "milk", "tea", "butter", "honey"]
COLOURS = ["red", "blue", "green", "yellow", "white", "black", "brown", "grey"]
NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEATHER = ["rainy", "sunny", "windy", "cold", "warm", "cloudy"]
PAIRS = [("king", "queen"), ("prince", "princess"), ("man", "woman"), ("boy", "girl"), ("father", "mother"),
         ("son", "daughter"), ("brother", "sister"), ("husband", "wife"), ("uncle", "aunt")]
ROYAL = {"king", "queen", "prince", "princess"}
PEOPLE_VERBS = ["walks", "talks", "reads", "writes", "sings", "works", "waits"]
THINGS = ["book", "letter", "song", "story", "poem"]


def sentence(r: random.Random) -> str:
    pick = r.choice
    kind = r.randrange(10)
    male, female = pick(PAIRS)
    who, pron, poss = (male, "he", "his") if r.random() < 0.5 else (female, "she", "her")
    if kind == 0:
        return f"the {pick(COLOURS)} {pick(ANIMALS)} {pick(ANIMAL_VERBS)} in the {pick(NATURE)}"
    if kind == 1:
        return f"the {who} eats {pick(FOOD)} and {pick(FOOD)} at the {pick(BUILDINGS)}"
    if kind == 2:
        return f"the {who} {pick(PEOPLE_VERBS)} to the {pick(BUILDINGS)} and {pron} {pick(PEOPLE_VERBS)} home"
    if kind == 3:
        if who in ROYAL:
            return f"the {who} rules the land from {poss} castle and {pron} is wise"
        return f"the {who} rides {poss} horse to the {pick(BUILDINGS)}"
    if kind == 4:
        return f"on {pick(DAYS)} it is {pick(WEATHER)} and the {who} stays in {poss} {pick(BUILDINGS)}"
    if kind == 5:
        return f"the farmer has {pick(NUMBERS)} {pick(ANIMALS)} and {pick(NUMBERS)} {pick(ANIMALS)}"
    if kind == 6:
        return f"{pron} buys {pick(COLOURS)} {pick(FOOD)} at the market on {pick(DAYS)}"
    if kind == 7:
        return f"the {who} {pick(['reads', 'writes'])} a {pick(THINGS)} about a {pick(ANIMALS)}"
    if kind == 8:
        a = r.randrange(len(PAIRS))
        m, f = PAIRS[a]
        return f"the {m} is a man and the {f} is a woman" if m not in ("man", "woman") else \
            "a man and a woman walk to the market"
    return f"the {pick(ANIMALS)} eats {pick(FOOD)} near the {pick(NATURE)} when it is {pick(WEATHER)}"


def corpus(sentences: int = 3600, seed: int = 2026) -> str:
    r = random.Random(seed)
    return "".join(sentence(r) + "\n" for _ in range(sentences))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "runtime" / "data" / "corpus.txt"))
    args = p.parse_args(argv)
    text = corpus()
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out}: {len(text.splitlines())} sentences, {len(text.split())} words, {len(text):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
