"""The three prompts the demo ships, written for trimloop, as files-connector prompt files.

They are deliberately what teams often have in production: a verbose few-shot classifier, a
router whose category descriptions grew long, and a short extraction prompt that is already lean.
"""

SENTIMENT = """---
model: local/gemma3-270m
params: {temperature: 0, max_tokens: 3, stop: ["\\n"]}
labels: [production]
description: Classifies movie reviews as positive or negative (base model, completion style).
---
### Movie review sentiment ###

You are a **very** careful and experienced assistant to a film critic. Please read each review carefully and thoroughly.
Your task is to decide whether the review is positive or negative. It is very important that you answer with exactly one word: positive or negative.
Please do not explain your answer. Answer with exactly one word. Thank you very much for your help!

Here are some examples:

Review: An absolute triumph, funny and moving from the first scene.
Sentiment: positive

Review: I walked out halfway, it was that dull.
Sentiment: negative

Review: The cast is superb and the music is gorgeous.
Sentiment: positive

Review: A lazy script and wooden acting throughout.
Sentiment: negative

Review: Charming, clever and beautifully made.
Sentiment: positive

Review: Two hours I will never get back.
Sentiment: negative

Review: {{review}}
Sentiment:"""

ROUTER = """---
model: local/gemma3-270m
params: {temperature: 0, max_tokens: 3, stop: ["\\n"]}
labels: [production]
description: Routes customer support tickets to the right team.
---
You are a customer support routing assistant for an online shop. Please read the customer's ticket carefully and route it to the right team.

The teams are:
- billing: Questions about invoices, charges, refunds, payments, receipts, prices, subscriptions and anything else that involves money being taken from or returned to the customer.
- bug: Reports that the website or the app is broken, crashes, freezes, shows errors, or that a button or a feature does not work the way it should.
- account: Problems with logging in, passwords, email addresses, usernames, profile details, adding users, or deleting an account and its data.
- shipping: Questions about parcels, deliveries, couriers, tracking numbers, dispatch dates, damaged boxes, or delivery addresses.

Please answer with the team name only, in lower case. Thank you!

Ticket: Hello, I paid for the annual plan but was charged the monthly price too.
Team: billing

Ticket: The app shows a blank screen whenever I open my orders.
Team: bug

Ticket: I changed my email and now I cannot sign in.
Team: account

Ticket: My package says delivered but nothing is at my door.
Team: shipping

Ticket: {{ticket}}
Team:"""

EXTRACT = """---
model: local/gemma3-270m
params: {temperature: 0, max_tokens: 40, stop: ["\\n"]}
labels: [production]
description: Extracts order details from a note as JSON.
---
Extract the order as JSON with name, item, quantity and city.

Text: Lena ordered 4 table fans to be sent to Quito.
JSON: {"name": "Lena", "item": "table fans", "quantity": 4, "city": "Quito"}

Text: {{note}}
JSON:"""

PROMPTS = {"movie-sentiment": SENTIMENT, "ticket-router": ROUTER, "order-extract": EXTRACT}
