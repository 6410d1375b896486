"""Subject fidelity of personalised generations (few-shot family), with the pairing rules of the
BNN paper's eval_updated_v2.py (DreamBooth's measures):

    dino      DINO CLS cosine, averaged over ALL (training image, generated image) pairs
    clip_i    the same with CLIP image embeddings
    clip_t    cosine of each generated image with its own prompt's CLIP text embedding
              (the caller passes prompts without the rare token)
    lpips     LPIPS over all unordered pairs of generated images of the SAME prompt (diversity)
    clip_iqa  CLIP-IQA, mean over generated images

`get_fidelity("tiny")`: small networks trained here (bench/families/few_shot/fidelity/tiny.py, `bench build-tiny
fidelity`); `get_fidelity("paper")`: DINO ViT-S/16, CLIP ViT-L/14, LPIPS-AlexNet, piq's CLIPIQA
(bench/families/few_shot/fidelity/paper.py), from local caches only.
"""

from __future__ import annotations

from bench.errors import unknown
from bench.families.few_shot.fidelity.base import NAMES, SubjectFidelity  # noqa: F401


def check_fidelity(name: str, weights_sha256: str | None = None) -> None:
    """Plan time: the scorer's weights are present (and pinned), without loading its networks;
    BenchError (one line) otherwise."""
    if name == "tiny":
        from bench.features.weights import tiny_asset
        from bench.families.few_shot.fidelity.tiny import WEIGHTS

        tiny_asset(WEIGHTS, weights_sha256, "tiny fidelity", "fidelity")
    elif name == "paper":
        from bench.families.few_shot.fidelity.paper import check

        check()
    else:
        raise unknown("subject-fidelity scorer (evaluation.extractor)", name, ["tiny", "paper"])


def get_fidelity(name: str, weights_sha256: str | None = None) -> SubjectFidelity:
    if name == "tiny":
        from bench.families.few_shot.fidelity.tiny import TinyFidelity

        return TinyFidelity(weights_sha256)
    if name == "paper":
        from bench.families.few_shot.fidelity.paper import PaperFidelity

        return PaperFidelity()
    raise unknown("subject-fidelity scorer (evaluation.extractor)", name, ["tiny", "paper"])
