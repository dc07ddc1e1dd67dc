"""Seeded generated task suite: four compositional generators in the four benchmark formats.

Every item is built from the word lists and templates below (no real dataset text) and
carries the factors that built it as flat ``meta`` keys, listed in ``meta["factors"]``,
so that failures can be checked against known causes. Negation, misleading distractors
and (where present) lexical overlap of the wrong answer make items harder on purpose; the
``P_*`` rates below set how often, and were chosen so that SmolLM2-135M-Instruct, scored by
summed continuation log-likelihood, lands well inside 30-85% on every task. Gold positions
are balanced by construction.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Callable
from typing import Any, NamedTuple

from wif_core.errors import InputError
from wif_core.tasks.base import TASKS, TaskItem, item_key
from wif_core.tasks.templates import render_context

GENERATED_TASKS = ("gen-physical", "gen-passage", "gen-coref", "gen-social")

# (raw text fields, choices in option order, factors); the gold index is given to the builder
Built = tuple[dict[str, str], list[str], dict[str, Any]]

# how often the factors that make items harder are switched on (calibrated on SmolLM2-135M-Instruct)
P_NEGATION, P_DISTRACTOR, P_OVERLAP = 0.25, 0.25, 0.25


class Hard(NamedTuple):
    """The difficulty factors of one item, drawn before its content so retries keep them."""

    negation: bool
    distractor: bool
    overlap: bool


NAMES = (
    "Anna", "Maria", "Laura", "Sofia", "Emma", "Clara", "Nora", "Julia",
    "James", "Peter", "Lucas", "Daniel", "Oliver", "Henry", "Samuel", "Thomas",
)  # fmt: skip


def _coin(rng: random.Random, p: float) -> bool:
    return rng.random() < p


def _place(rng: random.Random, gold_text: str, wrong: list[str], gold: int) -> list[str]:
    """The wrong answers in random order with the gold answer inserted at index ``gold``."""
    wrong = list(wrong)
    rng.shuffle(wrong)
    return [*wrong[:gold], gold_text, *wrong[gold:]]


def _magnitude(x: float) -> str:
    return "small" if x < 10 else "medium" if x < 100 else "large"


def _gold_shortest(choices: list[str], gold: int) -> bool:
    return all(len(choices[gold]) < len(c) for i, c in enumerate(choices) if i != gold)


# --- gen-physical (two_choice, PIQA-like) -------------------------------------------------

# (goal verb phrase, paraphrase of it, tools that work, tools that do not)
_TOOL_GOALS = (
    ("slice a loaf of bread", "cut the bread into pieces", ("a bread knife", "a sharp knife"),
     ("a soup spoon", "a paper towel", "a rubber glove")),
    ("dry your wet hands", "get the water off your hands", ("a clean towel", "a hand dryer"),
     ("a bucket of water", "a wet sponge", "a bar of soap")),
    ("tighten a loose screw", "make the screw secure", ("a screwdriver",),
     ("a cotton ball", "a slice of cheese", "a feather")),
    ("open a can of beans", "get the lid off the can", ("a can opener",),
     ("a cotton ball", "a pillow", "a paper straw")),
    ("cut a sheet of paper in half", "split the paper into two parts", ("a pair of scissors",),
     ("a soup spoon", "an eraser", "a glass of milk")),
    ("sweep dust off the floor", "clean the dust from the floor", ("a broom",),
     ("a fork", "a candle", "a stapler")),
    ("carry soup to the table", "bring the soup over to eat", ("a deep bowl",),
     ("a colander", "a paper bag", "a sieve")),
    ("light a candle", "start a flame on the wick", ("a match", "a lighter"),
     ("an ice cube", "a wet cloth", "a glass of water")),
    ("keep milk cold", "stop the milk from getting warm", ("a refrigerator",),
     ("an oven", "a toaster", "a sunny window")),
    ("stir a cup of coffee", "mix the sugar into your drink", ("a teaspoon",),
     ("a sponge", "a shoelace", "a paper napkin")),
    ("measure the length of a table", "find out how long the table is", ("a tape measure", "a ruler"),
     ("a thermometer", "a clock", "a pillow")),
    ("write a short note", "put a message on paper", ("a pen", "a pencil"),
     ("a fork", "a sponge", "an ice cube")),
    ("peel a potato", "remove the skin of the vegetable", ("a vegetable peeler", "a small knife"),
     ("a pillow", "a hairbrush", "a rubber duck")),
    ("drive a nail into wood", "push the nail into the board", ("a hammer",),
     ("a banana", "a sponge", "a sock")),
    ("clean a dirty window", "make the glass clear again", ("a cloth and glass cleaner",),
     ("a handful of mud", "a jar of honey", "a stick of butter")),
    ("cool a hot drink quickly", "make the drink less hot", ("a few ice cubes",),
     ("a hot stove", "a lit match", "a heating pad")),
    ("see in a dark room", "find your way when it is dark", ("a flashlight",),
     ("a pair of sunglasses", "a blindfold", "a paper bag")),
    ("protect your head while cycling", "keep your head safe on a bike", ("a helmet",),
     ("a paper hat", "a silk scarf", "a pair of gloves")),
    ("water a garden", "give the plants something to drink", ("a garden hose", "a watering can"),
     ("a sieve", "a hair dryer", "a paper towel")),
    ("wake up on time", "get out of bed early", ("an alarm clock",),
     ("a soft pillow", "a warm blanket", "a sleeping pill")),
    ("fix a torn shirt", "mend the hole in the fabric", ("a needle and thread",),
     ("a hammer", "a soup spoon", "a candle")),
    ("remove snow from a driveway", "clear the snow away", ("a snow shovel",),
     ("a teaspoon", "a hair dryer", "a paintbrush")),
    ("brush your teeth", "clean your teeth", ("a toothbrush",),
     ("a hairbrush", "a shoe brush", "a fork")),
    ("hold papers together", "keep the sheets in one stack", ("a paper clip", "a stapler"),
     ("a glass of water", "a feather", "a candle")),
)  # fmt: skip
_TOOL_QUESTIONS = (
    ("tool/how", "How do you {vp}?"),
    ("tool/can", "How can I {vp}?"),
    ("tool/best", "What is the best way to {vp}?"),
    ("tool/need", "I need to {vp}. What should I do?"),
    ("tool/what", "What should you use to {vp}?"),
)
# (goal verb phrase, question, answer with {n} and {u}, numbers, sensible unit, absurd unit)
_QUANTITIES = (
    ("boil an egg", "How long should you boil an egg?", "Boil it for {n} {u}.", (4, 6, 8, 10),
     "minutes", "weeks"),
    ("bake a loaf of bread", "How long should you bake a loaf of bread?", "Bake it for {n} {u}.",
     (30, 40, 45, 50), "minutes", "seconds"),
    ("brush your teeth", "How long should you brush your teeth?", "Brush them for {n} {u}.", (2, 3),
     "minutes", "hours"),
    ("let wall paint dry", "How long should you let wall paint dry?", "Let it dry for {n} {u}.",
     (4, 6, 12, 24), "hours", "seconds"),
    ("cook rice", "How long should you cook rice?", "Cook it for {n} {u}.", (15, 18, 20),
     "minutes", "days"),
    ("fill a bathtub", "How much water does it take to fill a bathtub?", "Use about {n} {u} of water.",
     (100, 150, 200), "liters", "drops"),
    ("water a small houseplant", "How much water does a small houseplant need?",
     "Give it about {n} {u} of water.", (100, 200, 250), "milliliters", "barrels"),
    ("walk a dog", "How long should you walk a dog each day?", "Walk it for {n} {u}.", (20, 30, 45),
     "minutes", "months"),
    ("charge a phone", "How long does it take to charge a phone?", "Charge it for {n} {u}.", (1, 2, 3),
     "hours", "years"),
    ("steep a cup of tea", "How long should you steep a cup of tea?", "Steep it for {n} {u}.",
     (3, 4, 5), "minutes", "days"),
    ("drive across a small town", "How long does it take to drive across a small town?",
     "It takes about {n} {u}.", (10, 15, 20), "minutes", "weeks"),
    ("run a marathon", "How far does a marathon runner run?", "They run about {n} {u}.", (42,),
     "kilometers", "meters"),
)  # fmt: skip
_TOOL_DISTRACTORS = (
    "Your friend says {x} works best.",
    "You notice {x} on the table.",
    "A neighbour suggests {x}.",
)
_QTY_DISTRACTORS = ("Your friend says {x} is about right.", "Someone online suggested {x}.")


def _physical(rng: random.Random, gold: int, hard: Hard) -> Built:
    """Affordance: which tool, or which amount, achieves a goal; negation asks for the one that does not."""
    negation, distractor = hard.negation, hard.distractor
    if _coin(rng, 0.7):
        vp, para, goods, bads = rng.choice(_TOOL_GOALS)
        good, bad = rng.choice(goods), rng.choice(bads)
        overlap, magnitude = hard.overlap, "none"
        template, question = rng.choice(_TOOL_QUESTIONS)
        right, wrong = (bad, good) if negation else (good, bad)
        right_text = f"Use {right} to {para}."
        wrong_text = f"Use {wrong} to {vp if overlap else para}."
        distractors: tuple[str, ...]
        mention, distractors = wrong, _TOOL_DISTRACTORS
    else:
        vp, question, answer, numbers, good_u, bad_u = rng.choice(_QUANTITIES)
        n = rng.choice(numbers)
        overlap, magnitude, template = False, _magnitude(n), "qty/ask"
        if n == 1:  # "1 hour", not "1 hours"
            good_u, bad_u = good_u.removesuffix("s"), bad_u.removesuffix("s")
        units = (bad_u, good_u) if negation else (good_u, bad_u)
        right_text, wrong_text = (answer.format(n=n, u=u) for u in units)
        mention, distractors = f"{n} {units[1]}", _QTY_DISTRACTORS
    if negation:
        question = f"Which of these is not a good way to {vp}?"
        template = template.split("/")[0] + "/neg"
    goal = question.format(vp=vp)
    if distractor:
        goal = f"{rng.choice(distractors).format(x=mention)} {goal}"
    choices = _place(rng, right_text, [wrong_text], gold)
    factors = {
        "template": template,
        "negation": negation,
        "distractor": distractor,
        "lexical_overlap": overlap,
        "magnitude": magnitude,
        "gold_shortest": _gold_shortest(choices, gold),
    }
    return {"goal": goal}, choices, factors


# --- gen-passage (yes_no, BoolQ-like) ----------------------------------------------------

_PLACE_NAMES = (
    "Varden", "Oskel", "Belvar", "Corrow", "Marrick", "Dunholt", "Felbrook", "Ashcombe",
    "Quillon", "Tarsby", "Elmrick", "Pollard", "Rennick", "Saltmere", "Wexley", "Hollin",
)  # fmt: skip
_KINDS = ("bridge", "tower", "library", "lighthouse", "museum", "market hall", "mill", "chapel", "station")
_INTROS = ("{S} is a well-known landmark.", "{S} was restored a few years ago.", "Many tourists visit {s}.")
_TOWNS = ("Ellmoor", "Rastwick", "Penhallow", "Stoneby", "Kirrin", "Alderford")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# attribute: (values or None for numeric, statement, verbatim question, paraphrased question)
_ATTRS: dict[str, tuple[tuple[str, ...] | None, str, str, str]] = {
    "material": (("stone", "wood", "brick", "steel", "glass"), "{S} is made of {v}.",
                 "is {s} {neg}made of {v}", "is {s} {neg}built from {v}"),
    "colour": (("red", "white", "blue", "green", "yellow", "grey"), "{S} is painted {v}.",
               "is {s} {neg}painted {v}", "is {s} {neg}{v} in colour"),
    "town": (_TOWNS, "{S} stands in the town of {v}.", "does {s} {neg}stand in the town of {v}",
             "is {s} {neg}located in {v}"),
    "day": (_DAYS, "{S} is only open on {v}s.", "is {s} {neg}open on {v}s", "can you {neg}visit {s} on {v}s"),
    "height": (None, "{S} is {v} meters tall.", "is {s} {neg}taller than {v} meters",
               "is {s} {neg}more than {v} meters high"),
    "visitors": (None, "{S} gets about {v} visitors a day.", "does {s} {neg}get more than {v} visitors a day",
                 "does {s} {neg}have more than {v} daily visitors"),
}  # fmt: skip
_NUMBER_RANGES = {"small": (3, 9), "medium": (12, 95), "large": (120, 950)}


def _numeric_pair(rng: random.Random, value: int, above: bool) -> int:
    """A threshold that ``value`` is above (or below) by a clear margin."""
    factor = rng.uniform(0.4, 0.75) if above else rng.uniform(1.35, 2.5)
    threshold = max(1, round(value * factor))
    if threshold == value:
        threshold = value - 1 if above else value + 1
    return threshold


def _statement(attr: str, subject: str, value: Any) -> str:
    return _ATTRS[attr][1].format(S=subject, v=value)


def _passage(rng: random.Random, gold: int, hard: Hard) -> Built:
    """Passage QA on a fictional landmark; negation flips the question, a distractor describes a neighbour."""
    negation, distractor, overlap = hard
    truth = (gold == 1) != negation  # is the un-negated statement true of the landmark?
    name, kind = rng.choice(_PLACE_NAMES), rng.choice(_KINDS)
    subject = f"the {name} {kind}"
    attr = rng.choice(list(_ATTRS))
    values, _, q_verbatim, q_para = _ATTRS[attr]
    stated: int | str
    asked: int | str
    other: int | str
    if values is None:
        magnitude = rng.choice(list(_NUMBER_RANGES))
        stated = rng.randint(*_NUMBER_RANGES[magnitude])
        asked = _numeric_pair(rng, stated, truth)
        other = round(asked * rng.uniform(1.35, 2.5)) if not truth else max(1, round(asked * 0.6))
    else:
        magnitude = "none"
        stated = rng.choice(values)
        asked = stated if truth else rng.choice([v for v in values if v != stated])
        other = asked if not truth else rng.choice([v for v in values if v != asked])
    facts: list[tuple[str, Any, bool]] = [(attr, stated, False)]  # (attribute, value, about the neighbour)
    for filler in rng.sample([a for a in _ATTRS if a != attr], rng.randint(0, 3)):
        vals = _ATTRS[filler][0]
        facts.append((filler, rng.choice(vals) if vals else rng.randint(12, 400), False))
    if distractor:
        facts.append((attr, other, True))
    rng.shuffle(facts)
    neighbour = f"The nearby {rng.choice([p for p in _PLACE_NAMES if p != name])} {rng.choice(_KINDS)}"
    sentences, after_neighbour = [], False
    for a, value, about_neighbour in facts:
        # "It" right after the neighbour's sentence would be ambiguous: name the landmark again
        own = f"The {name} {kind}" if after_neighbour else "It"
        sentences.append(_statement(a, neighbour if about_neighbour else own, value))
        after_neighbour = about_neighbour
    intro = rng.choice(_INTROS).format(S=subject[0].upper() + subject[1:], s=subject)
    passage = " ".join([intro, *sentences])
    question = (q_verbatim if overlap else q_para).format(s=subject, neg="not " if negation else "", v=asked)
    factors = {
        "template": attr,
        "negation": negation,
        "distractor": distractor,
        "lexical_overlap": overlap,
        "magnitude": magnitude,
        "passage_len": 1 + len(facts),
    }
    return {"passage": passage, "question": question}, ["no", "yes"], factors


# --- gen-coref (fill_blank, WinoGrande-like) ---------------------------------------------

# (template id, entity kind, frame with {A} {B} {c} and the blank, trait of A, antonym of B, (A, B) pairs)
_COREF_FRAMES = (
    ("teach", "person", "the {A} taught the {B} {c} the _ was", "experienced", "inexperienced",
     (("professor", "student"), ("veteran", "rookie"), ("master", "apprentice"), ("coach", "beginner"),
      ("grandmother", "toddler"))),
    ("pay", "person", "the {A} paid for the {B}'s meal {c} the _ was", "rich", "poor",
     (("millionaire", "beggar"), ("banker", "student"), ("king", "peasant"), ("duke", "servant"))),
    ("scare", "animal", "the {A} scared the {B} {c} the _ was", "fierce", "timid",
     (("tiger", "rabbit"), ("wolf", "lamb"), ("bulldog", "kitten"), ("shark", "minnow"), ("bear", "deer"))),
    ("race", "animal", "the {A} beat the {B} in the race {c} the _ was", "fast", "slow",
     (("cheetah", "turtle"), ("horse", "tortoise"), ("greyhound", "sloth"), ("falcon", "slug"))),
    ("step", "animal", "the {A} stepped over the {B} {c} the _ was", "huge", "tiny",
     (("elephant", "mouse"), ("giraffe", "ant"), ("bear", "ladybug"))),
    ("sink", "object", "the {A} sank but the {B} floated {c} the _ was", "heavy", "light",
     (("rock", "feather"), ("anvil", "cork"), ("brick", "leaf"), ("boulder", "twig"))),
    ("break", "object", "the {A} broke but the {B} did not {c} the _ was", "fragile", "sturdy",
     (("glass", "brick"), ("vase", "anvil"), ("egg", "rock"), ("porcelain cup", "iron pot"),
      ("wine glass", "oak table"))),
    ("burn", "object", "the {A} burned but the {B} did not {c} the _ was", "flammable", "fireproof",
     (("paper", "brick"), ("cardboard", "steel pan"), ("wooden spoon", "metal spoon"))),
    ("light", "object", "the {A} lit up the {B} {c} the _ was", "bright", "dark",
     (("candle", "cave"), ("moon", "forest"), ("lantern", "cellar"), ("torch", "basement"), ("sun", "valley"),
      ("lamp", "attic"))),
    ("fit", "object", "the {A} did not fit in the {B} {c} the _ was", "huge", "tiny",
     (("watermelon", "cup"), ("mattress", "drawer"))),
)  # fmt: skip
_OPENERS = ("", "Yesterday, ", "Last week, ", "That morning, ")
_CONNECTIVES = ("because", "since")
_COREF_DISTRACTORS = (
    "Some people think the {w} is {p}.",
    "Someone said the {w} was {p}.",
    "A sign claimed the {w} was {p}.",
)


def _coref(rng: random.Random, gold: int, hard: Hard) -> Built:
    """Twin-style coreference; negating the trait swaps the referent, a distractor pins it on the other."""
    negation, distractor = hard.negation, hard.distractor
    role = rng.choice(("first", "second"))
    tid, kind, frame, trait_a, trait_b, pairs = rng.choice(_COREF_FRAMES)
    a, b = rng.choice(pairs)
    trait = trait_a if (role == "first") != negation else trait_b
    phrase = ("not " if negation else "") + trait
    answer, wrong = (a, b) if role == "first" else (b, a)
    opener = rng.choice(_OPENERS)
    sentence = f"{opener}{frame.format(A=a, B=b, c=rng.choice(_CONNECTIVES))} {phrase}."
    sentence = sentence[0].upper() + sentence[1:]
    if distractor:
        sentence = f"{rng.choice(_COREF_DISTRACTORS).format(w=wrong, p=phrase)} {sentence}"
    factors = {
        "template": tid,
        "entity_kind": kind,
        "answer_role": role,
        "negation": negation,
        "distractor": distractor,
    }
    return {"sentence": sentence}, _place(rng, answer, [wrong], gold), factors


# --- gen-social (three_choice, Social IQa-like) ------------------------------------------

# (event id, event, negated event, {feel,trait,next} x {event, negated event})
_EVENTS = (
    ("gift", "{X} gave {Y} a present on {Y}'s birthday.", "{X} did not give {Y} a present on {Y}'s birthday.",
     ("happy", "disappointed"), ("generous", "thoughtless"), ("hug {X}", "ask {X} why")),
    ("boxes", "{X} helped {Y} carry the heavy boxes.", "{X} did not help {Y} carry the heavy boxes.",
     ("grateful", "annoyed"), ("helpful", "unhelpful"), ("thank {X}", "complain about {X}")),
    ("name", "{X} remembered {Y}'s name at the party.", "{X} did not remember {Y}'s name at the party.",
     ("happy", "hurt"), ("polite", "forgetful"), ("chat with {X}", "walk away from {X}")),
    ("wedding", "{X} invited {Y} to the wedding.", "{X} did not invite {Y} to the wedding.",
     ("happy", "left out"), ("friendly", "unfriendly"), ("celebrate with {X}", "stop talking to {X}")),
    ("secret", "{X} kept {Y}'s secret.", "{X} did not keep {Y}'s secret.",
     ("safe", "betrayed"), ("loyal", "untrustworthy"), ("hug {X}", "confront {X}")),
    ("book", "{X} returned the book {Y} had lent them.", "{X} did not return the book {Y} had lent them.",
     ("glad", "frustrated"), ("responsible", "careless"), ("thank {X}", "ask {X} for the book")),
    ("painting", "{X} praised {Y}'s painting in front of everyone.",
     "{X} did not praise {Y}'s painting in front of everyone.",
     ("proud", "humiliated"), ("kind", "spiteful"), ("thank {X}", "walk away from {X}")),
    ("meeting", "{X} showed up on time to meet {Y}.", "{X} did not show up to meet {Y}.",
     ("glad", "stood up"), ("reliable", "flaky"), ("greet {X}", "complain about {X}")),
    ("lunch", "{X} shared lunch with {Y}, who had forgotten theirs.",
     "{X} did not share lunch with {Y}, who had forgotten theirs.",
     ("thankful", "let down"), ("generous", "stingy"), ("thank {X}", "complain about {X}")),
    ("job", "{X} congratulated {Y} on the new job.", "{X} did not congratulate {Y} on the new job.",
     ("proud", "overlooked"), ("thoughtful", "indifferent"), ("celebrate with {X}", "stop talking to {X}")),
    ("money", "{X} paid back the money {Y} had lent them.",
     "{X} did not pay back the money {Y} had lent them.",
     ("relieved", "cheated"), ("honest", "dishonest"), ("thank {X}", "ask {X} for the money")),
    ("vase", "{X} told {Y} the truth about the broken vase.",
     "{X} did not tell {Y} the truth about the broken vase.",
     ("grateful", "deceived"), ("honest", "deceitful"), ("forgive {X}", "confront {X}")),
)  # fmt: skip
# question type: (question templates, neutral off-topic answers, distractor sentence about {Z})
_SOCIAL_QUESTIONS = {
    "feel": (("How would {Y} feel as a result?", "How would {Y} likely feel?"),
             ("seasick", "sunburned", "jet-lagged", "frostbitten"), "Earlier that day, {Z} had felt {w}."),
    "trait": (("How would you describe {X}?", "What does this show about {X}?"),
              ("left-handed", "short-sighted", "freckled", "red-haired"), "Everyone knows {Z} is {w}."),
    "next": (("What will {Y} want to do next?", "What will {Y} probably do next?"),
             ("repaint the garage", "tune the piano", "polish the silverware", "water the cactus"),
             "{Z} was planning to {w}."),
}  # fmt: skip


def _social(rng: random.Random, gold: int, hard: Hard) -> Built:
    """Social reaction to an event; negating the event flips the fitting answer to the distractor's one."""
    negation, distractor = hard.negation, hard.distractor
    eid, event, neg_event, *answers = rng.choice(_EVENTS)
    qtype = rng.choice(list(_SOCIAL_QUESTIONS))
    questions, neutral, distract = _SOCIAL_QUESTIONS[qtype]
    x, y, z = rng.sample(NAMES, 3)
    pair = answers[list(_SOCIAL_QUESTIONS).index(qtype)]
    right, flipped = (pair[1], pair[0]) if negation else pair
    right, flipped = right.format(X=x), flipped.format(X=x)
    context = (neg_event if negation else event).format(X=x, Y=y)
    if distractor:
        extra = distract.format(Z=z, w=flipped)
        context = f"{extra} {context}" if _coin(rng, 0.5) else f"{context} {extra}"
    qi = rng.randrange(len(questions))
    question = questions[qi].format(X=x, Y=y)
    choices = _place(rng, right, [flipped, rng.choice(neutral)], gold)
    factors = {
        "template": f"{eid}/{qtype}{qi}",
        "question_type": qtype,
        "negation": negation,
        "distractor": distractor,
        "gold_shortest": _gold_shortest(choices, gold),
    }
    return {"context": context, "question": question}, choices, factors


