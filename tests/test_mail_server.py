"""socle:mail's server in the graph: docker-mailserver on mail.server with its four ports, opened in
that server's security group only; the DKIM key the DNS record publishes, uploaded as a secret;
the certificate read from the proxy's storage; the mail volumes backed up; the reverse DNS at
OVH; and the policy pack's allow-list. The rendered Postfix settings and the certificate hand-over
run for real in tests/test_mail_server_live.py."""

from __future__ import annotations

import copy

import pytest
from cryptography.hazmat.primitives import serialization

from components.render.mail import MAIL_PORTS, MAIL_VOLUMES, dkim_value
from policy.rules import evaluate
from tests.conftest import errors_of, run_values
from tests.test_mail_dns import MAIL, with_mail
from tools.policy_graph import resources as graph_of

T_CONTAINER = "docker:index/container:Container"
T_SG = "ovh:index/cloudSecurityGroup:CloudSecurityGroup"
T_REVERSE = "ovh:Ip/reverse:Reverse"
PORTS = {p for p, _ in MAIL_PORTS}


@pytest.fixture(scope="module")
def run():
    return run_values(with_mail())


def mail_container(run):
    found = [r for r in run.of_type(T_CONTAINER) if r.plain.get("labels") and
             {"label": "socle.role", "value": "mail"} in r.plain["labels"]]
    assert len(found) == 1, f"mail containers: {[r.name for r in found]}"
    return found[0]


def world_open(run, server: str) -> set[int]:
    sg = next(r for r in run.of_type(T_SG) if r.name == f"{server}-sg")
    return {int(r["portRangeMin"]) for r in sg.plain["rules"]
            if r["remoteIpPrefix"] in ("0.0.0.0/0", "::/0") and int(r["portRangeMin"]) not in (80, 443)}


def test_the_mail_server_runs_on_its_server_and_publishes_its_four_ports_there_only(run):
    c = mail_container(run)
    server = MAIL["server"]
    assert c.name == f"{server}-containers-mail", c.name
    assert {int(p["external"]) for p in c.plain["ports"]} == PORTS == {int(p["internal"]) for p in c.plain["ports"]}
    assert all(not p.get("ip") for p in c.plain["ports"]), "bound to one address only: the MX would not answer"
    assert world_open(run, server) == PORTS, f"{server}'s security group opens {world_open(run, server)}"
    for sg in run.of_type(T_SG):
        other = sg.name.removesuffix("-sg")
        if other != server:
            assert not world_open(run, other) & PORTS, f"{other} opens mail ports it does not serve"


def test_the_dkim_key_in_the_container_is_the_one_the_dns_record_publishes_and_a_secret(run):
    c = mail_container(run)
    uploads = {u["file"]: u for u in c.plain["uploads"]}
    domain, selector = "lepic.example.org", "socle"
    key_file = f"/tmp/docker-mailserver/opendkim/keys/{domain}/{selector}.private"
    assert key_file in uploads, sorted(uploads)
    index = list(uploads).index(key_file)
    assert f"uploads[{index}].content" in c.secret_paths(), "the DKIM private key is not a Pulumi secret"
    private = serialization.load_pem_private_key(uploads[key_file]["content"].encode(), None)
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    record = next(r for r in run.resources if r.name == "dns-mail-dkim")
    published = "".join(record.plain["values"][0].replace('" "', "").strip('"'))
    assert published == dkim_value(public), "the container signs with another key than the DNS publishes"
    table = uploads["/tmp/docker-mailserver/opendkim/KeyTable"]["content"]
    assert table.split() == [f"{selector}._domainkey.{domain}",
                             f"{domain}:{selector}:/etc/opendkim/keys/{domain}/{selector}.private"], table
    assert not any("PRIVATE KEY" in e for e in c.plain["envs"]), "a key in the environment (docker inspect shows it)"


