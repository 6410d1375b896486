"""BitFit (Ben Zaken, Ravfogel, Goldberg, ACL 2022): only the bias terms train.

On a diffusers DiT these are the biases of every Linear and of the patch-embedding convolution,
including the adaLN modulation (`norm1.linear.bias`) and each block's own timestep embedder.
"""

from baselines._common import ParameterEfficientMethod, freeze, unfreeze
class BitFit(ParameterEfficientMethod):
    name = "bitfit"
    summary = "bias terms only"
    # Also unconditional UNets: their attention modules (LoRA) and biases (BitFit) are the same kind.
    families = frozenset({"class-transfer", "limited-data"})
    reference = "Ben Zaken et al., BitFit, ACL 2022 (arXiv 2106.10199); baseline in DiffFit Tab. 1"

    def prepare(self, model, ctx):
        freeze(model)
        unfreeze(p for n, p in model.named_parameters() if n.endswith(".bias"))
        return model
