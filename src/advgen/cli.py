"""The ``advgen`` command: ``advgen smoke`` runs the whole pipeline on the smoke profile
in a scratch copy of the repository; ``advgen c3`` prints the lecture's worked example;
``advgen compare`` shows the headline metrics of several revisions side by side.

Subcommands are the rows of :data:`COMMANDS`: to add one, write its ``add_arguments`` and
``run`` functions and append a :class:`Command`; ``advgen --help`` lists it from its ``help``."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .attacks.claims import c3_worked_example
from .io import atomic_write_json, venv_env
from .repo import set_profile


def _run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, env=venv_env())


def copy_repo(src: Path, dst: Path) -> None:
    """Copy the files git tracks (and untracked, not ignored ones) from ``src`` into a fresh git repo ``dst``."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=src, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (src / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, dst / rel)
    _run(["git", "init", "-q"], dst)
    if not (dst / ".dvc").exists():
        _run([sys.executable, "-m", "dvc", "init", "-q"], dst)


def smoke(src: Path, dst: Path) -> float:
    """Run ``dvc repro`` on the smoke profile in a copy of ``src`` at ``dst``; return wall seconds."""
    copy_repo(src, dst)
    set_profile(dst, "smoke")
    start = time.perf_counter()
    _run([sys.executable, "-m", "dvc", "repro", "-q"], dst)
    return time.perf_counter() - start


DESCRIPTION = """\
advgen is a DVC benchmark suite that reproduces a deep-learning lecture's claims on
adversarial robustness and generative models: one pipeline stage per technique
(`dvc repro` runs them), and a claims table with a verdict for each claim."""
EPILOG = "Run `advgen COMMAND --help` for a command's options."


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks, and lists subcommands without argparse's extra
    ``COMMAND`` line above them."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=24, width=100)

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):  # argparse counts them one indent short
            for sub in action._get_subactions():
                width = len(self._format_action_invocation(sub)) + self._current_indent + 4
                self._action_max_length = max(self._action_max_length, width)

    def _format_action(self, action: argparse.Action) -> str:
        text = super()._format_action(action)
        if isinstance(action, argparse._SubParsersAction):
            text = text.split("\n", 1)[1]
        return text


def _smoke_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, help="where to make the copy (default: a new temp folder)")