def test_the_certificate_is_read_only_and_the_one_the_proxy_gets_for_the_mail_host(run):
    c = mail_container(run)
    host = "mail.lepic.example.org"
    mount = next(v for v in c.plain["volumes"] if v.get("containerPath") == "/etc/socle-tls")
    assert mount["readOnly"] is True
    proxy = next(r for r in run.of_type(T_CONTAINER) if r.name == f"{MAIL['server']}-containers-proxy")
    data = next(v["volumeName"] for v in proxy.plain["volumes"] if v["containerPath"] == "/data")
    assert mount["hostPath"] == (f"/var/lib/docker/volumes/{data}/_data/caddy/certificates/"
                                 f"acme-v02.api.letsencrypt.org-directory/{host}"), mount
    env = dict(e.split("=", 1) for e in c.plain["envs"])
    assert (env["SSL_TYPE"], env["SSL_CERT_PATH"], env["SSL_KEY_PATH"]) == \
        ("manual", f"/etc/socle-tls/{host}.crt", f"/etc/socle-tls/{host}.key"), env
    caddyfile = proxy.plain["uploads"][0]["content"]
    block = caddyfile[caddyfile.index(f"\n{host} {{"):]
    block = block[:block.index("\n}")]
    assert "dir https://acme-v02.api.letsencrypt.org/directory" in block, f"issuer not pinned to Let's Encrypt:\n{block}"
    assert "respond" in block and "reverse_proxy" not in block and "Strict-Transport-Security" in block, block
    assert c.plain["hostname"] == host


def test_mailboxes_queue_and_accounts_are_backed_up(run):
    volumes = {v.plain["name"] for v in run.of_type("docker:index/volume:Volume") if "-mail-" in v.plain["name"]}
    assert volumes == {f"socle-test-mail-{v}" for v in MAIL_VOLUMES}, volumes
    install = next(r for r in run.resources if r.name == f"{MAIL['server']}-backup-install")
    manifest = str(install.plain)
    missing = [v for v in volumes if v not in manifest]
    assert not missing, f"not in {MAIL['server']}'s backup: {missing}"


def test_reverse_dns_points_the_address_back_at_the_mail_host_after_its_record(run):
    (rev,) = run.of_type(T_REVERSE)
    assert rev.plain["ReverseValue"] == "mail.lepic.example.org.", rev.plain
    assert rev.plain["ip"] == rev.plain["ReverseIp"] + "/32", rev.plain
    assert rev.options.get("deleteBeforeReplace") is True, \
        "replaced create-first, the old one's deletion would remove the reverse the new one just set"
    record = next(r for r in run.resources if r.name == "dns-mail-host")
    assert record.urn in rev.dependencies, "OVH refuses a reverse whose name does not resolve yet"
    assert record.plain["values"] == [rev.plain["ReverseIp"]], "the reverse is set on another address than the A record's"


def test_no_reverse_dns_when_switched_off():
    run = run_values(with_mail({**MAIL, "reverseDns": False}))
    assert run.of_type(T_REVERSE) == []


def test_aliases_become_postfix_virtual_lines():
    run = run_values(with_mail({**MAIL, "aliases": {"contact@lepic.example.org": ["b@example.net", "a@lepic.example.org"]}}))
    uploads = {u["file"]: u["content"] for u in mail_container(run).plain["uploads"]}
    assert uploads["/tmp/docker-mailserver/postfix-virtual.cf"] == "contact@lepic.example.org a@lepic.example.org,b@example.net\n"


def _port_findings(run, allowed: dict) -> list[str]:
    config = {"all": "mandatory", "only-proxy-publishes-ports": {"allowedPorts": allowed}}
    return [v.finding.message for v in evaluate(graph_of(run), config)
            if v.finding.policy in ("only-proxy-publishes-ports", "ssh-from-admin-networks-only")]


