"""Build support_tickets.csv: 300 short, made-up customer support tickets with the team
that should handle them, the order number they mention and whether they ask for a refund
(the ground truth for notebooks/07_batch.ipynb). Deterministic: the same file every run.

    python notebooks/data/make_tickets.py
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

PRODUCTS = ["Aurora kettle", "Nimbus headphones", "Trail backpack", "Pixel desk lamp",
            "Volt phone charger", "Breeze tower fan"]

# (team, wants refund, template); {product}, {order}, {amount}, {days} are filled in
TEMPLATES = [
    ("billing", True, "I was charged {amount} twice for my {product}, order {order}. Please refund the extra charge."),
    ("billing", False, "My invoice for order {order} shows the wrong VAT number. Can you send a corrected invoice for the {product}?"),
    ("billing", True, "The {product} was on sale but I paid full price ({amount}) on order {order}. I want the difference back."),
    ("billing", False, "Can I pay for the {product} in three instalments? I have not ordered yet."),
    ("shipping", False, "My {product} (order {order}) has not arrived after {days} days. Where is it?"),
    ("shipping", True, "The {product} from order {order} arrived with a crushed box and a dent. I would like a refund."),
    ("shipping", False, "Can you deliver order {order} to my office address instead of my home?"),
    ("shipping", False, "The tracking link for my {product} has said 'label created' for {days} days."),
    ("technical", False, "My {product} stopped working after {days} days. The light blinks red. How do I fix it?"),
    ("technical", True, "The {product} overheats every time I use it. It is unsafe, I want my money back (order {order})."),
    ("technical", False, "How do I reset the {product} to factory settings? The manual does not say."),
    ("technical", False, "The {product} makes a loud buzzing noise since the last firmware update."),
    ("account", False, "I cannot log in to my account since I changed my email address. I bought a {product} last month."),
    ("account", False, "Please delete my account and all my data. My last order was {order}."),
    ("account", False, "I never received the password reset email. I need to see my {product} warranty."),
    ("account", False, "Two accounts were created with my name; please merge them so I see order {order}."),
]


def tickets(count: int = 300, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        team, refund, template = TEMPLATES[i % len(TEMPLATES)]
        order = f"A{rng.randint(10000, 99999)}"
        text = template.format(product=(product := rng.choice(PRODUCTS)), order=order,
                               amount=f"${rng.randint(19, 249)}.{rng.randint(0, 99):02d}",
                               days=rng.randint(3, 21))
        rows.append({"ticket_id": f"T{1000 + i}", "product": product, "text": text,
                     "true_team": team, "true_order": order if order in text else "none",
                     "true_refund": refund})
    rng.shuffle(rows)
    return rows


if __name__ == "__main__":
    target = Path(__file__).with_name("support_tickets.csv")
    with open(target, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(tickets(1)[0]))
        writer.writeheader()
        writer.writerows(tickets())
    print(f"wrote {target}")
