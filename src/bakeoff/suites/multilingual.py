"""`multilingual`: math and instruction items rendered in several languages (MGSM-style).

The same seeded quantities are rendered from our own templates in English, Spanish, French, German,
Portuguese and Swahili; the tier is the language, so the summary's per-tier scores are per-language
scores. Half the items are one- or two-step word problems (numeric answer), half are instruction
items with language-independent checks (bullet count, no commas, a required word, lowercase).
"""

from __future__ import annotations

from typing import Any

from bakeoff.endpoints import CallResult
from bakeoff.suites._scorers import NumericMatch
from bakeoff.suites._types import Item, Reply, Score, rng, unique_items
from bakeoff.suites.instructions import Constraint

LANGS = ("en", "es", "fr", "de", "pt", "sw")
NAMES = ["Ana", "Luis", "Marie", "Jonas", "Rita", "Amani", "Tomas", "Zawadi"]

MATH: dict[str, list[str]] = {
    "en": [
        "{n} has {a} apples and buys {b} more. How many apples does {n} have now?",
        "{n} buys {a} boxes with {b} pencils in each box. How many pencils is that?",
        "{n} had {a} coins and gave away {b}. How many coins are left?",
    ],
    "es": [
        "{n} tiene {a} manzanas y compra {b} más. ¿Cuántas manzanas tiene {n} ahora?",
        "{n} compra {a} cajas con {b} lápices en cada caja. ¿Cuántos lápices son?",
        "{n} tenía {a} monedas y regaló {b}. ¿Cuántas monedas le quedan?",
    ],
    "fr": [
        "{n} a {a} pommes et en achète {b} de plus. Combien de pommes {n} a-t-il maintenant ?",
        "{n} achète {a} boîtes de {b} crayons chacune. Combien de crayons cela fait-il ?",
        "{n} avait {a} pièces et en a donné {b}. Combien de pièces reste-t-il ?",
    ],
    "de": [
        "{n} hat {a} Äpfel und kauft {b} weitere. Wie viele Äpfel hat {n} jetzt?",
        "{n} kauft {a} Schachteln mit je {b} Stiften. Wie viele Stifte sind das?",
        "{n} hatte {a} Münzen und hat {b} verschenkt. Wie viele Münzen sind übrig?",
    ],
    "pt": [
        "{n} tem {a} maçãs e compra mais {b}. Quantas maçãs {n} tem agora?",
        "{n} compra {a} caixas com {b} lápis em cada caixa. Quantos lápis são?",
        "{n} tinha {a} moedas e deu {b}. Quantas moedas restam?",
    ],
    "sw": [
        "{n} ana tufaha {a} na ananunua {b} zaidi. {n} ana tufaha ngapi sasa?",
        "{n} ananunua masanduku {a} yenye penseli {b} kila moja. Ni penseli ngapi kwa jumla?",
        "{n} alikuwa na sarafu {a} na akatoa {b}. Zimebaki sarafu ngapi?",
    ],
}
ANSWER = {
    "en": "End your reply with the final answer as a number.",
    "es": "Termina tu respuesta con el resultado final como número.",
    "fr": "Termine ta réponse par le résultat final sous forme de nombre.",
    "de": "Beende deine Antwort mit dem Endergebnis als Zahl.",
    "pt": "Termine sua resposta com o resultado final como número.",
    "sw": "Maliza jibu lako kwa jibu la mwisho kama namba.",
}
TOPIC = {
    "en": "Write about the sea.",
    "es": "Escribe sobre el mar.",
    "fr": "Écris sur la mer.",
    "de": "Schreibe über das Meer.",
    "pt": "Escreva sobre o mar.",
    "sw": "Andika kuhusu bahari.",
}
CONSTRAINT_TEXT: dict[str, dict[str, str]] = {
    "bullets": {
        "en": "Use exactly {n} bullet points, each line starting with '- '.",
        "es": "Usa exactamente {n} viñetas, cada línea empezando con '- '.",
        "fr": "Utilise exactement {n} puces, chaque ligne commençant par '- '.",
        "de": "Verwende genau {n} Aufzählungspunkte, jede Zeile beginnt mit '- '.",
        "pt": "Use exatamente {n} marcadores, cada linha começando com '- '.",
        "sw": "Tumia vitone {n} hasa, kila mstari ukianza na '- '.",
    },
    "no_commas": {
        "en": "Do not use any commas.",
        "es": "No uses ninguna coma.",
        "fr": "N'utilise aucune virgule.",
        "de": "Verwende keine Kommas.",
        "pt": "Não use nenhuma vírgula.",
        "sw": "Usitumie koma yoyote.",
    },
    "keywords": {
        "en": "Include the word '{w}'.",
        "es": "Incluye la palabra '{w}'.",
        "fr": "Inclue le mot '{w}'.",
        "de": "Verwende das Wort '{w}'.",
        "pt": "Inclua a palavra '{w}'.",
        "sw": "Tumia neno '{w}'.",
    },
    "lowercase": {
        "en": "Write only in lowercase letters.",
        "es": "Escribe solo en minúsculas.",
        "fr": "Écris uniquement en minuscules.",
        "de": "Schreibe nur in Kleinbuchstaben.",
        "pt": "Escreva apenas em letras minúsculas.",
        "sw": "Andika kwa herufi ndogo tu.",
    },
}
WORDS = ["luna", "sol", "ola", "faro", "coral"]


