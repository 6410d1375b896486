"""`bench ls`: list tasks, profiles, datasets and methods."""

from __future__ import annotations


NAME = "ls"
HELP = "list tasks, profiles, datasets and methods"


def add_arguments(p) -> None:
    p.add_argument("what", nargs="?", choices=["tasks", "families", "methods", "datasets", "profiles", "all"], default="all")
    for flag in ("tasks", "families", "methods", "datasets", "profiles"):
        p.add_argument(f"--{flag}", dest=f"only_{flag}", action="store_true", help=f"list {flag} only")
    p.add_argument("--task", help="limit datasets/profiles to this task")
    p.add_argument("--profile", default=None, help="profile for --datasets and --params (default: every profile)")
    p.add_argument("--params", action="store_true",
                   help="with methods: trainable parameters and their share of each profile's backbone")


def run(args, log) -> int:
    from bench.registry import composed_names, method_class, method_names
    from bench.tasks import available_tasks, read_task_file

    picked = [w for w in ("tasks", "families", "methods", "datasets", "profiles") if getattr(args, f"only_{w}")]
    what = picked or ([args.what] if args.what != "all" else ["tasks", "families", "profiles", "datasets", "methods"])
    if args.params and "methods" not in what:
        what.append("methods")
    tasks = available_tasks()
    if args.task and args.task not in tasks:
        from bench.errors import unknown

        raise unknown("task", args.task, tasks)
    chosen = {args.task: tasks[args.task]} if args.task else tasks
    files = {name: read_task_file(path) for name, path in chosen.items()}
    if "tasks" in what:
        log("tasks:")
        for name, tf in files.items():
            log(f"  {name}@v{tf.version:<3} {tf.family:<18} {tf.description.strip().split('.')[0]}")
    if "families" in what:
        from bench.families import family_class, family_names

        log("families:")
        for name in family_names():
            cls = family_class(name)
            log(f"  {name:<18} {cls.summary}; backbones: {', '.join(sorted(cls.backbones))}; "
                f"extra data: {', '.join(cls.provides) or 'none'}; tracks: {', '.join(cls.trackable) or 'nothing'}")
    if "profiles" in what:
        log("profiles:")
        for name, tf in files.items():
            log(f"  {name}: {', '.join(tf.profiles)}")
    if "datasets" in what:
        from bench.tasks import load_task

        log("datasets:")
        for name, tf in files.items():
            for profile in [args.profile] if args.profile else list(tf.profiles):
                task = load_task(name, profile)
                for key, ds in task.spec.datasets.items():
                    src = (f"hub {ds.hub.path}@{(ds.hub.revision or '-')[:10]}" if ds.hub
                           else f"synthetic:{ds.synthetic.generator} (stands in for {ds.stands_in_for})")
                    classes = f"{ds.num_classes:>4} classes" if ds.num_classes else "   unlabelled"
                    log(f"  {name} [{profile}] {key:<14} {classes}  {src}")
    if "methods" in what:
        from bench.families import family_class
        from bench.registry import build_method

        # With --task: only the methods that support its family (a run of any other is refused).
        families = {family_class(tf.family).name for tf in files.values()} if args.task else None
        fits = (lambda name: True) if families is None else \
            (lambda name: any(build_method(name).supports(f) for f in families))
        log("methods:" if families is None else f"methods (for family {', '.join(sorted(families))}):")
        for name in method_names():
            if fits(name):
                log(f"  {name:<24} {method_class(name).summary}")
        for name in composed_names():
            if fits(name):
                log(f"  {name:<24} (composed)")
        if args.params:
            for name, tf in files.items():
                _log_params(name, tf, [args.profile] if args.profile else list(tf.profiles), log)
    return 0


def _log_params(task_name, tf, profiles, log) -> None:
    """Per method and profile: trainable parameters and their share of the backbone, counted on
    the profile's backbone architecture built without weights (bench.params)."""
    from bench.families import family_class
    from bench.params import count_parameters, reported_shares
    from bench.registry import build_method, composed_names, method_names
    from bench.report.reported import LEGEND, MARKS
    from bench.tasks import load_task

    specs = {profile: load_task(task_name, profile).spec.backbone for profile in profiles}
    header = "".join(f"{profile + ': trainable':>22} {'share':>8}" for profile in profiles)
    log(f"trainable parameters, {task_name} (share of the backbone as loaded; architecture built without weights):")
    reported = reported_shares(task_name)
    log(f"  {'method':<24}{header}   reported")
    for name in [*method_names(), *composed_names()]:
        method = build_method(name)
        if not method.supports(family_class(tf.family).name):
            continue
        cells = ""
        for profile in profiles:
            count = count_parameters(method, specs[profile])
            cells += f"{count.trainable:>22,} {100 * count.fraction:>7.3f}%"
        r = reported.get(name)
        note = f"{r.value:g}%{r.mark}" + (f" ({r.note})" if r.note else "") if r else ""
        log(f"  {name:<24}{cells}   {note}")
    for source in dict.fromkeys(r.source for r in reported.values()):
        log(f"  reported: {source}")
    marks = [LEGEND[c] for c in sorted({r.confidence for r in reported.values()}) if MARKS[c]]
    if reported:
        log("  (" + "; ".join([*marks, "baselines/README.md explains each difference"]) + ")")