def _smoke(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    dst = args.dir or Path(tempfile.mkdtemp(prefix="advgen-smoke-"))
    if dst.exists() and any(dst.iterdir()):
        parser.error(f"--dir {dst} is not empty")
    dst.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    wall = smoke(Path.cwd(), dst)
    print(f"smoke profile: dvc repro took {wall:.1f} s; results in {dst}/reports/summary.md")


def _c3(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    print(json.dumps(c3_worked_example(), indent=2))


COMPARE_DESCRIPTION = """\
Show the headline metrics (the `metrics` DVC reports, reports/headline/<stage>.json) of several
revisions side by side: one row per metric, one column per revision, and a `change` column
(new - old) for two. Rows equal in every column are hidden unless --all.

  advgen compare                   HEAD vs the workspace (like `dvc metrics diff`)
  advgen compare main              main vs the workspace
  advgen compare HEAD~1 HEAD       two commits, with the change
  advgen compare v1 v2 workspace   several revisions, in this order
  advgen compare --exp             HEAD and every experiment of HEAD (`dvc exp run` results)
  advgen compare HEAD my-exp       a commit and an experiment, by name
  advgen compare main HEAD --markdown > table.md   for a pull request

REV is anything git resolves (sha, branch, tag, HEAD~1), an experiment name, or `workspace`."""


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("revs", nargs="*", metavar="REV",
                   help="revisions to compare, in order (none: HEAD and workspace; one: it and workspace)")
    p.add_argument("--markdown", "--md", action="store_true", help="print a GitHub Markdown table")
    p.add_argument("--all", dest="show_all", action="store_true", help="also show metrics that did not change")
    p.add_argument("--exp", action="store_true",
                   help="add a column for every experiment of HEAD (after REVs, default HEAD)")


def _compare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .compare import CompareError, compare  # imported when used: it is the only command that needs it

    try:
        out = compare(args.revs, markdown=args.markdown, show_all=args.show_all, experiments=args.exp)
    except CompareError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(out)
    return 0


CLAIMS_DESCRIPTION = """\
Print the claims table at a glance: each claim of the lecture, its verdict and its headline
figure, from reports/claims.json (the committed results, or the workspace's after `dvc repro`).

  advgen claims                  in the terminal
  advgen claims --markdown       as a GitHub Markdown table (the README's results section)
  advgen claims --readme         rewrite README.md's results section (the report stage does it too)
  git show v1:reports/claims.json | advgen claims --file -    an older revision's"""


def _claims_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", default="reports/claims.json", help="the claims file, - for stdin (default: %(default)s)")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--markdown", "--md", action="store_true", help="print a GitHub Markdown table")
    form.add_argument("--readme", type=Path, nargs="?", const=Path("README.md"), default=None, metavar="PATH",
                      help="rewrite the results section of PATH (default README.md) instead of printing")


def _claims_context(reports: Path) -> tuple[dict[str, str], str]:
    """The claims' section links the report beside the claims file shows (its summary.md), and
    the active profile of params.yaml, as the report stage renders them."""
    from . import areas, glance
    from .config import active_profile, load_params
    from .report import claim_links

    links = claim_links(areas.report_parts())
    summary = reports / "summary.md"
    if summary.is_file():
        links = glance.shown(links, summary.read_text())
    try:
        profile = active_profile(load_params())
    except (OSError, ValueError):  # no params.yaml here: the benchmark's own profile
        profile = "default"
    return links, profile


def _claims(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import glance

    try:
        raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        claims = json.loads(raw)
        links, profile = _claims_context(Path(args.file).parent if args.file != "-" else Path("reports"))
        if args.readme is not None:
            changed = glance.update_readme(args.readme, claims, links, profile)
            print(f"{args.readme}: results section {'rewritten' if changed else 'already current'}")
        else:
            sys.stdout.write(glance.markdown(claims, links, profile) if args.markdown else glance.text(claims))
    except (OSError, json.JSONDecodeError, glance.GlanceError) as exc:
        print(f"{parser.prog}: error: {args.file if not isinstance(exc, glance.GlanceError) else ''}"
              f"{': ' if not isinstance(exc, glance.GlanceError) else ''}{exc}", file=sys.stderr)
        return 2
    return 0


COST_DESCRIPTION = """\
What `dvc repro` would run, and how long, from the committed cost files (reports/cost/, this
repository's last run of each stage). On a fresh clone (no DVC cache) a target pulls in every
stage upstream of it; -s counts the targets alone, as `dvc repro -s` runs them.

  advgen cost                    the whole pipeline (`make repro`)
  advgen cost robustness@cnn     one model's worst case and all it needs
  advgen cost -s patch -v        one stage alone, with the per-stage list"""


def _cost_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", nargs="*", metavar="STAGE", help="stages as `dvc repro` takes them (none: all)")
    p.add_argument("-s", "--single-item", dest="single", action="store_true", help="the targets alone")
    p.add_argument("-v", "--verbose", action="store_true", help="list each stage and its time")


def _cost(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .costs import CostError, plan, render

    try:
        sys.stdout.write(render(plan(args.targets, single=args.single), verbose=args.verbose))
    except CostError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _screenshot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("html", nargs="?", type=Path, default=Path("reports/index.html"), help="the page (default: %(default)s)")
    p.add_argument("png", nargs="?", type=Path, default=Path("reports/screenshots/index.png"),
                   help="where to save the PNG (default: %(default)s); PNG.json beside it records the page's sha256")
    p.add_argument("--max-height", type=int, default=2400, help="crop the full-page PNG to this height (0: no crop)")


def _screenshot(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .browser import BrowserError, crop_png, inspect_page

    try:
        report = inspect_page(args.html, args.png)
    except BrowserError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    if args.max_height:
        crop_png(args.png, args.max_height)
    if report.ok:  # which page the picture shows: tests/test_glance.py holds it against the committed page
        atomic_write_json(args.png.with_suffix(".json"), {
            "page": str(args.html), "page_sha256": hashlib.sha256(args.html.read_bytes()).hexdigest()})
    print(f"{args.png}: {len(report.images)} images ({len(report.broken_images)} broken), "
          f"{report.table_rows} claims rows, {len(report.console_errors)} console errors")
    return 0 if report.ok else 1


RERUN_DESCRIPTION = """\
The scheduled benchmark rerun (.github/workflows/benchmark.yml calls it): `dvc pull` from the
remote, `dvc repro` on PROFILE, `dvc push`, then `advgen compare --markdown` against the
reference as the run's summary (also appended to $GITHUB_STEP_SUMMARY when set). Exits 1 on a
regression: a sanity check that now fails, a claim whose verdict changed, a figure whose 95%
interval no longer overlaps its interval in the reference, or, where the recorded environment
matches, a stage with the reference's inputs whose outputs are not byte-identical (cost files and
persist caches excepted). Exits 2 when a step fails.

examples:
  advgen rerun --profile default                 against the last tag
  advgen rerun --profile smoke --reference v1.2 --summary summary.md
  advgen rerun --profile default -f -s train@cnn  rebuild one stage and check it byte for byte"""


def _rerun_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", nargs="*", metavar="STAGE", help="stages for `dvc repro` (none: all)")
    p.add_argument("--profile", default="default", help="the params profile to run (default: %(default)s)")
    p.add_argument("--reference", default=None, help="revision to compare with (default: the last tag)")
    p.add_argument("--remote", default=None, help="DVC remote (default: the repository's default remote)")
    p.add_argument("--summary", type=Path, default=None, help="also append the summary (markdown) to this file")
    p.add_argument("--no-pull", dest="pull", action="store_false", help="do not restore the cache first")
    p.add_argument("--no-push", dest="push", action="store_false", help="do not push the results")
    p.add_argument("-f", "--force", action="store_true", help="rerun even unchanged stages (dvc repro -f)")
    p.add_argument("-s", "--single-item", action="store_true", help="the targets alone (dvc repro -s)")


def _rerun(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import yaml

    from .rerun import RerunError, rerun

    try:
        code, text = rerun(Path.cwd(), args.profile, args.reference, args.remote, args.pull, args.push, args.force,
                           args.single_item, args.targets, args.summary)
    except (RerunError, ValueError, OSError, yaml.YAMLError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(text)
    return code


SWEEP_DESCRIPTION = """\
A grid of params as DVC experiments, through DVC's queue (nothing home-made): one
`dvc exp run --queue -n NAME -S KEY=VALUE ...` per point; with --run, `dvc exp run --run-all
--jobs N` runs them (each in a temporary copy, the cache shared), then `advgen compare --exp`
prints their headline metrics beside HEAD's. Without --run, start them later with
`dvc queue start --jobs N` and watch `dvc queue status`.

Each KEY must exist in params.yaml (a typo is refused before anything is queued).

examples:
  advgen sweep dimension.eps=0.05,0.1 --target dimension --run    C4 at two eps
  advgen sweep seed=0,1,2 --target train@cnn -j 2 --run           one model, three seeds
  advgen sweep patch.w_tv=0.03125,0.125 seed=0,1 --target patch   a 2x2 grid, queue only
  advgen sweep diffusion.p_uncond=0.1,0.2 --target diffusion      queue only; dvc queue start runs it"""


def _sweep_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("axes", nargs="+", metavar="KEY=V1,V2", help="a params.yaml key and its values (repeat for a grid)")
    p.add_argument("--target", action="append", default=[], metavar="STAGE", help="stages to run (default: all)")
    p.add_argument("--run", action="store_true", help="run the queue now and print the comparison")
    p.add_argument("-j", "--jobs", type=int, default=1, help="experiments at a time (default: %(default)s)")
    p.add_argument("--prefix", default="", help="prefix of the experiment names")


def _sweep(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .compare import CompareError, compare, run_dvc
    from .sweep import SweepError, check_keys, sweep

    try:
        check_keys(Path("params.yaml"), args.axes)
        names = sweep(args.axes, args.target, lambda a: run_dvc(a, what=f"dvc {' '.join(a)}: "), args.run,
                      args.jobs, args.prefix)
        print(f"queued {len(names)} experiments: {', '.join(names)}")
        if args.run:
            print(compare([], experiments=True))
    except (SweepError, CompareError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


EVALUATE_DESCRIPTION = """\
Evaluate a classifier trained outside the pipeline as RobustBench reports one: the robustness
stage's cascade (FGSM, PGD, APGD-CE, APGD-T, Square), its sanity checks and AutoAttack's
zero-gradient and softmax-output flags, on the leaderboard's evaluation images of the active
profile (params.yaml), written as one JSON entry: clean, claimed and worst-case accuracy per eps,
threat model, forward passes, checks.

PATH is a folder with model.safetensors and model.json ({"arch": a zoo architecture, optional
"arch_kwargs", "claimed_accuracy", "source"}), or a TorchScript file (torch.jit.save). Pickles
(torch.save, .pkl) are refused, never loaded. To rank the model in the report's leaderboard too,
add its folder to params.yaml's imports.models and its name to attack.models (README, "Add your
own model").

examples:
  advgen evaluate models/cnn --eps 0.1 --n 200         one eps, 200 images
  advgen evaluate my_model.pt --claimed 0.91 --out my_model.json"""


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path, metavar="PATH", help="model folder (safetensors + JSON) or TorchScript file")
    p.add_argument("--name", help="the entry's name (default: PATH's name)")
    p.add_argument("--claimed", type=float, help="accuracy the model's authors claim (fraction)")
    p.add_argument("--eps", type=float, action="append", help="L-inf eps (repeat; default: attack.eps_linf)")
    p.add_argument("--n", type=int, help="evaluation images (default: the profile's attack.n_eval)")
    p.add_argument("--defended", action="store_true", help="use the defended models' grid and sizes")
    p.add_argument("--out", type=Path, help="where to write the entry (default: <name>.json here)")


def _evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .attacks.benchmark import EvaluateError, evaluate_path
    from .config import ConfigError, load_params
    from .io import atomic_write_json

    name = args.name or args.path.stem
    try:
        entry = evaluate_path(args.path, load_params(), name=name, claimed=args.claimed, eps=args.eps, n_eval=args.n,
                              defended=args.defended, log=lambda s: print(f"[evaluate {name}] {s}", file=sys.stderr))
    except (EvaluateError, ConfigError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    from .utils import round_floats

    out = args.out or Path(f"{name}.json")
    atomic_write_json(out, round_floats(entry))  # the whole entry or nothing
    worst = ", ".join(f"eps {e}: {100 * v:.1f}%" for e, v in entry["autoattack_acc"].items())
    raised = [k for k, v in entry["flags"].items() if v["raised"]]
    print(f"{name}: clean {100 * entry['clean_acc']:.1f}%, worst case {worst} (n={entry['n_eval']}); "
          f"checks failed {entry['checks_failed']}; flags {', '.join(raised) or 'none'}; written to {out}")
    return 0


@dataclass(frozen=True)
class Command:
    """One ``advgen`` subcommand: its name, its one-line help (listed by ``advgen --help``), how it
    adds its arguments and what it runs (``run(args, parser)``; a non-zero int is the exit status)."""

    name: str
    help: str
    run: Callable[[argparse.Namespace, argparse.ArgumentParser], int | None]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    description: str | None = None


COMMANDS: tuple[Command, ...] = (
    Command("smoke", "run the pipeline on the smoke profile in a scratch copy", _smoke, _smoke_arguments),
    Command("c3", "print the lecture's logistic-regression example (C3)", _c3),
    Command("claims", "each claim's verdict and headline figure (reports/claims.json)", _claims, _claims_arguments,
            CLAIMS_DESCRIPTION),
    Command("cost", "the stages `dvc repro TARGET` runs and their recorded time", _cost, _cost_arguments,
            COST_DESCRIPTION),
    Command("compare", "headline metrics of commits or experiments side by side", _compare, _compare_arguments,
            COMPARE_DESCRIPTION),
    Command("rerun", "scheduled rerun: pull, repro a profile, push, fail on a regression", _rerun,
            _rerun_arguments, RERUN_DESCRIPTION),
    Command("sweep", "queue a grid of params as DVC experiments (and run them)", _sweep, _sweep_arguments,
            SWEEP_DESCRIPTION),
    Command("evaluate", "a model you bring, through the cascade and checks, as a RobustBench-style entry",
            _evaluate, _evaluate_arguments, EVALUATE_DESCRIPTION),
    Command("screenshot", "open the HTML report in headless Chromium, check it and save a PNG", _screenshot,
            _screenshot_arguments),
)


def build_parser() -> argparse.ArgumentParser:
    """The ``advgen`` parser, one subparser per row of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="advgen", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True, title="commands", metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.description or command.help,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if command.add_arguments:
            command.add_arguments(p)
        p.set_defaults(_command=command, _parser=p)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    status = args._command.run(args, args._parser)
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main()
