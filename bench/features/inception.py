"""The standard FID Inception-v3 (the 2015-12-05 TensorFlow graph, as ported by torch-fidelity),
in two preprocessings:

* `inception`: torch-fidelity's pipeline — TF1-style bilinear resize to 299 without antialiasing
  inside the network, (x - 128) / 128. Features: pool3 (2048-d); logits: the 1008-way logits
  without bias ("logits_unbiased", torch-fidelity's choice for the Inception Score); spatial:
  the first 7 channels of mixed_6/conv (17x17x7 = 2023-d) for sFID, as the ADM evaluator.
* `clean-inception`: clean-fid's "clean" mode — each channel resized to 299 with PIL bicubic on
  float32 (antialiased, no quantisation), clipped to [0, 255], then the same network. For cFID.

The network is torch-fidelity's module (the reference port, so features match it); weights are
located and sha256-checked by bench.features.weights, never fetched silently into site-packages.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from bench.errors import BenchError
from bench.features.base import Extractor
from bench.features.weights import WeightsFile, resolve

INCEPTION_WEIGHTS = WeightsFile(
    name="FID Inception-v3",
    url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
    filename="weights-inception-2015-12-05-6726825d.pth",
    # The sha256 prefix torch-fidelity publishes in the file name (torch.hub's check_hash rule).
    sha256="6726825d",
    env_var="BENCH_INCEPTION_WEIGHTS",
)
SIZE = 299


def _load_state(path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BenchError(f"{path} is not a readable PyTorch state_dict ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or "fc.weight" not in state:
        raise BenchError(f"{path} is not an Inception-v3 state_dict (no 'fc.weight')")
    return state


def build_network(path, expected_sha256: str | None = None):
    """torch-fidelity's FeatureExtractorInceptionV3 with verified weights, and their sha256."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path, digest = resolve(INCEPTION_WEIGHTS, path, expected_sha256)
    _load_state(path)  # refuses arbitrary pickles before torch-fidelity's weights_only=False load
    try:
        net = FeatureExtractorInceptionV3("bench-inception", ["2048", "logits_unbiased"],
                                          feature_extractor_weights_path=str(path))
    except RuntimeError as exc:
        raise BenchError(f"{path} does not match the Inception-v3 architecture: {str(exc).splitlines()[0]}") from None
    return net.eval(), digest


def _trunk(net, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pool3 features and unbiased logits from a normalised (N, 3, 299, 299) batch."""
    for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                 "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                 "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool"):
        x = getattr(net, name)(x)
    pool = torch.flatten(x, 1)
    return pool, pool @ net.fc.weight.T


def pil_bicubic_resize(images: np.ndarray, size: int = SIZE) -> np.ndarray:
    """clean-fid's clean resize: per channel, PIL 'F' mode bicubic (antialiased), clip to [0, 255]."""
    out = np.empty((len(images), size, size, 3), np.float32)
    for i, img in enumerate(images):
        for c in range(3):
            ch = Image.fromarray(img[:, :, c].astype(np.float32), mode="F").resize((size, size), Image.BICUBIC)
            out[i, :, :, c] = np.asarray(ch).clip(0, 255)
    return out


class InceptionExtractor(Extractor):
    name = "inception"
    input_size = SIZE
    resize = "tf1-bilinear (torch-fidelity, no antialias)"
    dim = 2048
    batch_size = 64

    def __init__(self, weights_path=None, expected_sha256: str | None = None, device: str | None = None):
        self.net, self.weights_sha256 = build_network(weights_path, expected_sha256)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.net.to(self.device)
        self._spatial: list[torch.Tensor] = []
        # The TF graph names its 11 mixed blocks mixed, mixed_1, ..., mixed_10; torch-fidelity's port
        # calls them Mixed_5b..5d, 6a..6e, 7a..7c in the same order, so mixed_6 is Mixed_6d (the
        # fourth 17x17 block; Mixed_6c is mixed_5). Its `conv` is the 1x1 branch after ReLU.
        self.net.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: self._spatial.append(o[:, :7]))

    def preprocessing(self) -> dict:
        return super().preprocessing() | {"layers": ["2048", "logits_unbiased", "Mixed_6d.branch1x1[:7] (TF mixed_6/conv)"],
                                          "normalise": "(x-128)/128"}

    def _normalised(self, images: torch.Tensor) -> torch.Tensor:
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

        x = images.permute(0, 3, 1, 2).float()
        x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(SIZE, SIZE), align_corners=False)
        return (x - 128) / 128

    def forward(self, images):
        self._spatial.clear()
        pool, logits = _trunk(self.net, self._normalised(images))
        spatial = self._spatial.pop().permute(0, 2, 3, 1).flatten(1)  # NHWC order, like the TF graph
        return pool, logits, spatial


class CleanInceptionExtractor(InceptionExtractor):
    name = "clean-inception"
    resize = "pil-bicubic float, antialiased, clip [0,255] (clean-fid clean mode)"

    def _normalised(self, images: torch.Tensor) -> torch.Tensor:
        x = torch.from_numpy(pil_bicubic_resize(images.cpu().numpy())).permute(0, 3, 1, 2).to(self.device)
        return (x - 128) / 128
