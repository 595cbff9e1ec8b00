"""Review stacks pr-<number>: the review profile, planned offline, names derived from the number,
nothing shared with staging that a destroy could delete."""

import pytest
import yaml

from components.profiles import apply_profile, review_issues, review_number
from tests.conftest import ROOT, program, stack_values
from tools import plan
from tools.harness import run_program


@pytest.fixture(scope="module")
def pr():
    return run_program("pr-123")


def test_stack_names_that_are_review_stacks():
    assert review_number("pr-123") == 123
    for name in ("pr-0", "pr-", "pr-12a", "staging", "prod", "pr-01"):
        assert review_number(name) is None, name


def test_own_sections_replace_the_profiles_but_the_profile_always_applies():
    values = apply_profile("pr-7", {"proxy": {"acmeEmail": "ops@example.org"}})
    assert values["domain"] == "pr-7.example-review.org" and values["proxy"] == {"acmeEmail": "ops@example.org"}
    escaped = apply_profile("pr-7", {"domain": "x.example.org"})
    assert escaped["domain"] == "x.example.org" and escaped["target"] == "ovh", \
        "a stack file with its own domain still gets the profile (and is then refused, below)"
    assert apply_profile("staging", {}) == {}


PROD_PROJECT = stack_values("prod")["ovh"]["projectId"]
PROD_ZONE = stack_values("prod")["dns"]["zone"]


def _own(tmp_path, values: dict):
    path = tmp_path / "Pulumi.pr-5.yaml"
    path.write_text(yaml.safe_dump({"config": {f"socle:{k}": v for k, v in values.items()}}))
    return path


@pytest.mark.parametrize("own,key,fragment", [
    ({"domain": "example.org"}, "domain",
     "Pulumi.pr-5.yaml sets 'example.org', but a review stack's domain is fixed by the review profile "
     "(profiles/review.yaml: 'pr-5.example-review.org')"),
    ({"dns": {"provider": "gandi", "zone": PROD_ZONE}}, "dns.zone",
     f"Pulumi.pr-5.yaml sets '{PROD_ZONE}', but a review stack's dns.zone is fixed by the review profile"),
    ({"dns": {"provider": "ovh", "zone": "example-review.org"}}, "dns.provider",
     "Pulumi.pr-5.yaml sets 'ovh', but a review stack's dns.provider is fixed"),
    ({"ovh": {"projectId": PROD_PROJECT, "region": "GRA11", "backupRegion": "SBG5"}}, "ovh.projectId",
     f"Pulumi.pr-5.yaml sets '{PROD_PROJECT}', but a review stack's ovh.projectId is fixed"),
    ({"access": {"adminSshKeys": stack_values("prod")["access"]["adminSshKeys"], "adminCidrs": ["203.0.113.0/28"],
                 "sshPort": 4660, "ciSshKey": stack_values("prod")["access"]["ciSshKey"]}}, "access.ciSshKey",
     "is also authorised on stack prod (Pulumi.prod.yaml)"),
    ({"access": {"adminSshKeys": stack_values("prod")["access"]["adminSshKeys"], "adminCidrs": ["203.0.113.0/28"]}},
     "access.ciSshKey", "required on a review stack"),
    ({"network": {"vlanId": 420}}, "network.vlanId",
     "Pulumi.pr-5.yaml sets '420', but a review stack's network.vlanId is fixed by the review profile"),
])
def test_a_review_stack_that_leaves_its_box_is_a_config_error(tmp_path, capsys, own, key, fragment):
    assert plan.main(["pr-5", "--config-file", str(_own(tmp_path, own))]) == 2
    err = capsys.readouterr().err
    assert f"socle:{key}: " in err and fragment in err, err


def test_a_review_stack_file_within_the_box_plans_cleanly(tmp_path, capsys):
    path = _own(tmp_path, {"proxy": {"acmeEmail": "ops@example.org", "hstsMaxAge": 86400},
                           "domain": "pr-5.example-review.org"})
    assert plan.main(["pr-5", "--config-file", str(path)]) == 0, capsys.readouterr().err
    assert "(review profile + Pulumi.pr-5.yaml)" in capsys.readouterr().out


def test_an_edited_profile_that_points_at_prod_is_refused(tmp_path):
    doc = yaml.safe_load((ROOT / "profiles" / "review.yaml").read_text())
    doc["config"]["socle:dns"]["zone"] = PROD_ZONE
    doc["config"]["socle:domain"] = "pr-{number}.review." + PROD_ZONE
    doc["config"]["socle:ovh"]["projectId"] = PROD_PROJECT
    profile = tmp_path / "review.yaml"
    profile.write_text(yaml.safe_dump(doc))
    values = apply_profile("pr-5", {}, profile)
    issues = review_issues("pr-5", values, ROOT, profile)
    assert ("ovh.projectId", f"'{PROD_PROJECT}' is also the OVH project of stack prod (Pulumi.prod.yaml); review "
            f"stacks deploy into a project of their own ({profile})") in issues, issues
    assert any(k == "dns.zone" and "is also the DNS zone of stack prod (Pulumi.prod.yaml)" in m for k, m in issues), issues


def test_another_stack_file_written_in_snake_case_is_compared_too(tmp_path):
    review = apply_profile("pr-5", {})
    (tmp_path / "Pulumi.qa.yaml").write_text(yaml.safe_dump({"config": {
        "socle:ovh": {"project_id": review["ovh"]["projectId"], "region": "GRA11", "backup_region": "SBG5"},
        "socle:access": {"admin_ssh_keys": [review["access"]["ciSshKey"]]}}}))
    issues = review_issues("pr-5", review, tmp_path)
    assert [k for k, _ in issues] == ["ovh.projectId", "access.ciSshKey"], issues


def test_an_unreadable_stack_file_is_reported_not_skipped(tmp_path):
    (tmp_path / "Pulumi.prod.yaml").write_text("config: [unclosed\n")
    issues = review_issues("pr-5", apply_profile("pr-5", {}), tmp_path)
    assert any(path == "" and "cannot read Pulumi.prod.yaml" in msg for path, msg in issues), issues
    assert review_issues("staging", {}, tmp_path) == [], "only review stacks are checked"


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
    assert set(pr.exports["urls"]) == {f"{a}.pr-123.example-review.org" for a in ("cloud", "pad", "app")}
    for rec in pr.of_type("livedns/record:Record"):
        assert rec.plain["name"].endswith("pr-123") and rec.plain["zone"] == "example-review.org", rec.plain


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
