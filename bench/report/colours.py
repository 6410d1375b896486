"""One colour per method, the same in every figure and every run.

A figure never picks colours by position in its own legend: with matplotlib's ten-colour cycle
the fifth method of one figure shared the first's colour, and a method changed colour between
figures with different method sets. Here a method's colour depends on its name only:

- each built-in method (`METHODS`, in a fixed order) owns one hue of matplotlib's tab20 and
  takes its dark shade; `X+diff-tuning` takes the light shade of X's hue, so a composition reads
  as kin of its base yet is never mistaken for it;
- any other name (a plugin, another composition) is hashed into the colours no known name owns,
  so it is stable across runs too (two unknown names may share a colour; known ones never do).

Settings of one method in one figure (sweep points, another budget) share the method's colour and
are told apart by `Style.variant`: line style, marker or hatch, never another method's colour.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

# tab20's ten hues as (dark, light), olive last: it is the one spare hue after the built-ins.
HUES = (
    ("#1f77b4", "#aec7e8"),  # blue
    ("#ff7f0e", "#ffbb78"),  # orange
    ("#2ca02c", "#98df8a"),  # green
    ("#d62728", "#ff9896"),  # red
    ("#9467bd", "#c5b0d5"),  # purple
    ("#8c564b", "#c49c94"),  # brown
    ("#e377c2", "#f7b6d2"),  # pink
    ("#7f7f7f", "#c7c7c7"),  # grey
    ("#17becf", "#9edae5"),  # cyan
    ("#bcbd22", "#dbdb8d"),  # olive
)
# tab20b's two darkest shades of each hue: distinct from every tab20 colour. Built-ins past the ten
# hues take them in order; the rest stay spare, so fallback names have room.
EXTRA = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#5254a3", "#8ca252", "#bd9e39", "#ad494a", "#a55194")
PALETTE = tuple(c for pair in HUES for c in pair) + EXTRA

# Built-in methods, hue i for METHODS[i]. Append new methods at the end (never reorder), so no
# existing method changes colour; full-ft is grey, the neutral reference line of the sweeps.
# Past the ten hues, methods take the EXTRA shades in order (they have no light kin: none of them
# composes with diff-tuning).
METHODS = ("lora", "adaptformer", "bitfit", "diff-tuning", "vpt-deep", "difffit", "attention-ft", "full-ft",
           "a3ft", "clean", "cep-u", "cep-g", "ip", "dropout", "label-smoothing", "controlnet", "bnn", "bnn-norm")
MODIFIER = "+diff-tuning"  # the composition bench.registry.composed_names() lists

# Built-ins past the ten hues that compose with diff-tuning take a tab20c hue (outside PALETTE) and
# its light shade as the kin: ControlNet's purple.
KIN = {"controlnet": ("#756bb1", "#bcbddc")}
# The few-shot study's methods and BNN compositions, also from tab20c (outside PALETTE): DreamBooth
# orange, its Bayesian variants green, Bayesian LoRA a mid blue beside LoRA's dark one.
OWN = {"dreambooth": "#e6550d", "bnn+dreambooth": "#31a354", "bnn-norm+dreambooth": "#a1d99b",
       "bnn+lora": "#6baed6"}
# The peft tuners committed as config files (baselines/peft/, `peft:<name>`), each a (dark, light)
# pair outside PALETTE: tab20b's two lighter shades of each hue, then tab20c's unused blue, orange
# and grey. Append new configs at the end; a config not listed here is hashed into the spare colours.
PEFT = ("lora", "dora", "loha", "lokr", "oft", "boft", "vera", "ia3")
PEFT_PAIRS = (("#6b6ecf", "#9c9ede"), ("#b5cf6b", "#cedb9c"), ("#e7ba52", "#e7cb94"), ("#d6616b", "#e7969c"),
              ("#ce6dbd", "#de9ed6"), ("#3182bd", "#9ecae1"), ("#fd8d3c", "#fdd0a2"), ("#636363", "#bdbdbd"))
KIN.update({f"peft:{name}": pair for name, pair in zip(PEFT, PEFT_PAIRS)})
_KNOWN = {**OWN, **{m: HUES[i][0] if i < len(HUES) else EXTRA[i - len(HUES)] for i, m in enumerate(METHODS)
             if i < len(HUES) + len(EXTRA)},
          **{m + MODIFIER: HUES[i][1] for i, m in enumerate(METHODS) if i < len(HUES)},
          **{m: dark for m, (dark, _) in KIN.items()}, **{m + MODIFIER: light for m, (_, light) in KIN.items()}}
_SPARE = tuple(c for c in PALETTE if c not in _KNOWN.values())


def method_colour(name: str) -> str:
    """The method's colour as '#rrggbb'."""
    if name in _KNOWN:
        return _KNOWN[name]
    # sha256, not hash(): Python salts str hashes per process, and colours must survive a rerun.
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return _SPARE[digest % len(_SPARE)]


LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v")
HATCHES = ("", "//", "\\\\", "xx", "..")


@dataclass(frozen=True)
class Style:
    colour: str
    variant: int  # 0 for a method's first setting in the figure, 1, 2, ... for its others

    @property
    def linestyle(self) -> str:
        return LINESTYLES[self.variant % len(LINESTYLES)]

    @property
    def marker(self) -> str:
        return MARKERS[self.variant % len(MARKERS)]

    @property
    def hatch(self) -> str:
        return HATCHES[self.variant % len(HATCHES)]


def styles(label_method: Mapping[str, str]) -> dict[str, Style]:
    """Legend label -> style, given each label's method. Labels of one method are numbered in
    sorted order, so a method's plain main-run label (the shortest) is its solid variant 0."""
    seen: dict[str, int] = {}
    out = {}
    for label in sorted(label_method):
        method = label_method[label]
        out[label] = Style(method_colour(method), seen.get(method, 0))
        seen[method] = seen.get(method, 0) + 1
    return out