def test_the_policy_refuses_the_mail_ports_until_allowed_with_reasons(run):
    name = mail_container(run).plain["name"]
    refused = _port_findings(run, {})
    assert len(refused) == 1 and name in refused[0] and "25, 465, 587, 993" in refused[0], refused
    allowed = {name: {f"{p}/tcp": why for p, why in MAIL_PORTS}}
    assert _port_findings(run, allowed) == []
    no_reason = {name: {**allowed[name], "25/tcp": ""}}
    assert any("25/tcp has no reason" in m for m in _port_findings(run, no_reason)), _port_findings(run, no_reason)


@pytest.mark.parametrize("change,says", [
    (lambda v: v["mail"].update(server="nowhere"), "socle:mail.server: unknown server 'nowhere'"),
    (lambda v: v["apps"].update(mail={"image": "nginx:1.27", "server": "http"}),
     "socle:apps.mail: 'mail' is the mail server's container"),
    (lambda v: v["mail"].update(aliases={"contact@example.net": ["a@lepic.example.org"]}),
     "is not an address of the domain 'lepic.example.org'"),
    (lambda v: v["apps"]["spip"].update(ports=[{"port": 587, "reason": "mine"}]),
     "587/tcp is already the mail server's (SMTP submission with STARTTLS, socle:mail)"),
    (lambda v: v.update(access={**v["access"], "sshPort": 993}), "port 993 is the mail server's"),
    (lambda v: v["mail"].update(hostname=v["apps"]["spip"]["sites"][0]["hostname"]), "is also an app's hostname"),
    (lambda v: v["mail"].update(maxMessageMb=0), "socle:mail.maxMessageMb"),
    (lambda v: v["mail"].update(hostname="lepic.example.org"), "is not a name directly under the domain"),
    (lambda v: v["mail"].update(hostname="mx.sub.lepic.example.org"), "is not a name directly under the domain"),
    (lambda v: v["mail"].update(hostname="x/../spip.lepic.example.org"), "is not a valid hostname"),
    (lambda v: v["mail"].update(hostname="MAIL.lepic.example.org"), "is not a valid hostname"),
    (lambda v: v["mail"].update(aliases={"contact@lepic.example.org": []}), "forwards to nobody"),
    (lambda v: v["dns"].update(records=[{"name": "mail", "type": "A", "values": ["198.51.100.7"]}]),
     "socle:dns.records.0: a A record at 'mail' is already written by socle from mail.hostname"),
    (lambda v: v["dns"].update(caaIssuers=["sectigo.com"]), "keep letsencrypt.org in caaIssuers"),
])
def test_impossible_mail_settings_are_config_errors(change, says):
    v = with_mail(copy.deepcopy(MAIL))
    change(v)
    msg = errors_of(v)
    assert says in msg, msg


def test_with_its_ports_allowed_the_prod_stack_with_mail_passes_every_prod_rule():
    """The prod stack with mail on its app server, judged by the prod policy config plus the mail
    allowance: the mail volumes covered by the backup, the security groups, the secret key."""
    from tests.conftest import stack_values
    from tools.policy_graph import policy_config

    values = stack_values("prod")
    values["mail"] = {"server": "web"}
    # The mail socle generates replaces the hand-written MX and SPF records (components/checks.py _mail).
    values["dns"]["records"] = [r for r in values["dns"].get("records", [])
                                if r["type"] != "MX" and not any("v=spf1" in x for x in r["values"])]
    run = run_values(values, stack="prod")
    config = policy_config("prod")
    name = mail_container(run).plain["name"]
    rule = dict(config.get("only-proxy-publishes-ports") or {})
    rule["allowedPorts"] = {**rule.get("allowedPorts", {}), name: {f"{p}/tcp": why for p, why in MAIL_PORTS}}
    config = {**config, "only-proxy-publishes-ports": rule}
    found = [f"{v.finding.policy}: {v.finding.message}" for v in evaluate(graph_of(run), config)]
    assert found == [], "\n".join(found)


