"""Parallel parliamentary sentences in English, German, French and Italian.

Every sentence is one combination of five slots taken from fully parallel phrase
tables::

    subject + verb + object + topic + time
    "the committee" + "approves" + "the report" + "on fisheries" + "today"

The tables store each phrase already inflected for each language, so no grammar
is computed at run time:

- subjects are in the nominative and carry a number (``sg``/``pl``) that picks
  the verb form (``approves``/``approve``, ``billigt``/``billigen``, ...);
- objects are in the German accusative (``den Bericht``, ``die Richtlinie``);
- topics carry their preposition, contracted where the language requires it
  (``sulla pesca``, ``sull'energia``, ``sui trasporti``);
- German verbs with a separable prefix are written ``lehnt … ab``: the particle
  goes to the end of the clause, and the German word order is verb-second with
  the time adverbial before the object (``der Rat lehnt morgen den Vorschlag
  über die Energie ab``).

A sentence is identified by its index in the Cartesian product of the tables
(``sentence_id(i) == "s000123"``); the same index gives the four translations.
:func:`normalize` turns a sentence into the target text used for training and
scoring: lower case, apostrophes and hyphens become spaces, every other
punctuation mark is dropped, accents are kept.
"""

import re
import unicodedata
from typing import Dict, List, Sequence, Tuple

import numpy as np

LANGS = ("en", "de", "fr", "it")
ISO3 = {"en": "eng", "de": "deu", "fr": "fra", "it": "ita"}
SPLITS = ("pretrain", "train", "dev", "test")

# (number, {lang: nominative noun phrase})
SUBJECTS = [
    ("sg", dict(en="the committee", de="der Ausschuss", fr="le comité", it="il comitato")),
    ("sg", dict(en="the council", de="der Rat", fr="le conseil", it="il consiglio")),
    ("sg", dict(en="the parliament", de="das Parlament", fr="le parlement", it="il parlamento")),
    ("sg", dict(en="the european commission", de="die Europäische Kommission",
                fr="la Commission européenne", it="la Commissione europea")),
    ("sg", dict(en="the president", de="der Präsident", fr="le président", it="il presidente")),
    ("sg", dict(en="the rapporteur", de="der Berichterstatter", fr="le rapporteur", it="il relatore")),
    ("sg", dict(en="the presidency", de="die Präsidentschaft", fr="la présidence", it="la presidenza")),
    ("sg", dict(en="the minister", de="der Minister", fr="le ministre", it="il ministro")),
    ("pl", dict(en="the members", de="die Abgeordneten", fr="les députés", it="i deputati")),
    ("pl", dict(en="the member states", de="die Mitgliedstaaten", fr="les États membres",
                it="gli Stati membri")),
    ("pl", dict(en="the political groups", de="die Fraktionen", fr="les groupes politiques",
                it="i gruppi politici")),
    ("pl", dict(en="the socialists", de="die Sozialisten", fr="les socialistes", it="i socialisti")),
    ("pl", dict(en="the greens", de="die Grünen", fr="les verts", it="i verdi")),
    ("pl", dict(en="the liberals", de="die Liberalen", fr="les libéraux", it="i liberali")),
]

# {lang: (singular form, plural form)}; "…" marks where a German clause goes
# before a separable particle.
VERBS = [
    dict(en=("approves", "approve"), de=("billigt", "billigen"),
         fr=("approuve", "approuvent"), it=("approva", "approvano")),
    dict(en=("rejects", "reject"), de=("lehnt … ab", "lehnen … ab"),
         fr=("rejette", "rejettent"), it=("respinge", "respingono")),
    dict(en=("discusses", "discuss"), de=("diskutiert", "diskutieren"),
         fr=("discute", "discutent"), it=("discute", "discutono")),
    dict(en=("supports", "support"), de=("unterstützt", "unterstützen"),
         fr=("soutient", "soutiennent"), it=("sostiene", "sostengono")),
    dict(en=("examines", "examine"), de=("prüft", "prüfen"),
         fr=("examine", "examinent"), it=("esamina", "esaminano")),
    dict(en=("amends", "amend"), de=("ändert", "ändern"),
         fr=("modifie", "modifient"), it=("modifica", "modificano")),
    dict(en=("adopts", "adopt"), de=("verabschiedet", "verabschieden"),
         fr=("adopte", "adoptent"), it=("adotta", "adottano")),
    dict(en=("criticises", "criticise"), de=("kritisiert", "kritisieren"),
         fr=("critique", "critiquent"), it=("critica", "criticano")),
    dict(en=("welcomes", "welcome"), de=("begrüßt", "begrüßen"),
         fr=("salue", "saluent"), it=("accoglie", "accolgono")),
    dict(en=("postpones", "postpone"), de=("verschiebt", "verschieben"),
         fr=("reporte", "reportent"), it=("rinvia", "rinviano")),
    dict(en=("presents", "present"), de=("legt … vor", "legen … vor"),
         fr=("présente", "présentent"), it=("presenta", "presentano")),
]

