"""examples/reproduce_paper.py: the protocol, every claim with its interval and verdict, the illustrations,
and a cache that skips finished work."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "examples" / "reproduce_paper.py"
SMOKE = ["--iterations", "2", "--train-images", "4", "--val-images", "2", "--image-size", "48", "--quiet"]


def load_script():
    spec = importlib.util.spec_from_file_location("reproduce_paper", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    script = load_script()
    script.main(SMOKE + ["--out", str(out)])
    return script, out


def test_a_smoke_run_writes_the_protocol_the_claims_and_the_illustrations(smoke_run):
    script, out = smoke_run
    results = (out / "results.md").read_text()
    assert "## Protocol (fixed before the runs)" in results
    for claim in script.CLAIMS:
        paper = rf"{claim.paper[0] - claim.paper[1]:+.2f}"
        assert re.search(rf"\| {re.escape(claim.finding)} \| {re.escape(claim.source)} \| {re.escape(paper)} \| "
                         r"[+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\] \| \d+\.\d \| \d+\.\d \| \*\*(holds|contradicted|"
                         r"not resolved at this scale)\*\* \| \d+\.\d \|", results), claim.finding
    for table in script.ILLUSTRATIONS:
        assert f"### {table.title}" in results
        for label, paper, _ in table.rows:
            assert re.search(rf"\| {re.escape(label)} \| {paper:.2f} \| \d+\.\d \|", results), (table.title, label)
        for label, paper, _ in table.not_run:
            assert f"| {label} | {paper:.2f} | not run" in results
    assert "`classifier.0.convs.3`" in results and "taps on the image" in results
    for picture in ("figure4.png", "predictions_os.png", "claims.png"):
        assert (out / picture).stat().st_size > 5_000
    claims = json.loads((out / "claims.json").read_text())
    assert [c["finding"] for c in claims] == [c.finding for c in script.CLAIMS]
    assert len(list((out / "runs").glob("*-seed2-*"))) >= 5   # every claim's configuration has three seeds


def test_a_second_run_trains_and_evaluates_nothing_again(smoke_run, monkeypatch):
    script, out = smoke_run
    before = (out / "results.md").read_text()

    def refuse(*args, **kwargs):
        raise AssertionError("a cached configuration was trained or evaluated again")

    evaluate = script.evaluate

    def evaluate_pictures_only(*args, per_image=False, **kwargs):  # the picture's three images may run again
        return refuse() if per_image else evaluate(*args, **kwargs)

    monkeypatch.setattr(script, "train", refuse)
    monkeypatch.setattr(script, "evaluate", evaluate_pictures_only)
    script.main(SMOKE + ["--out", str(out)])
    after = (out / "results.md").read_text()
    assert after.split("## Claims")[1].split("![claims]")[0] == before.split("## Claims")[1].split("![claims]")[0]


def test_an_unknown_part_is_refused():
    with pytest.raises(SystemExit):
        load_script().parse_args(["--only", "table7"])