def test_at_preview_the_mail_stack_evaluates_and_passes_where_it_can_be_judged():
    """At `pulumi preview` of a new stack the addresses and the key are unknown: the program still
    builds every mail resource, and no rule fails on an unknown it could not judge."""
    import json

    from tests.conftest import stack_values
    from tools.harness import run_program
    from tools.policy_graph import policy_config, verdicts

    values = stack_values("prod")
    values["mail"] = {"server": "web"}
    values["dns"]["records"] = [r for r in values["dns"].get("records", [])
                                if r["type"] != "MX" and not any("v=spf1" in x for x in r["values"])]
    config = {f"socle:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    run = run_program("prod", config=config, preview=True)
    assert len(run.of_type(T_REVERSE)) == 1 and mail_container(run)
    policy = policy_config("prod")
    policy["only-proxy-publishes-ports"] = {"allowedPorts": {mail_container(run).plain["name"]:
                                                             {f"{p}/tcp": why for p, why in MAIL_PORTS}}}
    failed = [f"{v.finding.policy}: {v.finding.message}" for v in verdicts(run, policy) if not v.finding.unknown]
    assert failed == [], "\n".join(failed)


@pytest.mark.parametrize("mail,refused", [({"server": "web"}, True), ({"server": "web", "reverseDns": True}, True),
                                          ({"server": "web", "reverseDns": False}, False),
                                          ({"server": "web", "reverse_dns": False}, False)])
def test_a_review_stack_may_run_mail_but_not_set_reverse_dns(mail, refused):
    """The review key has no rights on /ip, which span the whole OVH account."""
    from components.profiles import apply_profile, review_issues

    values = apply_profile("pr-5", {"mail": mail})
    found = [m for path, m in review_issues("pr-5", values) if path == "mail.reverseDns"]
    assert bool(found) == refused, found


def test_the_mail_server_sits_on_a_network_of_its_own(run):
    c = mail_container(run)
    (net,) = c.plain["networksAdvanced"]
    others = {n["name"] for r in run.of_type(T_CONTAINER) if r is not c for n in r.plain.get("networksAdvanced", [])}
    assert net["name"] == "socle-test-mail-net" and net["name"] not in others, (net, others)


def test_mail_volumes_stay_on_the_server_if_taken_out_of_the_stack_file(run):
    for v in run.of_type("docker:index/volume:Volume"):
        stateful = {"label": "socle.stateful", "value": "true"} in v.plain["labels"]
        assert bool(v.options.get("retainOnDelete")) == stateful, f"{v.plain['name']}: {v.options}"


def test_the_postmasters_first_password_is_a_secret_in_the_container_and_the_outputs(run):
    c = mail_container(run)
    files = [u["file"] for u in c.plain["uploads"]]
    i = files.index("/etc/socle-mail/postmaster.password")
    assert f"uploads[{i}].content" in c.secret_paths() and c.plain["uploads"][i]["permissions"] == "0400"
    assert "mailPostmasterPassword" in run.export_secrets
    assert not any("s3cret" in e or "PASSWORD" in e.split("=")[0] for e in c.plain["envs"]), c.plain["envs"]


def test_an_empty_alias_file_is_still_written_so_the_last_alias_removed_goes(run):
    uploads = {u["file"]: u["content"] for u in mail_container(run).plain["uploads"]}
    assert uploads["/tmp/docker-mailserver/postfix-virtual.cf"] == ""


def test_srs_only_when_an_alias_forwards_outside_the_domain(run):
    env = dict(e.split("=", 1) for e in mail_container(run).plain["envs"])
    assert env["ENABLE_SRS"] == "0"
    out = run_values(with_mail({**MAIL, "aliases": {"contact@lepic.example.org": ["b@example.net"]}}))
    assert dict(e.split("=", 1) for e in mail_container(out).plain["envs"])["ENABLE_SRS"] == "1"
