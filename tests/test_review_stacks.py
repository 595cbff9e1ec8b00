"""Review stacks pr-<number>: the review profile, planned offline, names derived from the number,
nothing shared with staging that a destroy could delete."""

import pytest

from components.profiles import apply_profile, review_number
from tests.conftest import program
from tools import plan
from tools.harness import run_program


@pytest.fixture(scope="module")
def pr():
    return run_program("pr-123")


def test_stack_names_that_are_review_stacks():
    assert review_number("pr-123") == 123
    for name in ("pr-0", "pr-", "pr-12a", "staging", "prod", "pr-01"):
        assert review_number(name) is None, name


def test_own_config_wins_over_the_profile():
    values = apply_profile("pr-7", {"proxy": {"acmeEmail": "ops@example.org"}})
    assert values["domain"] == "pr-7.review.example.org" and values["proxy"] == {"acmeEmail": "ops@example.org"}
    assert apply_profile("pr-7", {"domain": "x.example.org"}) == {"domain": "x.example.org"}, \
        "a stack with its own domain is configured by its own file"
    assert apply_profile("staging", {}) == {}


def test_pr_stack_plans_cleanly_offline(capsys):
    assert plan.main(["pr-123"]) == 0
    out = capsys.readouterr().out
    assert "socle plan for stack 'pr-123' (review profile)" in out and "all rules pass." in out


def test_review_profile_is_cheap(pr):
    vms = pr.of_type("cloudInstance:CloudInstance")
    assert [v.plain["flavorId"] for v in vms] == ["flavor-d2-4"], "one small server"
    assert not pr.of_type("ovh:CloudProject/database:Database"), "databases run as containers"
    assert not pr.of_type("ovh:CloudProject/storage:Storage") and not pr.of_type("workflowBackup")


def test_names_and_hostnames_derive_from_the_number(pr):
    for r in pr.resources:
        name = r.plain.get("name")
        if r.type.startswith(("docker:", "ovh:")) and isinstance(name, str) and r.type != "docker:index/remoteImage:RemoteImage":
            assert "pr-123" in name, f"{r.urn} has physical name {name}"
    assert set(pr.exports["urls"]) == {f"{a}.pr-123.review.example.org" for a in ("cloud", "pad", "app")}
    for rec in pr.of_type("livedns/record:Record"):
        assert rec.plain["name"].endswith("pr-123.review"), rec.plain


def test_nothing_is_shared_with_staging(pr):
    staging = program("staging")

    def names(run):
        return {r.plain.get("name") for r in run.resources if isinstance(r.plain.get("name"), str)
                and r.type != "docker:index/remoteImage:RemoteImage" and not r.type.startswith("pulumi:")}

    def records(run):
        return {(r.plain["zone"], r.plain["name"], r.plain["type"]) for r in run.of_type("livedns/record:Record")}

    shared = (names(pr) & names(staging)) - {None}
    assert not shared, f"physical names shared with staging: {shared}"
    assert not records(pr) & records(staging), records(pr) & records(staging)
    assert not {r.urn for r in pr.resources} & {r.urn for r in staging.resources}
