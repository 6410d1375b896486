"""Subject fidelity (bench/families/few_shot/fidelity): the official pairing rules, the tiny networks doing what they
stand in for on held-out layouts, the weights' sha256 check, and the paper networks' one-line
refusal offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.data.layouts import generate_layouts
from bench.errors import BenchError
from bench.families.few_shot.fidelity import get_fidelity
from bench.families.few_shot.fidelity.tiny import WEIGHTS, corrupt, to_input, tokenize

FID = get_fidelity("tiny")
HELD = generate_layouts(48, np.random.default_rng([99, 5]), 32)  # not the layouts it was trained on


def _embed(net, images):
    """Embeddings straight from the networks, one image at a time (no batching, no measure())."""
    return torch.cat([F.normalize(net(to_input(images[i:i + 1])), dim=-1) for i in range(len(images))])


def _lpips_by_hand(a, b):
    total = 0.0
    for fa, fb in zip(FID.dino_net.backbone.features(to_input(a)), FID.dino_net.backbone.features(to_input(b))):
        total += ((fa / fa.norm(dim=1, keepdim=True) - fb / fb.norm(dim=1, keepdim=True)) ** 2).sum(1).mean()
    return float(total)


@torch.no_grad()
def test_pairing_rules_match_explicit_loops():
    gen = torch.from_numpy(HELD.images[:6])  # 3 prompts x 2 images, prompt-major
    subject = torch.from_numpy(HELD.images[10:13])  # N = 3 training images
    prompts = [" ".join(c.split()[:3]) for c in HELD.captions[:3]]
    got = FID.measure(gen, prompts, 2, subject)
    gd, sd = _embed(FID.dino_net.backbone, gen), _embed(FID.dino_net.backbone, subject)
    assert got["dino"] == pytest.approx(np.mean([[float(g @ s) for s in sd] for g in gd]), abs=1e-5)
    gc, sc = _embed(FID.clip.image, gen), _embed(FID.clip.image, subject)
    assert got["clip_i"] == pytest.approx(np.mean([[float(g @ s) for s in sc] for g in gc]), abs=1e-5)
    text = [F.normalize(FID.clip.text(tokenize([p])), dim=-1)[0] for p in prompts]
    assert got["clip_t"] == pytest.approx(np.mean([float(gc[i] @ text[i // 2]) for i in range(6)]), abs=1e-5)
    lp = [_lpips_by_hand(gen[2 * p:2 * p + 1], gen[2 * p + 1:2 * p + 2]) for p in range(3)]
    assert got["lpips"] == pytest.approx(np.mean(lp), rel=1e-4)  # pairs within a prompt only
    iqa = [float((100 * gc[i] @ FID._iqa_text.T).softmax(-1)[0]) for i in range(6)]
    assert got["clip_iqa"] == pytest.approx(np.mean(iqa), abs=1e-5)
    # One training image, 4 images per prompt: all 6 unordered pairs of each prompt.
    gen4 = torch.from_numpy(HELD.images[:8])
    one = FID.measure(gen4, prompts[:2], 4, subject[:1])
    d = [_lpips_by_hand(gen4[p * 4 + i:p * 4 + i + 1], gen4[p * 4 + j:p * 4 + j + 1])
         for p in range(2) for i in range(4) for j in range(i + 1, 4)]
    assert one["lpips"] == pytest.approx(np.mean(d), rel=1e-4)
    assert one["dino"] == pytest.approx(float((_embed(FID.dino_net.backbone, gen4) @ sd[0]).mean()), abs=1e-5)


def test_lpips_is_zero_for_identical_images_and_one_image_per_prompt_is_refused():
    same = torch.from_numpy(np.repeat(HELD.images[:1], 4, 0))
    assert FID.measure(same, ["a ball", "a box"], 2, same[:1])["lpips"] == pytest.approx(0.0, abs=1e-6)
    mixed = torch.from_numpy(HELD.images[:4])
    assert FID.measure(mixed, ["a ball", "a box"], 2, same[:1])["lpips"] > 0.05
    with pytest.raises(BenchError, match="images_per_prompt"):
        FID.measure(same, ["a ball"] * 4, 1, same[:1])
    with pytest.raises(BenchError, match="uint8"):
        FID.measure(same.float(), ["a ball", "a box"], 2, same[:1])


def test_tiny_networks_do_what_they_stand_in_for():
    images = torch.from_numpy(HELD.images)
    noisy = ((corrupt(to_input(images), torch.Generator().manual_seed(0)) + 1) * 127.5).round().to(torch.uint8)
    with torch.no_grad():
        clean_iqa, noisy_iqa = FID.iqa(images), FID.iqa(noisy.permute(0, 2, 3, 1))
        assert clean_iqa.mean() > noisy_iqa.mean() + 0.3  # clean above noisy
        assert (clean_iqa > noisy_iqa).float().mean() > 0.8  # image by image too
        img = FID.clip_image(images)
        true = (img * FID.clip_text(HELD.captions)).sum(1)
        wrong = (img * FID.clip_text(HELD.captions[1:] + HELD.captions[:1])).sum(1)
        assert true.mean() > wrong.mean() + 0.2
        emb = FID.dino(images)
        flipped = FID.dino(images.flip(2))
        others = (emb @ emb.T).fill_diagonal_(0).sum() / (len(emb) * (len(emb) - 1))
        assert (emb * flipped).sum(1).mean() > others + 0.2


def test_tampered_weights_are_refused_and_info_names_them(tmp_path):
    info = FID.info()
    assert set(FID.names) <= set(info) and info["dino"]["sha256"] == FID.weights_sha256
    assert get_fidelity("tiny", FID.weights_sha256).weights_sha256 == FID.weights_sha256
    with pytest.raises(BenchError, match="build-tiny fidelity"):
        get_fidelity("tiny", "0" * 64)
    with pytest.raises(BenchError, match="subject-fidelity"):
        get_fidelity("nope")


def test_missing_paper_weights_are_one_line(tmp_path, monkeypatch):
    from bench.families.few_shot.fidelity import paper

    for var in ("HF_HUB_CACHE", "BENCH_CLIP_WEIGHTS", "BENCH_DINO_WEIGHTS", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # piq's ~/.cache/clip
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch" / "hub"))
    with pytest.raises(BenchError) as err:
        get_fidelity("paper")
    line = str(err.value)
    assert "\n" not in line and WEIGHTS.name not in line
    for what in ("DINO", "vit_small_patch16_224.dino", "ViT-L-14", "AlexNet", "alexnet-owt-7be5be79.pth",
                 "RN50.pt", "clipiqa_tokens.pt", "hf download"):
        assert what in line, what
    # Cached files are found without loading any network, and no longer named.
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "torch" / "hub" / "checkpoints" / paper.ALEXNET).write_bytes(b"x")
    (tmp_path / ".cache" / "clip").mkdir(parents=True)
    for f in paper.PIQ_FILES:
        (tmp_path / ".cache" / "clip" / f).write_bytes(b"x")
    monkeypatch.setenv("BENCH_CLIP_WEIGHTS", str(tmp_path / ".cache" / "clip" / "RN50.pt"))
    found, gone = paper.locate()
    assert set(found) == {"alexnet", "clip", *paper.PIQ_FILES} and len(gone) == 1 and "DINO" in gone[0]


def test_a_missing_paper_package_names_the_extra(monkeypatch):
    import importlib.util

    from bench.families.few_shot.fidelity import paper

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("piq", "lpips") else real(name, *a))
    _, gone = paper.locate()
    (line,) = [g for g in gone if "python package" in g]
    assert "lpips, piq" in line and 'pip install -c constraints.txt -e ".[paper]"' in line
