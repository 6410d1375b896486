"""The pairing rules every subject-fidelity scorer shares (the package docstring says which);
tiny.py and paper.py subclass `SubjectFidelity` with their own networks."""

from __future__ import annotations

import itertools

import torch

from bench.errors import BenchError

NAMES = ("dino", "clip_i", "clip_t", "lpips", "clip_iqa")


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
    def measure(self, generated: torch.Tensor, prompts: list[str], per_prompt: int,
                subject: torch.Tensor) -> dict[str, float]:
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
        return {"dino": float((gd @ sd.T).mean()), "clip_i": float((gc @ sc.T).mean()),
                "clip_t": float((gc * text).sum(1).mean()),
                "lpips": float(self.lpips(generated[a], generated[b]).mean()),
                "clip_iqa": float(self.iqa(generated).mean())}
