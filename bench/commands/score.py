"""`bench score`: score a folder of images against a reference folder or statistics file, the
way clean-fid / torch-fidelity users expect, from content-cached features."""

from __future__ import annotations

import json
from pathlib import Path

from bench.commands._args import csv_list
from bench.errors import BenchError

NAME = "score"
HELP = "score a folder of images against a reference folder or .npz statistics (fid, kid, is, prc, ...)"


def add_arguments(p) -> None:
    p.add_argument("--images", required=True, type=Path, help="folder of generated images (PNG/JPEG, RGB)")
    p.add_argument("--ref", required=True, type=Path,
                   help="reference: a folder of images, or an .npz written by --save-ref")
    p.add_argument("--metrics", type=csv_list, default=["fid"],
                   help="comma-separated: fid,kid,is,prc,sfid,cfid,fd_dinov2,cmmd,rmd,entropy,memorization,l2")
    p.add_argument("--extractor", default="inception",
                   help="feature extractor for fid/kid/is/prc/...: inception (default), clean-inception, clip, "
                        "dinov2, tiny")
    p.add_argument("--weights", type=Path, help="weights file for --extractor (else its env var / hub cache)")
    p.add_argument("--weights-sha256", help="expected sha256 (or prefix) of --weights, for converted copies")
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--save-ref", type=Path, help="also write the reference features and statistics to this .npz")
    p.add_argument("--out", type=Path, help="result JSON (default: $BENCH_RESULTS/scores/<key>.json)")


def _extractor_kwargs(args) -> dict:
    kw = {}
    if args.weights:
        kw["weights_path"] = args.weights
    if args.weights_sha256:
        if args.extractor == "tiny":
            raise BenchError("--weights-sha256 is not used by the tiny extractor")
        kw["expected_sha256"] = args.weights_sha256
    # Both Inception flavours run the same network file, so --weights serves cfid next to fid.
    if args.extractor in ("inception", "clean-inception"):
        return {"inception": kw, "clean-inception": kw}
    return {args.extractor: kw}


def _load_ref_file(path: Path, extractor):
    """(Features or None, FeatureStats or None) from an .npz written by --save-ref (or any .npz
    with `features` and/or `mu`, `sigma`), after checking it matches the extractor."""
    import numpy as np

    from bench.features.base import Features
    from bench.metrics import FeatureStats

    if path.suffix != ".npz" or not path.is_file():
        raise BenchError(f"--ref {path}: expected a folder of images or an .npz statistics file")
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:
        raise BenchError(f"--ref {path} is not a readable .npz ({type(exc).__name__})") from None
    if "extractor" in arrays:
        meta = json.loads(str(arrays["extractor"]))
        if meta != extractor.preprocessing():
            raise BenchError(f"--ref {path} was made with extractor {meta.get('name')} "
                             f"(weights {str(meta.get('weights'))[:12]}), not {extractor.name} "
                             f"(weights {extractor.weights_sha256[:12]}); features from different extractors "
                             f"cannot be compared")
    stats = FeatureStats.load(path) if "mu" in arrays else None
    feats = arrays.get("features")
    dim = feats.shape[1] if feats is not None and feats.ndim == 2 else (stats.dim if stats else None)
    if dim is None:
        raise BenchError(f"--ref {path} holds neither (N, D) features nor mu/sigma")
    if dim != extractor.dim:
        raise BenchError(f"--ref {path} has {dim}-d features but extractor {extractor.name} gives {extractor.dim}-d")
    if feats is None:
        return None, stats
    return Features(feats, arrays.get("logits"), arrays.get("spatial"), arrays.get("labels")), stats


