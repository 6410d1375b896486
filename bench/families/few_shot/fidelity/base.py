"""The pairing rules every subject-fidelity scorer shares (the package docstring says which);
tiny.py and paper.py subclass `SubjectFidelity` with their own networks.

Subject regions (`regions`, the tiny profile): a whole-image DINO or CLIP-I cosine is mostly the
background's (the tiny subjects fill a fifth of the frame: the same scene without the subject
scores 0.7-0.8 against it). With the training images' subject boxes, each training image is
cropped to its subject, each generated image is searched over a fixed grid of square windows
(WINDOW_SIDES x WINDOW_STEPS^2, which the subject's scale range falls in), and a (training,
generated) pair scores the cosine of the training crop with its best-matching window: the
subject, wherever the generation put it, against the subject. CLIP-T, LPIPS and CLIP-IQA stay on
the whole image (they are about the prompt, diversity and quality of the whole generation)."""

from __future__ import annotations

import itertools

import torch

from bench.errors import BenchError

NAMES = ("dino", "clip_i", "clip_t", "lpips", "clip_iqa")
WINDOW_SIDES = (0.4, 0.5, 0.6)  # fractions of the image side (the tiny subjects: 0.4-0.57)
WINDOW_STEPS = 5  # positions per axis per side


def crop_boxes(images: torch.Tensor, boxes: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC crops of images[index[k]] at boxes[k] (top, left, bottom, right as fractions of
    the image; may reach outside it: border pixels repeat), resampled bilinearly to the image size."""
    import torch.nn.functional as F

    x = images.permute(0, 3, 1, 2).float()[index]
    n, _, h, w = x.shape
    top, left, bottom, right = boxes.float().unbind(1)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = right - left, left + right - 1  # x in [-1, 1]
    theta[:, 1, 1], theta[:, 1, 2] = bottom - top, top + bottom - 1
    grid = F.affine_grid(theta, [n, 3, h, w], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def window_grid() -> torch.Tensor:
    """The generated images' candidate subject windows, (W, 4) boxes."""
    out = []
    for side in WINDOW_SIDES:
        for i in range(WINDOW_STEPS):
            for j in range(WINDOW_STEPS):
                top, left = (1 - side) * i / (WINDOW_STEPS - 1), (1 - side) * j / (WINDOW_STEPS - 1)
                out.append([top, left, top + side, left + side])
    return torch.tensor(out)


class SubjectFidelity:
    """Subclasses embed; this class owns the pairing rules."""

    names = NAMES
    higher_is_better = {n: True for n in NAMES}  # lpips here is diversity

    def dino(self, images: torch.Tensor) -> torch.Tensor:
        """(n, d) L2-normalised DINO-like embeddings of uint8 NHWC images."""
        raise NotImplementedError

    def clip_image(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def clip_text(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def lpips(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(n,) perceptual distances between paired uint8 NHWC images."""
        raise NotImplementedError

    def iqa(self, images: torch.Tensor) -> torch.Tensor:
        """(n,) quality scores in [0, 1]."""
        raise NotImplementedError

    def info(self) -> dict:
        raise NotImplementedError

    @torch.inference_mode()
    def region_scores(self, generated: torch.Tensor, subject: torch.Tensor,
                      regions: torch.Tensor) -> tuple[float, float]:
        """DINO and CLIP-I of the subject region: mean over (training, generated) pairs of the
        best window's cosine with the training image's subject crop."""
        ref = crop_boxes(subject, regions, torch.arange(len(subject)))
        boxes = window_grid()
        w = len(boxes)
        win = crop_boxes(generated, boxes.repeat(len(generated), 1), torch.arange(len(generated)).repeat_interleave(w))
        out = []
        for embed in (self.dino, self.clip_image):
            r, g = embed(ref), embed(win).reshape(len(generated), w, -1)
            sims = torch.einsum("sd,gwd->sgw", r, g).amax(-1)  # (training, generated): the best window
            out.append(float(sims.mean()))
        return out[0], out[1]

    @torch.inference_mode()
    def measure(self, generated: torch.Tensor, prompts: list[str], per_prompt: int,
                subject: torch.Tensor, regions: torch.Tensor | None = None) -> dict[str, float]:
        """`regions`: the subject's box in each training image (see the module docstring); None:
        whole images, as the official evaluation."""
        if per_prompt < 2:
            raise BenchError("LPIPS diversity pairs images of one prompt: images_per_prompt must be >= 2")
        generated, subject = torch.as_tensor(generated), torch.as_tensor(subject)
        for what, x in (("generated", generated), ("subject", subject)):
            if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3 or len(x) == 0:
                raise BenchError(f"subject fidelity expects non-empty uint8 (N, H, W, 3) {what} images, got "
                                 f"{tuple(x.shape)} {x.dtype}")
        if len(generated) != len(prompts) * per_prompt:
            raise BenchError(f"{len(generated)} generated images for {len(prompts)} prompts x {per_prompt}")
        if generated.shape[1:] == subject.shape[1:]:  # one batch through each image network
            n = len(generated)
            both = torch.cat([generated, subject])
            (gd, sd), (gc, sc) = self.dino(both).split([n, len(subject)]), self.clip_image(both).split([n, len(subject)])
        else:
            gd, sd = self.dino(generated), self.dino(subject)
            gc, sc = self.clip_image(generated), self.clip_image(subject)
        text = self.clip_text(prompts).repeat_interleave(per_prompt, 0)
        pairs = [(p * per_prompt + i, p * per_prompt + j) for p in range(len(prompts))
                 for i, j in itertools.combinations(range(per_prompt), 2)]
        a, b = (torch.tensor(x) for x in zip(*pairs))
        dino, clip_i = float((gd @ sd.T).mean()), float((gc @ sc.T).mean())
        if regions is not None:
            dino, clip_i = self.region_scores(generated, subject, torch.as_tensor(regions))
        return {"dino": dino, "clip_i": clip_i,
                "clip_t": float((gc * text).sum(1).mean()),
                "lpips": float(self.lpips(generated[a], generated[b]).mean()),
                "clip_iqa": float(self.iqa(generated).mean())}
