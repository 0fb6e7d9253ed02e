"""The sentiment task that tests and benches optimize: a verbose few-shot prompt, reviews built
from clear words, and a fake model that labels them right (`classify` for `FakeProvider`,
`REPLIES` for the fake OpenAI server's reply rules)."""

from __future__ import annotations

import random
import re

VERBOSE = """You are a **very** careful sentiment classifier. Please read the review carefully.
It is very important that you answer with one word: positive or negative. Thank you!

Here are some examples:

Review: A wonderful, moving film with great performances.
Sentiment: positive

Review: Dull, slow and far too long.
Sentiment: negative

Review: I loved every minute of it, a great ride.
Sentiment: positive

Review: The plot made no sense and the acting was bad.
Sentiment: negative

Review: {{text}}
Sentiment:"""

GOOD = ["great", "wonderful", "loved", "moving", "fun", "delight", "superb"]
BAD = ["bad", "dull", "boring", "awful", "mess", "tedious", "worst"]
# the fake OpenAI server's rules (`--replies`): the gold label of the text after the last "Review: "
REPLIES = {"after": "Review: ", "rules": [["|".join(GOOD), " positive"], ["|".join(BAD), " negative"]],
           "default": " negative"}


def review(rng: random.Random, i: int) -> tuple[str, str]:
    """Review number `i` and its gold label: even ones positive, odd ones negative."""
    label = "positive" if i % 2 == 0 else "negative"
    words = rng.sample(GOOD if label == "positive" else BAD, 2)
    return f"Review {i}: it was {words[0]} and {words[1]} from start to end.", label


def classify(text: str) -> str:
    """A model's answer to the last review (or input) in `text`: right whenever it is a clear one."""
    found = re.findall(r"(?:Review|Input): (.*)", text)
    last = found[-1] if found else text
    return " positive" if any(w in last for w in GOOD) else " negative"


def prompt_text(prompt: list[dict[str, str]] | str) -> str:
    """The text a model reads last: a plain prompt, or the last chat message's content."""
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]