def run(args, log) -> int:
    import warnings

    import numpy as np

    from bench.evaluate import check_metric_names, compute_metrics, extractors_needed
    from bench.features import get_extractor
    from bench.features.cache import cached_features, images_sha256
    from bench.features.images import load_folder
    from bench.metrics import feature_stats, frechet_distance
    from bench.paths import results_dir
    from bench.results import write_json_atomic
    from bench.spec import EvaluationSpec, canonical_hash

    check_metric_names(args.metrics)
    if args.save_ref and args.save_ref.suffix != ".npz":
        raise BenchError(f"--save-ref {args.save_ref}: the file name must end in .npz")
    if args.kid_subset_size < 2 or args.kid_subsets < 1:
        raise BenchError("--kid-subset-size must be >= 2 and --kid-subsets >= 1")
    spec = EvaluationSpec(extractor=args.extractor, metrics=args.metrics, reference="eval",
                          kid_subset_size=args.kid_subset_size, kid_subsets=args.kid_subsets)
    needed = extractors_needed(args.metrics, args.extractor)
    ref_is_file = not args.ref.is_dir()
    if ref_is_file and needed != [args.extractor]:
        raise BenchError(f"metrics {', '.join(m for m in args.metrics if m in ('cfid', 'fd_dinov2', 'cmmd'))} need "
                         f"their own extractors; pass --ref as a folder of images")
    # Validate every input before extracting or writing anything.
    gen_images = load_folder(args.images)
    ref_images = None if ref_is_file else load_folder(args.ref)
    n_ref = None if ref_images is None else len(ref_images)
    if "kid" in args.metrics:
        n_min = min(len(gen_images), n_ref or len(gen_images))
        if n_min < args.kid_subset_size:
            raise BenchError(f"KID subset size {args.kid_subset_size} exceeds the number of images "
                             f"({len(gen_images)} generated, {n_ref if n_ref is not None else '?'} reference); "
                             f"lower --kid-subset-size")
    if "is" in args.metrics and len(gen_images) < 10:
        raise BenchError(f"the Inception Score uses 10 splits and needs at least 10 images, got {len(gen_images)}")

    kwargs = _extractor_kwargs(args)
    feats, info = {}, {}
    ref_stats = None
    for name in needed:
        ex = get_extractor(name, **kwargs.get(name, {}))
        if ref_is_file:
            ref_f, ref_stats = _load_ref_file(args.ref, ex)
            if ref_f is None and args.metrics != ["fid"]:
                raise BenchError(f"--ref {args.ref} holds only mu/sigma, enough for fid but not "
                                 f"{', '.join(m for m in args.metrics if m != 'fid')}; save it with --save-ref")
            if "kid" in args.metrics and len(ref_f.features) < args.kid_subset_size:
                raise BenchError(f"KID subset size {args.kid_subset_size} exceeds the {len(ref_f.features)} "
                                 f"reference samples in {args.ref}; lower --kid-subset-size")
            ref_hit = True
        else:
            ref_f, ref_hit = cached_features(ex, ref_images, desc=f"{name} features (reference)")
        gen_f, gen_hit = cached_features(ex, gen_images, desc=f"{name} features (generated)")
        feats[name] = (gen_f, ref_f)
        info[name] = {"preprocessing": ex.preprocessing(), "reference_extracted": 0 if ref_hit else n_ref,
                      "generated_extracted": 0 if gen_hit else len(gen_images)}
        log(f"{name}: reference {'from ' + str(args.ref) if ref_is_file else 'cache' if ref_hit else 'extracted'}"
            f" ({info[name]['reference_extracted'] or 0} images extracted), generated "
            f"{'cache' if gen_hit else 'extracted'} ({info[name]['generated_extracted'] or 0} images extracted)")

    gen_f, ref_f = feats.get(args.extractor) or next(iter(feats.values()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if ref_f is None:  # statistics-only reference: FID alone
            metrics = {"fid": frechet_distance(feature_stats(gen_f.features, "generated"), ref_stats)}
        else:
            metrics = compute_metrics(gen_f, ref_f, spec, other=feats)
    for message in dict.fromkeys(str(w.message) for w in caught):
        log(f"warning: {message}")
    metrics = json.loads(json.dumps(metrics, default=float))

    if args.save_ref:
        if ref_f is None:
            raise BenchError("--save-ref needs reference features (a folder, or an .npz with features)")
        ex_meta = json.dumps(info[args.extractor]["preprocessing"], sort_keys=True)
        st = feature_stats(ref_f.features, "reference")
        arrays = {"features": ref_f.features, "mu": st.mu, "sigma": st.sigma, "n": st.n, "extractor": ex_meta}
        arrays |= {k: v for k, v in (("logits", ref_f.logits), ("spatial", ref_f.spatial)) if v is not None}
        args.save_ref.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.save_ref.with_name(args.save_ref.stem + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(args.save_ref)
        log(f"wrote  {args.save_ref}  (reference features + statistics)")

    result = {
        "metrics": metrics,
        "images": {"dir": str(args.images.resolve()), "n": len(gen_images), "sha256": images_sha256(gen_images)},
        "reference": ({"file": str(args.ref.resolve())} if ref_is_file else
                      {"dir": str(args.ref.resolve()), "n": n_ref, "sha256": images_sha256(ref_images)}),
        "extractors": info,
        "settings": {"kid_subset_size": args.kid_subset_size, "kid_subsets": args.kid_subsets, "kid_seed": 0,
                     "prc_k": 3, "is_splits": 10},
    }
    key = canonical_hash({"images": result["images"], "reference": result["reference"], "metrics": args.metrics,
                          "extractor": args.extractor}, 16)
    out = args.out or results_dir() / "scores" / f"{key}.json"
    write_json_atomic(out, result)
    for name, value in metrics.items():
        if isinstance(value, dict):
            log(f"{name:<13}" + "  ".join(f"{k}={v:.6g}" for k, v in value.items() if isinstance(v, float)))
        else:
            log(f"{name:<13}{value:.6g}")
    log(f"wrote  {out}")
    return 0
