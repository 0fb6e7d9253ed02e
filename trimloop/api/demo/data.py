"""The demo's own inputs: reviews, support tickets and order notes, written for trimloop and
generated deterministically from phrase banks (so every run sees the same few hundred inputs).
Each input comes with its correct answer, which the demo logs as reviewer feedback."""

from __future__ import annotations

import json
import random

SUBJECTS = ["The film", "This movie", "The sequel", "The documentary", "The new series", "The musical",
            "The thriller", "The animated feature", "This comedy", "The drama"]
POSITIVE = ["was a delight from start to finish", "made me laugh out loud", "is warm, funny and smart",
            "has a wonderful cast", "is the best thing I saw this year", "kept me gripped all the way",
            "left the whole audience smiling", "is beautifully shot and moving", "is a joy to watch",
            "deserves every award it gets", "is clever and full of heart", "was worth every penny"]
NEGATIVE = ["was a boring mess", "wasted two hours of my life", "is dull and far too long",
            "has a plot that makes no sense", "is the worst film of the year", "put me to sleep",
            "is badly acted and badly written", "was a tedious slog", "left me angry and bored",
            "is a cheap, lazy sequel", "fell completely flat", "was painful to sit through"]
CLOSERS_POS = ["Highly recommended.", "I would see it again.", "Go see it.", "", "Loved it."]
CLOSERS_NEG = ["Avoid it.", "Save your money.", "Not recommended.", "", "What a letdown."]

TICKETS = {
    "billing": ["I was charged twice for my subscription this month", "my invoice shows the wrong amount",
                "please refund the payment you took yesterday", "why did my card get billed after I cancelled",
                "the price on my receipt is higher than advertised", "I need a copy of last month's invoice"],
    "bug": ["the app crashes every time I open the settings page", "the export button does nothing",
            "I get an error 500 when I upload a photo", "the page freezes after I log in",
            "search results are empty even for exact names", "the dark mode makes the text invisible"],
    "account": ["I forgot my password and the reset email never comes", "how do I change the email on my account",
                "please delete my account and my data", "I cannot log in after changing my phone",
                "I want to add a second user to my account", "my username is shown wrong on my profile"],
    "shipping": ["my parcel has not arrived after two weeks", "the tracking number does not work",
                 "the box arrived damaged", "can you ship to a different address",
                 "the courier left my order at the wrong house", "when will my order be dispatched"],
}
OPENERS = ["Hi,", "Hello team,", "Good morning,", "Hey,", ""]
ENDINGS = ["Thanks.", "Please help.", "Regards, Sam", "This is urgent.", ""]

NAMES = ["Maria", "Tom", "Aisha", "Kenji", "Lucia", "Omar", "Greta", "Ravi", "Chloe", "Diego", "Hana", "Pavel"]
ITEMS = ["desk lamps", "notebooks", "chairs", "coffee mugs", "umbrellas", "backpacks", "candles", "towels"]
CITIES = ["Lisbon", "Osaka", "Nairobi", "Toronto", "Oslo", "Lima", "Dublin", "Hanoi"]
ORDER_FORMS = [
    "{name} ordered {qty} {item} to be sent to {city}.",
    "Please send {qty} {item} to {name} in {city}.",
    "New order from {name}: {qty} {item}, delivery to {city}.",
    "{name} in {city} wants {qty} {item}.",
]


def reviews(n: int, seed: int = 1) -> list[tuple[dict[str, str], str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        phrase = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
        closer = rng.choice(CLOSERS_POS if label == "positive" else CLOSERS_NEG)
        out.append(({"review": f"{rng.choice(SUBJECTS)} {phrase}. {closer}".strip()}, label))
    return out


def tickets(n: int, seed: int = 2) -> list[tuple[dict[str, str], str]]:
    rng = random.Random(seed)
    labels = sorted(TICKETS)
    out = []
    for i in range(n):
        label = labels[i % len(labels)]
        text = " ".join(p for p in (rng.choice(OPENERS), rng.choice(TICKETS[label]) + ".", rng.choice(ENDINGS)) if p)
        out.append(({"ticket": text}, label))
    return out


def orders(n: int, seed: int = 3) -> list[tuple[dict[str, str], str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        fields = {"name": rng.choice(NAMES), "item": rng.choice(ITEMS), "quantity": rng.randint(2, 12),
                  "city": rng.choice(CITIES)}
        text = rng.choice(ORDER_FORMS).format(qty=fields["quantity"], **fields)
        out.append(({"note": text}, json.dumps(fields)))
    return out
