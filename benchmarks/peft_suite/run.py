"""How much of HF PEFT's own test suite passes against adapterlab?

Runs HF PEFT's LoRA / prompt tuning / P-tuning / prefix tuning tests offline twice: once against the
real ``peft`` (the baseline, cached) and once against adapterlab through a ``peft`` alias built in a
temporary folder (see ``pytest_peft_alias.py``; nothing is installed). The score is the share of
the tests that pass with real ``peft`` that also pass with adapterlab. Not run by CI.

    git --git-dir=/work/.mirror/huggingface+peft/repo archive HEAD tests | tar -x -C /tmp/peft-tests
    python benchmarks/peft_suite/run.py /tmp/peft-tests [--out DIR] [--files test_config ...]
        [--timeout 1800] [--rebaseline]

It prints, per file, passed / failed / skipped for both runs, the adapterlab failures of tests HF
passes grouped by cause, the names most often missing, and the totals. Results stay in ``--out``
(default ``/tmp/peft-suite-out``): ``baseline.json`` (reused unless ``--rebaseline`` or the
checkout changed) and ``adapterlab.json``.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGIN = HERE / "pytest_peft_alias.py"
SELECTION = HERE / "peft_suite_selection.py"

FILES = (
    "test_custom_models",
    "test_decoder_models",
    "test_encoder_decoder_models",
    "test_feature_extraction_models",
    "test_seq_classifier",
    "test_config",
    "test_tuners_utils",
    "test_other",
    "test_initialization",
    "test_mapping",
    "test_low_level_api",
    "test_trainable_tokens",
    "test_target_parameters",
    "test_lora_variants",
    "test_bdlora",
    "test_velora",
)

# test-only packages HF's tests import that this environment may lack; put beside the plugin
TEST_DEPENDENCIES = ("parameterized",)

NETWORK = re.compile(
    r"offline|couldn't connect|could not connect|LocalEntryNotFound|OfflineModeIsEnabled|huggingface\.co|"
    r"Cannot find the requested files|not in the local Hugging Face cache|ConnectionError|MaxRetryError|"
    r"is not a local folder and is not a valid model identifier",
    re.IGNORECASE,
)
REFUSED = re.compile(r"^(adapterlab\.errors\.\w+|RefusedMethod|[\w.]*pytest_peft_alias\.RefusedMethod)")
MISSING = re.compile(r"^([\w.]*MissingName|ImportError|ModuleNotFoundError|AttributeError|NameError)\b")
NOT_RUN = "not run: the file's run stopped (timeout) before reaching it"
ASSERTION = re.compile(r"^(AssertionError|assert |Failed: DID NOT RAISE|[\w.]*AssertionError)")


def cause(message: str) -> str:
    """The failure group of one failure message."""
    if message == NOT_RUN:
        return "not run (timeout)"
    if NETWORK.search(message):
        return "needs network"
    if MISSING.match(message):
        return "missing name"
    if REFUSED.match(message):
        return "refused feature"
    if ASSERTION.match(message) or message.startswith("assert"):
        return "wrong result"
    return "other error"


def prepare_folder(work: Path) -> Path:
    """The temporary PYTHONPATH folder: the plugin, plus HF's test-only dependencies if missing."""
    folder = work / "pythonpath"
    folder.mkdir(parents=True, exist_ok=True)
    for source in (PLUGIN, SELECTION):
        shutil.copy(source, folder / source.name)
    missing = [name for name in TEST_DEPENDENCIES if importlib.util.find_spec(name) is None]
    if missing and not all((folder / name).exists() for name in missing):
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(folder), *missing], check=True
        )
    return folder


