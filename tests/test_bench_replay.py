"""The scale benchmark's bare replay (tools/bench_scale.py) registers the program's graph exactly:
otherwise its overhead figure compares two different programs."""

import pytest

from tools.bench_scale import coop, replay, same_graph
from tools.harness import ROOT, run_program

CASES = {
    "co-op, 12 sites": {"config": coop(12)},
    "Caplibre example": {"config_file": ROOT / "examples" / "caplibre-large" / "Pulumi.prod.yaml"},
    "dev (target local)": {"config_file": ROOT / "Pulumi.dev.yaml"},
}


@pytest.mark.parametrize("label", sorted(CASES))
def test_replay_registers_the_same_graph(label):
    kwargs = dict(CASES[label])
    stack = "dev" if "dev" in label else "prod"
    run = run_program(stack, **kwargs)
    replayed = run_program(stack, program=replay(run), **kwargs)
    assert len(replayed.resources) == len(run.resources) > 10, label
    wrong = same_graph(run, replayed)
    assert not wrong, f"{label}: the replay differs from the program: {wrong[:5]}"


def test_same_graph_names_a_difference():
    run = run_program("prod", config=coop(2))
    replayed = run_program("prod", program=replay(run), config=coop(2))
    victim = next(r for r in replayed.resources if r.type == "docker:index/container:Container")
    victim.plain = {**victim.plain, "image": "tampered"}
    replayed.resources = [r for r in replayed.resources if not r.type == "docker:index/volume:Volume"]
    wrong = same_graph(run, replayed)
    assert f"inputs differ: {victim.urn}" in wrong, wrong
    assert any(w.startswith("only in the program:") and "Volume" in w for w in wrong), wrong
