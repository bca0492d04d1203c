"""Mutation testing of one package or module of stasis_dnd against that package's
own tests (stasis_dnd/core -> tests/core): runs mutmut from a fresh `mutants/`,
prints the score and every surviving mutant with its diff, and exits 1 if any
mutant survived. The shared settings are in setup.cfg's [mutmut] section; this
only narrows them to one target. Run it through scripts/mutation."""

from __future__ import annotations

import argparse
import configparser
import fnmatch
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

PACKAGE = Path("stasis_dnd")
# Outcomes that count as the tests noticing the mutant.
NOTICED = {"killed", "timeout", "caught by type check"}


def tests_for(target: Path) -> Path:
    """The tests of the package `target` is in: stasis_dnd/X[/...] -> tests/X."""
    return Path("tests") / target.relative_to(PACKAGE).parts[0].removesuffix(".py")


def skips_messages(target: Path) -> bool:
    """Whether setup.cfg's [mutation] skip_message_strings covers `target`."""
    parser = configparser.ConfigParser()
    parser.read("setup.cfg")
    patterns = parser.get("mutation", "skip_message_strings", fallback="").split()
    return any(
        fnmatch.fnmatch(f"{target}/", p) or fnmatch.fnmatch(str(target), p) for p in patterns
    )


def drop_message_mutants() -> None:
    """Make no mutants of string literals with a space in them: messages for a
    log line, a reason or an error, not words the code compares or sends."""
    import libcst as cst
    from mutmut.mutation import mutators

    def operator_string(node: cst.BaseString) -> Iterable[cst.BaseString]:
        if isinstance(node, cst.SimpleString):
            value = node.evaluated_value
            if isinstance(value, str) and " " in value:
                return
        yield from mutators.operator_string(node)

    # In place: mutmut's file mutation holds this very list.
    operators = mutators.mutation_operators
    assert isinstance(operators, list)
    operators[:] = [
        (kind, operator_string if op is mutators.operator_string else op)
        for kind, op in mutators.mutation_operators
    ]


def parse(argv: list[str]) -> tuple[Path, Path, int]:
    parser = argparse.ArgumentParser(prog="scripts/mutation", description=__doc__)
    parser.add_argument(
        "path", nargs="?", default="stasis_dnd/core", help="a package or module of stasis_dnd"
    )
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args(argv)
    target = Path(args.path.rstrip("/"))
    if not target.exists() or PACKAGE not in target.parents:
        parser.error(f"{args.path} is not a package or module under stasis_dnd/")
    tests = tests_for(target)
    if not tests.is_dir():
        parser.error(f"{target} has no tests of its own: {tests}/ does not exist")
    return target, tests, args.jobs


def main(argv: list[str]) -> int:
    target, tests, jobs = parse(argv)
    # mutmut imports its start-method setup at import time: import after parsing.
    import mutmut.__main__ as mutmut_main
    from mutmut.configuration import config
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files

    # A stale mutants/ of another target or of older tests gives stale verdicts.
    shutil.rmtree("mutants", ignore_errors=True)
    cfg = config()
    cfg.only_mutate = [f"{target}/*"] if target.is_dir() else [str(target)]
    cfg.pytest_add_cli_args_test_selection = [str(tests)]
    if skips_messages(target):
        drop_message_mutants()
        print("(string literals with a space in them are not mutated: see setup.cfg [mutation])")
    print(f"== mutation testing {target} against {tests}", flush=True)
    mutmut_main._run([], jobs)
    print()

    survivors: list[tuple[str, str, Path]] = []
    total_noticed = total_counted = 0
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        statuses = {name: status_by_exit_code[code] for name, code in data.exit_code_by_key.items()}
        counted = [s for s in statuses.values() if s != "skipped"]
        noticed = sum(s in NOTICED for s in counted)
        total_noticed += noticed
        total_counted += len(counted)
        if counted:
            print(f"{path}: {noticed}/{len(counted)} killed ({100 * noticed / len(counted):.1f}%)")
        survivors += [(n, s, path) for n, s in sorted(statuses.items()) if s not in NOTICED]
    if total_counted:
        score = 100 * total_noticed / total_counted
        print(f"score: {total_noticed}/{total_counted} mutants killed ({score:.1f}%)")
    for name, status, path in survivors:
        print(f"\n-- {name}: {status}")
        print(get_diff_for_mutant(name, path=path).rstrip())
    if survivors:
        print(
            f"\n{len(survivors)} mutant(s) of {target} survived {tests}: kill each with a test"
            " that pins the behaviour, or mark the line `# pragma: no mutate` with the reason"
            " no behaviour can tell them apart."
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