def run_file(checkout: Path, test_file: str, backend: str, folder: Path, results: Path, timeout: int) -> None:
    """One pytest process for one file and backend; outcomes go to ``results`` as JSON lines."""
    results.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "PEFT_SUITE_BACKEND": backend,
        "PEFT_SUITE_SELECT": "1",
        "PEFT_SUITE_RESULTS": str(results),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(folder.parent / "hf_home"),  # an empty cache: every Hub download fails the same way
        # HF's helpers switch offline mode off for a model's first download; a closed local port makes
        # that attempt fail at once instead of waiting for a network timeout
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
    }
    command = [
        "timeout",
        "-k",
        "10",
        str(timeout),
        sys.executable,
        "-m",
        "pytest",
        f"tests/{test_file}.py",
        "-p",
        "pytest_peft_alias",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-q",
        "-o",
        "addopts=",
        "--tb=no",
        "-W",
        "ignore",
    ]
    completed = subprocess.run(
        command, cwd=checkout, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if completed.returncode == 124:
        print(f"  {test_file} ({backend}): stopped after {timeout}s; results so far kept", flush=True)


def read_results(results: Path) -> dict[str, dict[str, str]]:
    """nodeid -> {outcome, message}; a failure in any phase makes the test failed."""
    outcomes: dict[str, dict[str, str]] = {}
    if not results.exists():
        return outcomes
    for line in results.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        previous = outcomes.get(record["id"])
        if (
            previous is None
            or previous["outcome"] == "passed"
            or record["outcome"] in ("failed", "collect-error")
        ):
            outcomes[record["id"]] = {"outcome": record["outcome"], "message": record["message"]}
    return outcomes


def run_backend(checkout: Path, backend: str, files: list[str], folder: Path, timeout: int) -> dict:
    per_file = {}
    for test_file in files:
        print(f"running {test_file} against {backend} ...", flush=True)
        results = folder.parent / f"{backend}-{test_file}.jsonl"
        run_file(checkout, test_file, backend, folder, results, timeout)
        per_file[test_file] = read_results(results)
    return per_file


def file_digest(checkout: Path, test_file: str) -> str:
    """What a file's baseline depends on: the file, HF's shared test helpers and the selection plugin."""
    digest = hashlib.sha256()
    tests = checkout / "tests"
    for path in (
        tests / f"{test_file}.py",
        tests / "conftest.py",
        tests / "testing_common.py",
        tests / "testing_utils.py",
        SELECTION,
    ):
        digest.update(path.name.encode() + (path.read_bytes() if path.exists() else b""))
    return digest.hexdigest()


def load_baseline(
    out: Path, checkout: Path, files: list[str], folder: Path, timeout: int, rebaseline: bool
) -> dict:
    """The real-``peft`` results per file, from ``baseline.json`` where it matches this checkout."""
    path = out / "baseline.json"
    cached = json.loads(path.read_text(encoding="utf-8")) if path.exists() and not rebaseline else {}
    results = {}
    for test_file in files:
        digest = file_digest(checkout, test_file)
        entry = cached.get(test_file)
        if entry is not None and entry["digest"] == digest:
            results[test_file] = entry["results"]
            continue
        results[test_file] = run_backend(checkout, "peft", [test_file], folder, timeout)[test_file]
        cached[test_file] = {"digest": digest, "results": results[test_file]}
        path.write_text(
            json.dumps(cached), encoding="utf-8"
        )  # after each file: an interrupted run keeps them
    print(f"baseline: {path}", flush=True)
    return results


def counts(outcomes: dict[str, dict[str, str]]) -> collections.Counter:
    return collections.Counter(
        "passed" if r["outcome"] == "passed" else "skipped" if r["outcome"] == "skipped" else "failed"
        for r in outcomes.values()
        if r["outcome"] != "deselected"
    )


def report(baseline: dict, ours: dict, files: list[str]) -> None:
    """Print the per-file table, the failure groups and the totals."""
    print(f"\n{'file':34} {'HF pass/fail/skip':>20} {'adapterlab pass/fail/skip':>26} {'of HF-passing':>16}")
    groups: collections.Counter = collections.Counter()
    missing_names: collections.Counter = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    total_hf = total_both = 0
    for test_file in files:
        hf, al = baseline.get(test_file, {}), ours.get(test_file, {})
        # tests the adapterlab run left out as another method's (by their parameters) leave the baseline too
        hf_passing = [
            t
            for t, r in hf.items()
            if r["outcome"] == "passed" and al.get(t, {}).get("outcome") != "deselected"
        ]
        collect_errors = [r for t, r in al.items() if r["outcome"] == "collect-error"]
        both = 0
        for test in hf_passing:
            result = al.get(test)
            if result is not None and result["outcome"] == "passed":
                both += 1
                continue
            message = (
                result["message"] if result else (collect_errors[0]["message"] if collect_errors else NOT_RUN)
            )
            group = cause(message)
            groups[group] += 1
            if group == "missing name":
                missing_names[message.split("\n")[0][:120]] += 1
            if len(examples[group]) < 8:
                examples[group].append(f"{test}: {message.splitlines()[0][:160] if message else ''}")
        total_hf += len(hf_passing)
        total_both += both
        c_hf, c_al = counts(hf), counts(al)
        share = f"{both}/{len(hf_passing)} ({100 * both / len(hf_passing):.0f}%)" if hf_passing else "-"
        print(
            f"{test_file:34} {c_hf['passed']:>8}/{c_hf['failed']}/{c_hf['skipped']:<8} "
            f"{c_al['passed']:>12}/{c_al['failed']}/{c_al['skipped']:<10} {share:>16}"
        )
    print("\nadapterlab failures of HF-passing tests, by cause:")
    for group, number in groups.most_common():
        print(f"  {group:16} {number}")
        for example in examples[group]:
            print(f"      {example}")
    if missing_names:
        print("\nmost often missing:")
        for name, number in missing_names.most_common(15):
            print(f"  {number:5}  {name}")
    share = 100 * total_both / total_hf if total_hf else 0.0
    print(
        f"\nTOTAL: {total_both} of {total_hf} tests that pass with HF PEFT also pass with adapterlab "
        f"({share:.1f}%)"
    )
    not_run = groups["not run (timeout)"]
    if not_run:
        ran = total_hf - not_run
        print(
            f"       {not_run} were not run (timeout); of the {ran} that ran, "
            f"{100 * total_both / ran:.1f}% pass"
            if ran
            else f"       none was run ({not_run} stopped by the timeout)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "checkout", type=Path, help="a folder holding HF PEFT's tests/ (see the module docstring)"
    )
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "peft-suite-out")
    parser.add_argument("--files", nargs="+", default=list(FILES), help="test files (without .py) to run")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per test file and run")
    parser.add_argument("--rebaseline", action="store_true", help="rerun the real-peft baseline")
    parser.add_argument("--baseline-only", action="store_true", help="only (re)build the baseline")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="print the report from the results in --out, running nothing (e.g. of a run still going)",
    )
    args = parser.parse_args(argv)
    checkout = args.checkout.resolve()
    if not (checkout / "tests" / "conftest.py").is_file():
        parser.error(f"{checkout} has no tests/conftest.py; extract HF PEFT's tests/ folder there first")
    unknown = [f for f in args.files if not (checkout / "tests" / f"{f}.py").is_file()]
    if unknown:
        parser.error(f"no such test file in {checkout}/tests: {', '.join(unknown)}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        cached = (
            json.loads((args.out / "baseline.json").read_text(encoding="utf-8"))
            if (args.out / "baseline.json").exists()
            else {}
        )
        baseline = {f: cached[f]["results"] for f in args.files if f in cached}
        ours = {f: read_results(args.out / f"adapterlab-{f}.jsonl") for f in args.files}
        report(baseline, ours, args.files)
        return 0
    folder = prepare_folder(args.out)
    baseline = load_baseline(args.out, checkout, args.files, folder, args.timeout, args.rebaseline)
    if args.baseline_only:
        return 0
    ours = run_backend(checkout, "adapterlab", args.files, folder, args.timeout)
    (args.out / "adapterlab.json").write_text(json.dumps(ours), encoding="utf-8")
    report(baseline, ours, args.files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
