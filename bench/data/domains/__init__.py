"""Procedural image domains: the tiny profile's deterministic stand-ins for hub datasets.

One file per domain, each exposing `generate(n, rng, size)` built on `primitives`; this registry
maps the names that task files use (`synthetic.generator`) to them. To add a domain, add its
file and one line below.
"""

from __future__ import annotations

from bench.data.domains import (art, birds, cars, creatures, digits, faces, flowers, fungi, plates,
                                portraits, scenes, shapes)
from bench.data.domains.primitives import GeneratorFn

GENERATORS: dict[str, GeneratorFn] = {
    "source-shapes": shapes.generate,
    "plates": plates.generate,
    "scenes": scenes.generate,
    "fungi": fungi.generate,
    "digits": digits.generate,
    "birds": birds.generate,
    "art": art.generate,
    "flowers": flowers.generate,
    "cars": cars.generate,
    "faces": faces.generate,
    "creatures": creatures.generate,
    "portraits": portraits.generate,
}