_RETRIES = 50
_BUILDERS: dict[str, Callable[[random.Random, int, Hard], Built]] = {
    "gen-physical": _physical,
    "gen-passage": _passage,
    "gen-coref": _coref,
    "gen-social": _social,
}


def generate(task: str, n: int = 400, seed: int = 0) -> list[TaskItem]:
    """``n`` distinct items of a generated task, fully determined by ``(task, n, seed)``.

    Items are distinct by ``item_key``; gold positions are balanced exactly (shuffled
    ``i mod k``). The first ``m`` items of a call depend on ``n`` through that balancing,
    so ask for the size you need rather than slicing a larger call if balance matters.
    Raises ``InputError`` for an unknown task, a negative ``n``, or an ``n`` beyond what
    the generator can make distinct.
    """
    if task not in _BUILDERS:
        raise InputError(f"unknown generated task '{task}'; use one of: {', '.join(GENERATED_TASKS)}")
    try:
        count = operator.index(n)
    except TypeError:
        count = -1
    if count < 0 or isinstance(n, bool):
        raise InputError(f"n={n!r} is not a valid item count; use a whole number >= 0")
    spec, build = TASKS[task], _BUILDERS[task]
    rng = random.Random(f"{task}/{seed}")
    positions = [i % spec.n_choices for i in range(count)]
    rng.shuffle(positions)
    items: list[TaskItem] = []
    seen: set[str] = set()
    misses = 0
    while len(items) < count:
        gold = positions[len(items)]
        hard = Hard(_coin(rng, P_NEGATION), _coin(rng, P_DISTRACTOR), _coin(rng, P_OVERLAP))
        for _ in range(_RETRIES):  # redraw the content, keeping the factors, until the item is new
            fields, choices, factors = build(rng, gold, hard)
            meta: dict[str, Any] = {**fields, **factors, "gold_position": gold}
            meta["factors"] = [*factors, "gold_position"]
            meta["generator"] = task
            context = render_context(spec.format, fields)
            item = TaskItem(
                item_id=f"{task}-{len(items):04d}",
                task=task,
                context=context,
                choices=tuple(choices),
                gold=gold,
                meta=meta,
            )
            key = item_key(item)
            if key not in seen:
                seen.add(key)
                items.append(item)
                break
        else:
            misses += 1
            if misses > _RETRIES:
                raise InputError(f"{task} made only {len(items)} distinct items of the {count} asked; ask for fewer")
    return items
