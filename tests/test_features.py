"""Feature extractors: weight resolution and sha256 checks (with weights files the tests write;
no network), agreement with torch-fidelity's forward and clean-fid's resize, the cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from bench.backbone import file_sha256
from bench.errors import BenchError
from bench.features import get_extractor
from bench.features.cache import cached_features
from bench.features.inception import INCEPTION_WEIGHTS, CleanInceptionExtractor, InceptionExtractor, pil_bicubic_resize


def random_inception_file(path: Path) -> str:
    """torch-fidelity's Inception-v3 with random weights (the real ones cannot be downloaded here),
    BN running statistics jittered so features are not degenerate."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    torch.manual_seed(0)
    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, **k: None):
        net = fe.FeatureExtractorInceptionV3("random", ["2048"])
    state = net.state_dict()
    for k, v in state.items():
        if k.endswith("running_var"):
            v.fill_(0.05)
    torch.save(state, path)
    return file_sha256(path)


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / INCEPTION_WEIGHTS.filename
    return path, random_inception_file(path)


def images(n=4, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def cache_files(tmp_path):
    root = tmp_path / "cache"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_inception_matches_torch_fidelity_forward(inception_file):
    path, digest = inception_file
    ex = InceptionExtractor(path, expected_sha256=digest, device="cpu")
    x = images()
    f = ex(x)
    assert f.features.shape == (4, 2048) and f.logits.shape == (4, 1008) and f.spatial.shape == (4, 17 * 17 * 7)
    assert f.features.std() > 1e-3
    pool, logits = ex.net.forward(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
    np.testing.assert_array_equal(f.features, pool.numpy())
    np.testing.assert_array_equal(f.logits, logits.numpy())
    assert ex.weights_sha256 == digest and ex.preprocessing()["weights"] == digest


TF_MIXED = ["mixed"] + [f"mixed_{i}" for i in range(1, 11)]  # the TF graph's mixed blocks, in order


def test_sfid_spatial_features_are_the_tf_graphs_mixed_6_conv(inception_file):
    """sFID reads mixed_6/conv[:7] of the TF graph. Recomputed here without the extractor's hook:
    the torch-fidelity blocks in order up to the one that TF's mixed_6 names, then its 1x1 branch
    by hand (conv, batch norm in inference form, ReLU), first 7 channels, NHWC-flattened. The
    previous layer choice (Mixed_6c = mixed_5) fails this test."""
    import torch.nn.functional as F

    path, digest = inception_file
    ex = InceptionExtractor(path, expected_sha256=digest, device="cpu")
    x = images(n=3, seed=1)
    net = ex.net
    mixed = [n for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                         "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")]
    target = mixed[TF_MIXED.index("mixed_6")]
    with torch.no_grad():
        h = ex._normalised(torch.from_numpy(x))
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "MaxPool_2", *mixed[: mixed.index(target)]):
            h = getattr(net, name)(h)
        branch = getattr(net, target).branch1x1
        conv, bn = branch.conv, branch.bn
        y = F.conv2d(h, conv.weight)
        y = (y - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
        y = torch.relu(y * bn.weight[:, None, None] + bn.bias[:, None, None])
        expected = y[:, :7].permute(0, 2, 3, 1).flatten(1).numpy()
    assert expected.shape == (3, 17 * 17 * 7)
    np.testing.assert_allclose(ex(x).spatial, expected, rtol=1e-4, atol=1e-5)


def test_clean_inception_uses_clean_fid_resize(inception_file):
    from cleanfid.resize import build_resizer

    x = images(2, size=64)
    theirs = np.stack([build_resizer("clean")(img) for img in x])
    np.testing.assert_array_equal(pil_bicubic_resize(x), theirs)
    path, digest = inception_file
    clean = CleanInceptionExtractor(path, expected_sha256=digest, device="cpu")
    legacy = InceptionExtractor(path, expected_sha256=digest, device="cpu")
    assert clean.preprocessing() != legacy.preprocessing()
    assert not np.allclose(clean(x).features, legacy(x).features, rtol=1e-4)


def test_inception_hash_mismatch_is_refused_and_nothing_cached(inception_file, tmp_path):
    path, _ = inception_file
    with pytest.raises(BenchError, match=r"sha256 .* expected 6726825d"):
        InceptionExtractor(path)  # the manifest's digest: a random file is not the FID network
    assert cache_files(tmp_path) == []


def test_inception_weights_resolution_env_and_hub_dir(inception_file, tmp_path, monkeypatch):
    path, digest = inception_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    with pytest.raises(BenchError, match="BENCH_INCEPTION_WEIGHTS=.*weights-inception-2015-12-05"):
        InceptionExtractor()
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(path, hub / INCEPTION_WEIGHTS.filename)
    assert InceptionExtractor(expected_sha256=digest).weights_sha256 == digest   # found in the hub folder
    monkeypatch.setenv("BENCH_INCEPTION_WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(BenchError, match="nope.pth does not exist"):             # the override wins
        InceptionExtractor(expected_sha256=digest)


def test_inception_rejects_files_that_are_not_state_dicts(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError, match="not a readable PyTorch state_dict"):
        InceptionExtractor(junk, expected_sha256=file_sha256(junk))
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(BenchError, match="does not match the Inception-v3 architecture"):
        InceptionExtractor(other, expected_sha256=file_sha256(other))


@pytest.fixture
def tiny_weights(tmp_path):
    from bench.features.tiny import TinyCNN

    torch.manual_seed(0)
    path = tmp_path / "extractor.safetensors"
    save_file(TinyCNN(16).state_dict(), path)
    return path


def test_tiny_extractor_batch_invariant_with_spatial(tiny_weights):
    ex = get_extractor("tiny", weights_path=tiny_weights)
    x = images(10, size=16)
    a = ex(x)
    ex.batch_size = 3
    b = ex(x)
    assert a.features.shape == (10, 64) and a.logits.shape == (10, 16) and a.spatial.shape == (10, 4 * 4 * 7)
    np.testing.assert_allclose(a.features, b.features, rtol=1e-5, atol=1e-6)


def test_cache_keyed_by_content_and_weights(tiny_weights, tmp_path):
    from bench.features.tiny import TinyCNN

    ex = get_extractor("tiny", weights_path=tiny_weights)
    x = images(6, size=16)
    f1, hit1 = cached_features(ex, x)
    f2, hit2 = cached_features(ex, x)
    assert (hit1, hit2) == (False, True)
    np.testing.assert_array_equal(f1.features, f2.features)
    np.testing.assert_array_equal(f1.spatial, f2.spatial)
    x2 = x.copy()
    x2[0, 0, 0, 0] ^= 1
    assert cached_features(ex, x2)[1] is False              # one changed pixel: a new entry
    torch.manual_seed(1)
    other = tmp_path / "other.safetensors"
    save_file(TinyCNN(16).state_dict(), other)
    assert cached_features(get_extractor("tiny", weights_path=other), x)[1] is False  # new weights: new entry
    assert not any("site-packages" in str(p) for p in cache_files(tmp_path))


def test_nan_features_are_refused_and_not_cached(tmp_path):
    from bench.features.tiny import TinyCNN

    state = TinyCNN(16).state_dict()
    state["head.weight"][:] = float("nan")
    state["body.0.0.weight"][:] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_file(state, path)
    with pytest.raises(BenchError, match="NaN"):
        cached_features(get_extractor("tiny", weights_path=path), images(3, size=16))
    assert cache_files(tmp_path) == []


@pytest.mark.parametrize("bad", [np.zeros((2, 16, 16, 3), np.float32), np.zeros((2, 16, 16), np.uint8),
                                 np.zeros((2, 16, 16, 4), np.uint8), np.zeros((0, 16, 16, 3), np.uint8)])
def test_extractor_rejects_wrong_dtype_and_shape(tiny_weights, bad):
    with pytest.raises(BenchError, match="uint8 RGB|no images"):
        get_extractor("tiny", weights_path=tiny_weights)(bad)


def test_unknown_extractor_suggests():
    with pytest.raises(BenchError, match="did you mean 'inception'"):
        get_extractor("inceptoin")


def test_clip_extractor_l2_normalised_from_a_checkpoint_file(tmp_path):
    import open_clip

    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16,
                                           "head_width": 16},
           "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16, "heads": 1, "layers": 1}}
    (tmp_path / "bench-test-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path)
    torch.manual_seed(0)
    ckpt = tmp_path / "clip.pt"
    torch.save(open_clip.create_model("bench-test-clip").state_dict(), ckpt)
    ex = get_extractor("clip", model_name="bench-test-clip", weights_path=ckpt, device="cpu")
    f = ex(images(3, size=40))
    assert f.features.shape == (3, 16) and ex.input_size == 32
    np.testing.assert_allclose(np.linalg.norm(f.features, axis=1), 1, rtol=1e-5)
    with pytest.raises(BenchError, match="sha256"):
        get_extractor("clip", model_name="bench-test-clip", weights_path=ckpt, expected_sha256="00" * 32)


def test_dinov2_extractor_from_a_checkpoint_file(tmp_path):
    import timm

    torch.manual_seed(0)
    arch = "vit_small_patch14_dinov2.lvd142m"
    ckpt = tmp_path / "dinov2.pth"
    torch.save(timm.create_model(arch, pretrained=False, num_classes=0).state_dict(), ckpt)  # 518 px pos-embed
    ex = get_extractor("dinov2", arch=arch, weights_path=ckpt, device="cpu")
    f = ex(images(2, size=48))
    assert f.features.shape == (2, 384) and ex.dim == 384 and np.isfinite(f.features).all()
    assert ex.preprocessing()["weights"] == file_sha256(ckpt)