# {lang: object noun phrase}, German in the accusative
OBJECTS = [
    dict(en="the report", de="den Bericht", fr="le rapport", it="la relazione"),
    dict(en="the proposal", de="den Vorschlag", fr="la proposition", it="la proposta"),
    dict(en="the resolution", de="die Entschließung", fr="la résolution", it="la risoluzione"),
    dict(en="the directive", de="die Richtlinie", fr="la directive", it="la direttiva"),
    dict(en="the regulation", de="die Verordnung", fr="le règlement", it="il regolamento"),
    dict(en="the amendment", de="den Änderungsantrag", fr="l'amendement", it="l'emendamento"),
    dict(en="the agreement", de="das Abkommen", fr="l'accord", it="l'accordo"),
    dict(en="the programme", de="das Programm", fr="le programme", it="il programma"),
    dict(en="the strategy", de="die Strategie", fr="la stratégie", it="la strategia"),
    dict(en="the motion", de="den Antrag", fr="la motion", it="la mozione"),
    dict(en="the opinion", de="die Stellungnahme", fr="l'avis", it="il parere"),
    dict(en="the decision", de="den Beschluss", fr="la décision", it="la decisione"),
    dict(en="the amendments", de="die Änderungsanträge", fr="les amendements",
         it="gli emendamenti"),
    dict(en="the recommendations", de="die Empfehlungen", fr="les recommandations",
         it="le raccomandazioni"),
]

# {lang: prepositional phrase}; German "über" takes the accusative, Italian
# "su" contracts with the article.
TOPICS = [
    dict(en="on fisheries", de="über die Fischerei", fr="sur la pêche", it="sulla pesca"),
    dict(en="on agriculture", de="über die Landwirtschaft", fr="sur l'agriculture",
         it="sull'agricoltura"),
    dict(en="on energy", de="über die Energie", fr="sur l'énergie", it="sull'energia"),
    dict(en="on climate change", de="über den Klimawandel", fr="sur le changement climatique",
         it="sul cambiamento climatico"),
    dict(en="on migration", de="über die Migration", fr="sur la migration", it="sulla migrazione"),
    dict(en="on transport", de="über den Verkehr", fr="sur les transports", it="sui trasporti"),
    dict(en="on the internal market", de="über den Binnenmarkt", fr="sur le marché intérieur",
         it="sul mercato interno"),
    dict(en="on human rights", de="über die Menschenrechte", fr="sur les droits de l'homme",
         it="sui diritti umani"),
    dict(en="on public health", de="über die öffentliche Gesundheit", fr="sur la santé publique",
         it="sulla sanità pubblica"),
    dict(en="on data protection", de="über den Datenschutz", fr="sur la protection des données",
         it="sulla protezione dei dati"),
    dict(en="on trade with china", de="über den Handel mit China",
         fr="sur le commerce avec la Chine", it="sul commercio con la Cina"),
    dict(en="on the budget", de="über den Haushalt", fr="sur le budget", it="sul bilancio"),
    dict(en="on research", de="über die Forschung", fr="sur la recherche", it="sulla ricerca"),
    dict(en="on employment", de="über die Beschäftigung", fr="sur l'emploi",
         it="sull'occupazione"),
    dict(en="on the environment", de="über die Umwelt", fr="sur l'environnement",
         it="sull'ambiente"),
    dict(en="on consumer protection", de="über den Verbraucherschutz",
         fr="sur la protection des consommateurs", it="sulla tutela dei consumatori"),
]

