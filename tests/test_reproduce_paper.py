"""examples/reproduce_paper.py: every table, the paper's numbers, a cache that skips finished work."""

import importlib.util
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


def test_a_smoke_run_writes_every_table_with_the_papers_numbers(smoke_run):
    script, out = smoke_run
    results = (out / "results.md").read_text()
    for name, table in script.TABLES.items():
        assert f"## {table.title}" in results, name
        for row in table.rows:
            assert re.search(rf"\| {re.escape(row.label)} \| {row.paper:.2f} \| \d+\.\d\d \|", results), (name, row)
        for label, paper, _ in table.not_run:
            assert f"| {label} | {paper:.2f} | not run" in results
        for finding, _, _ in table.claims:
            assert re.search(rf"- {re.escape(finding)}: \*\*(holds|does not hold at this scale|within the seed "
                             r"spread)\*\* \(Δ [+-]\d+\.\d\d points; the paper's Δ [+-]\d+\.\d\d\)", results), finding
        assert (out / f"{name}.png").stat().st_size > 5_000
    assert "Seed-to-seed spread" in results
    for picture in ("figure4.png", "predictions_os.png"):
        assert (out / picture).stat().st_size > 5_000


def test_a_second_run_trains_and_evaluates_nothing_again(smoke_run, monkeypatch):
    script, out = smoke_run
    before = (out / "results.md").read_text()

    def refuse(*args, **kwargs):
        raise AssertionError("a cached configuration was trained or evaluated again")

    monkeypatch.setattr(script, "train", refuse)
    monkeypatch.setattr(script, "evaluate", refuse)
    script.main(SMOKE + ["--out", str(out), "--only", "table2,table4"])
    after = (out / "results.md").read_text()
    for name in ("table2", "table4"):
        title = script.TABLES[name].title
        assert after.split(f"## {title}")[1].split("![")[0] == before.split(f"## {title}")[1].split("![")[0]


def test_an_unknown_table_is_named():
    with pytest.raises(SystemExit):
        load_script().parse_args(["--only", "table1,table7"])
