"""The real CrossGuard pack (policy/__main__.py), started as the Pulumi CLI starts it and spoken to
over its gRPC analyzer interface on 127.0.0.1: the same rules, the same verdicts, through the
pulumi_policy runtime (proxies, unknown sentinels, enforcement levels from a policy config file)."""

import subprocess
import sys

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2 as pb
from pulumi.runtime.proto import analyzer_pb2_grpc as pb_grpc

from policy import rules
from policy.rules import RULES
from tests.conftest import ROOT, program
from tools.policy_graph import policy_config

LEVELS = {"advisory": pb.ADVISORY, "mandatory": pb.MANDATORY, "disabled": pb.DISABLED}


@pytest.fixture(scope="module")
def pack():
    proc = subprocess.Popen([sys.executable, str(ROOT / "policy" / "__main__.py")], cwd=ROOT / "policy",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    port = proc.stdout.readline().decode().strip()
    if not port.isdigit():
        proc.kill()
        pytest.fail(f"the policy pack did not start: {proc.stderr.read().decode()[-2000:]}")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield pb_grpc.AnalyzerStub(channel)
    channel.close()
    proc.kill()
    proc.wait(10)


def configure(stub, stack):
    conf = policy_config(stack)
    req = pb.ConfigureAnalyzerRequest()
    for rule in RULES:
        req.policyConfig[rule.name].CopyFrom(pb.PolicyConfig(enforcementLevel=LEVELS[rules.enforcement(rule, conf)],
                                                             properties=struct(rules.rule_config(rule, conf))))
    stub.Configure(req)


def struct(d):
    s = struct_pb2.Struct()
    s.update(d)
    return s


def analyzer_resources(run):
    by_urn = {r.urn: r for r in run.resources}
    out = []
    for r in run.resources:
        prov = None
        if r.provider:
            p = by_urn.get(r.provider)
            if p is not None:
                prov = pb.AnalyzerProviderResource(type=p.type, urn=p.urn, name=p.name, properties=struct(p.plain))
        # The resource options as the engine sends them (the pack reads `protect` from them).
        opts = pb.AnalyzerResourceOptions(protect=bool(r.options.get("protect")))
        out.append(pb.AnalyzerResource(type=r.type, urn=r.urn, name=r.name, properties=struct(r.plain),
                                       parent=r.parent or "", dependencies=r.dependencies, provider=prov,
                                       options=opts))
    return out


def test_the_pack_serves_every_rule(pack):
    info = pack.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "socle"
    assert sorted(p.name for p in info.policies) == sorted(r.name for r in RULES)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_each_stack_passes_the_real_pack(pack, stack):
    configure(pack, stack)
    run = program(stack)
    diags = list(pack.AnalyzeStack(pb.AnalyzeStackRequest(resources=analyzer_resources(run))).diagnostics)
    for r in analyzer_resources(run):
        diags += list(pack.Analyze(pb.AnalyzeRequest(type=r.type, urn=r.urn, name=r.name, properties=r.properties,
                                                     provider=r.provider, options=r.options)).diagnostics)
    assert not diags, "\n".join(f"{d.policyName}: {d.message}" for d in diags)


def app_container(ports):
    return pb.AnalyzeRequest(type="docker:index/container:Container", urn="urn:pulumi:prod::socle::c::web",
                             name="web", properties=struct({"name": "socle-prod-web", "ports": ports,
                                                            "labels": [{"label": "socle.role", "value": "app"}]}))


def test_a_violation_comes_back_with_its_message_and_mandatory_level(pack):
    configure(pack, "prod")
    (d,) = pack.Analyze(app_container([{"internal": 8080, "external": 8080}])).diagnostics
    assert d.policyName == "only-proxy-publishes-ports" and d.enforcementLevel == pb.MANDATORY
    # pulumi_policy puts the policy's description on the first line, then our sentence.
    description, sentence = d.message.split("\n", 1)
    assert description == RULES[0].description
    assert sentence.startswith("Container 'socle-prod-web' publishes host port 8080, bypassing the HTTPS proxy"), sentence


def test_dev_reports_the_same_violation_as_advisory(pack):
    configure(pack, "dev")
    (d,) = pack.Analyze(app_container([{"internal": 8080, "external": 8080}])).diagnostics
    assert d.enforcementLevel == pb.ADVISORY


def test_a_value_unknown_at_preview_is_not_a_violation(pack):
    configure(pack, "prod")
    unknown_array = "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2"
    assert list(pack.Analyze(app_container(unknown_array)).diagnostics) == []