class MultilingualSuite:
    name = "multilingual"
    linear_scoring = True  # scored on the event loop when short (runs._scoring)
    description = "Word problems and instructions in en, es, fr, de, pt, sw; per-language scores."
    default_size = 36
    tiers = LANGS

    def __init__(self) -> None:
        self._num = NumericMatch()

    def items(self, *, seed: int, n: int | None = None) -> list[Item]:
        n = self.default_size if n is None else n

        def make(i: int, attempt: int) -> Item:
            lang = LANGS[i % len(LANGS)]
            # the same quantities in every language: the draw depends on the group, not the language
            r = rng("multilingual", seed, i // len(LANGS), attempt)
            if (i // len(LANGS)) % 2 == 0:
                # additions in two of three groups, a product or a difference in the third
                kind = 0 if (i // len(LANGS)) % 6 != 4 else r.choice([1, 2])
                a, b = r.randint(2, 9), r.randint(2, 9)
                if kind == 2:
                    a = a + b
                answer = [a + b, a * b, a - b][kind]
                text = MATH[lang][kind].format(n=r.choice(NAMES), a=a, b=b)
                item: dict[str, Any] = {
                    "content": f"{text}\n{ANSWER[lang]}",
                    "target": answer,
                    "kind": "math",
                }
            else:
                kinds = r.sample(list(CONSTRAINT_TEXT), 2)
                if "bullets" not in kinds and "keywords" not in kinds:
                    kinds[0] = "bullets"
                args: dict[str, dict[str, Any]] = {
                    "bullets": {"n": r.randint(2, 4)},
                    "keywords": {"words": [r.choice(WORDS)]},
                    "no_commas": {},
                    "lowercase": {},
                }
                cons = [{"kind": k, "args": args[k]} for k in kinds]
                texts = [
                    CONSTRAINT_TEXT[k][lang].format(
                        n=args[k].get("n"), w=(args[k].get("words") or [""])[0]
                    )
                    for k in kinds
                ]
                item = {
                    "content": TOPIC[lang] + " " + " ".join(texts),
                    "target": cons,
                    "kind": "instructions",
                }
            return Item(
                id=f"multilingual-{seed}-{i:04d}",
                tier=lang,
                messages=[{"role": "user", "content": item["content"]}],
                params={"max_tokens": 256},
                target=item["target"],
                meta={"kind": item["kind"], "lang": lang},
            )

        return unique_items(n, make)

    def score(self, item: Item, result: CallResult) -> list[Score]:
        if item.meta["kind"] == "math":
            return [self._num(item, result)]
        cons = [Constraint(c["kind"], c["args"]) for c in item.target]
        met = [c.check(result.text) for c in cons]
        failed = [c.kind for c, ok in zip(cons, met, strict=True) if not ok]
        return [
            Score(
                scorer="strict",
                value=float(all(met)),
                passed=all(met),
                detail="all met" if not failed else "failed: " + ", ".join(failed),
            )
        ]

    def reference_reply(self, item: Item) -> Reply:
        if item.meta["kind"] == "math":
            return Reply(content=f"= {item.target}")
        kinds = {c["kind"]: c["args"] for c in item.target}
        lines = ["the sea is wide and calm"]
        if "keywords" in kinds:
            lines[0] += " " + kinds["keywords"]["words"][0]
        lines += [f"- wave {i + 1}" for i in range(kinds.get("bullets", {"n": 0})["n"])]
        return Reply(content="\n".join(lines))