TIMES = [
    dict(en="today", de="heute", fr="aujourd'hui", it="oggi"),
    dict(en="tomorrow", de="morgen", fr="demain", it="domani"),
    dict(en="this morning", de="heute Morgen", fr="ce matin", it="stamattina"),
    dict(en="this afternoon", de="heute Nachmittag", fr="cet après-midi", it="oggi pomeriggio"),
    dict(en="this week", de="diese Woche", fr="cette semaine", it="questa settimana"),
    dict(en="next week", de="nächste Woche", fr="la semaine prochaine", it="la prossima settimana"),
    dict(en="on thursday", de="am Donnerstag", fr="jeudi", it="giovedì"),
]

_TABLES = (SUBJECTS, VERBS, OBJECTS, TOPICS, TIMES)


def num_sentences() -> int:
    """Number of distinct sentences (the same in every language)."""
    return int(np.prod([len(t) for t in _TABLES]))


def sentence_id(index: int) -> str:
    """Sentence id of an index, e.g. ``s000123``."""
    return f"s{index:06d}"


def _slots(index: int) -> Tuple[int, ...]:
    if not 0 <= index < num_sentences():
        raise ValueError(f"sentence index out of range [0, {num_sentences()}): {index}")
    slots = []
    for table in reversed(_TABLES):
        index, k = divmod(index, len(table))
        slots.append(k)
    return tuple(reversed(slots))


def compose(subject: str, verb: str, obj: str, topic: str, time: str, lang: str) -> str:
    """Put already-inflected phrases in the word order of ``lang``."""
    if lang == "de":
        head, _, particle = verb.partition(" … ")
        words = [subject, head, time, obj, topic, particle]
    elif lang in ("en", "fr", "it"):
        words = [subject, verb, obj, topic, time]
    else:
        raise ValueError(f"unknown language: {lang}")
    text = " ".join(w for w in words if w)
    return text[0].upper() + text[1:] + "."


def sentence(index: int) -> Dict[str, str]:
    """The four translations of sentence ``index``, with case and punctuation.

    >>> sentence(0)["en"]
    'The committee approves the report on fisheries today.'
    """
    s, v, o, p, t = _slots(index)
    number, subject = SUBJECTS[s]
    form = 0 if number == "sg" else 1
    return {
        lang: compose(subject[lang], VERBS[v][lang][form], OBJECTS[o][lang],
                      TOPICS[p][lang], TIMES[t][lang], lang)
        for lang in LANGS
    }


def normalize(text: str) -> str:
    """Target text: lower case, no punctuation, single spaces.

    Apostrophes and hyphens become spaces (``l'énergie`` -> ``l énergie``),
    other punctuation is removed, letters with accents are kept (NFC).
    """
    text = unicodedata.normalize("NFC", text.lower())
    text = re.sub(r"['’\-]", " ", text)
    text = "".join(c for c in text if c.isalnum() or c.isspace())
    return " ".join(text.split())


def make_splits(sizes: Dict[str, int], seed: int) -> Dict[str, List[int]]:
    """Draw disjoint sets of sentence indices for each split.

    A seeded permutation of all sentences is cut into consecutive blocks in the
    order test, dev, train, pretrain, so test and dev stay the same when only
    the train or pretrain sizes change.

    Args:
        sizes: number of sentences per split, e.g. ``{"train": 100, "dev": 10}``.
        seed: random seed.

    Returns:
        ``{split: sorted sentence indices}``.
    """
    for split, n in sizes.items():
        if split not in SPLITS:
            raise ValueError(f"unknown split: {split} (expected one of {SPLITS})")
        if n < 0:
            raise ValueError(f"negative size for split {split}: {n}")
    total = sum(sizes.values())
    if total > num_sentences():
        raise ValueError(f"asked for {total} sentences, only {num_sentences()} exist")
    perm = np.random.default_rng(seed).permutation(num_sentences())
    splits, start = {}, 0
    for split in reversed(SPLITS):
        if split in sizes:
            splits[split] = sorted(int(i) for i in perm[start:start + sizes[split]])
            start += sizes[split]
    return {split: splits[split] for split in SPLITS if split in splits}


def all_sentences(lang: str, indices: Sequence[int] = None) -> List[str]:
    """Normalised sentences of ``lang`` for ``indices`` (default: all)."""
    if lang not in LANGS:
        raise ValueError(f"unknown language: {lang}")
    if indices is None:
        indices = range(num_sentences())
    return [normalize(sentence(i)[lang]) for i in indices]
