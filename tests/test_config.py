"""Bad config stops the program before any resource exists, naming the key, the value and the fix."""

import pytest

from components.config import ConfigError, StackConfig, load
from tests.conftest import STACKS, errors_of, run_values, stack_values



@pytest.mark.parametrize("stack", STACKS)
def test_every_real_stack_file_is_valid(stack):
    cfg, _ = load(stack_values(stack))
    assert isinstance(cfg, StackConfig)


def dev():
    return stack_values("dev")


def prod():
    return stack_values("prod")


def test_unknown_server_referenced_by_an_app_is_named_with_the_known_ones():
    v = prod()
    v["apps"]["nextcloud"]["server"] = "wbe"
    msg = errors_of(v)
    assert "socle:apps.nextcloud.server: unknown server 'wbe' (known servers: backup, web)" in msg, msg


def test_two_apps_on_one_hostname_are_refused():
    v = prod()
    v["apps"]["etherpad"]["hostname"] = "cloud.example.org"
    msg = errors_of(v)
    assert "socle:apps.etherpad.hostname: 'cloud.example.org' is already served by app 'nextcloud'" in msg, msg


def test_hostname_outside_the_domain_is_refused_with_the_fix():
    v = prod()
    v["apps"]["etherpad"]["hostname"] = "pad.example.net"
    msg = errors_of(v)
    assert "socle:apps.etherpad.hostname: 'pad.example.net' is outside the stack's domain 'example.org'" in msg, msg
    assert "NAME.example.org" in msg


def test_unknown_engine_lists_the_allowed_ones():
    v = prod()
    v["databases"]["main"]["engine"] = "mongodb"
    msg = errors_of(v)
    assert "socle:databases.main.engine:" in msg and "'postgresql' or 'mysql'" in msg and '"mongodb"' in msg, msg


def test_malformed_cidr_is_refused():
    v = prod()
    v["access"]["adminCidrs"] = ["203.0.113.7/24"]
    msg = errors_of(v)
    assert "socle:access.adminCidrs.0: '203.0.113.7/24' is not a CIDR block" in msg, msg


def test_malformed_cron_is_refused():
    v = prod()
    v["servers"]["web"]["autoBackup"]["cron"] = "every night"
    msg = errors_of(v)
    assert "socle:servers.web.autoBackup.cron: 'every night' is not a 5-field cron expression" in msg, msg


def test_plain_text_secret_is_refused_and_the_message_says_how_to_store_it():
    v = prod()
    v["apps"]["web"]["secrets"]["SECRET_KEY"] = "hunter2"
    msg = errors_of(v)
    assert "socle:apps.web.secrets.SECRET_KEY: a secret must not be written in plain text" in msg, msg
    assert "pulumi config set --secret" in msg
    assert msg.count("apps.web.secrets.SECRET_KEY") == 1, f"reported more than once:\n{msg}"


def test_secret_reference_must_exist_in_the_secret_map():
    v = prod()
    v["apps"]["web"]["secrets"]["SMTP_PASSWORD"] = {"config": "smtpPassword"}
    msg = errors_of(v)
    assert "socle:apps.web.secrets.SMTP_PASSWORD.config: 'smtpPassword' is not set in socle:secrets" in msg, msg


def test_secret_map_must_be_a_secret_config_key():
    v = prod()
    v["secrets"] = {"smtpPassword": "hunter2"}
    v["apps"]["web"]["secrets"]["SMTP_PASSWORD"] = {"config": "smtpPassword"}
    msg = errors_of(v, secret_keys=frozenset())
    assert "socle:secrets: holds plain text" in msg, msg
    cfg, secrets = load(v, secret_keys={"secrets"})
    assert secrets == {"smtpPassword": "hunter2"}


def test_unknown_key_is_refused():
    v = prod()
    v["databases"]["main"]["backuptime"] = "03:00:00"
    msg = errors_of(v)
    assert "socle:databases.main.backuptime: unknown key" in msg, msg


def test_unknown_top_level_key_is_refused():
    v = prod()
    v["serverz"] = {}
    assert "socle:serverz: unknown key" in errors_of(v)


def test_target_ovh_requires_its_settings():
    v = prod()
    del v["ovh"]
    del v["proxy"]["acmeEmail"]
    msg = errors_of(v)
    assert "socle:ovh: required on target ovh" in msg, msg
    assert "socle:proxy.acmeEmail: required on target ovh" in msg, msg


def test_unknown_database_and_logical_database_are_named():
    v = prod()
    v["apps"]["web"]["databases"] = [{"use": "mian.app"}]
    v["apps"]["worker"]["databases"] = [{"use": "main.ap"}]
    msg = errors_of(v)
    assert "socle:apps.web.databases.0.use: unknown database 'mian' (known databases: main)" in msg, msg
    assert "socle:apps.worker.databases.0.use: database 'main' has no logical database 'ap'" in msg, msg


def test_multi_node_plan_needs_several_nodes():
    v = prod()
    v["databases"]["main"]["nodes"] = 1
    assert "socle:databases.main.nodes: plan business is multi-node" in errors_of(v)


def test_app_with_hostname_needs_a_port():
    v = dev()
    del v["apps"]["web"]["port"]
    assert "socle:apps.web.port: required with hostname" in errors_of(v)


def test_local_target_runs_on_one_server():
    v = dev()
    v["servers"]["other"] = {}
    assert "socle:servers: target local runs everything on the one local Docker engine" in errors_of(v)


def test_shared_generated_secret_needs_one_length():
    v = dev()
    v["apps"]["worker"]["secrets"]["SECRET_KEY"] = {"generate": 40, "shared": "app-secret-key"}
    assert "socle:apps.worker.secrets.SECRET_KEY.generate: shared secret 'app-secret-key' has length 50" in errors_of(v)


def test_all_problems_are_reported_at_once():
    v = prod()
    v["apps"]["nextcloud"]["server"] = "nope"
    v["apps"]["etherpad"]["hostname"] = "pad.example.net"
    err = None
    try:
        load(v)
    except ConfigError as e:
        err = e
    assert err is not None and len(err.issues) == 2, err


def test_defaults_are_the_secure_ones():
    cfg, _ = load({"domain": "socle.localhost", "servers": {"local": {}}, "backup": {"targets": {"localPath": "/repo"}},
                   "buckets": {"b": {}}, "apps": {"a": {"image": "x:1", "server": "local"}}})
    assert cfg.target == "local"
    assert cfg.buckets["b"].versioning and cfg.buckets["b"].encryption
    assert cfg.access.deploy_user == "deploy"
    assert cfg.dns.caa_issuers == ["letsencrypt.org"]
    assert cfg.proxy.hsts_max_age >= 31536000
    assert cfg.backup.enabled and cfg.backup.schedule == "0 3 * * *", "backups are on, nightly at 03:00, by default"


def test_backups_are_on_by_default_and_need_a_target():
    v = dev()
    del v["backup"]
    assert "socle:backup.targets: set at least one target" in errors_of(v)
    v["backup"] = {"enabled": False}
    load(v)


def test_backup_targets_must_exist_and_have_the_right_role():
    v = prod()
    v["backup"]["targets"] = {"bucket": "backup", "server": "web"}
    msg = errors_of(v)
    assert "socle:backup.targets.bucket: unknown bucket 'backup' (known buckets: backups, documents)" in msg, msg
    assert "socle:backup.targets.server: server 'web' has role app" in msg, msg


def test_backup_bucket_cannot_be_shared_with_apps():
    v = prod()
    v["backup"]["targets"]["bucket"] = "documents"
    assert "socle:backup.targets.bucket: bucket 'documents' is also used by apps web, worker" in errors_of(v)


def test_backup_schedule_must_be_cron():
    v = prod()
    v["backup"]["schedule"] = "nightly"
    assert "socle:backup.schedule: 'nightly' is not a 5-field cron expression" in errors_of(v)


def test_bad_config_stops_the_program_before_any_resource_is_registered():
    import pulumi

    v = dev()
    v["apps"]["web"]["server"] = "nowhere"
    from tools import harness

    recorded = []
    real = harness.Resource
    # The root Stack always exists; nothing else may.
    harness.Resource = lambda *a, **k: (k["type"] != "pulumi:pulumi:Stack" and recorded.append(k)) or real(*a, **k)
    try:
        with pytest.raises(pulumi.RunError) as exc:
            run_values(v)
    finally:
        harness.Resource = real
    assert "socle:apps.web.server: unknown server 'nowhere'" in str(exc.value)
    assert not recorded, f"resources registered before the config error: {[r['name'] for r in recorded]}"


def test_volume_include_must_stay_inside_the_volume():
    v = dev()
    v["apps"]["nextcloud"]["volumes"]["data"]["include"] = ["data/", "../etc"]
    assert "socle:apps.nextcloud.volumes.data.include.1: '../etc' must be a path inside the volume" in errors_of(v)


def test_dead_man_urls_are_one_line_https_and_one_per_job():
    v = prod()
    v["backup"]["checkPingUrl"] = v["backup"]["pingUrl"]
    assert "socle:backup.checkPingUrl: run, check and drill must each report to a check of their own" in errors_of(v)
    v = prod()
    v["backup"]["pingUrl"] = "https://hc-ping.com/abc\nX-Injected: 1"
    assert 'socle:backup.pingUrl: "https://hc-ping.com/abc\\nX-Injected: 1" holds a newline' in errors_of(v)
    v = prod()
    v["backup"]["pingUrl"] = "https://hc-ping.com/abc'$(id)"
    assert "is not an https:// URL of plain characters" in errors_of(v)
    v = prod()
    v["backup"]["drillPingUrl"] = {"config": "drillPing"}
    assert "socle:backup.drillPingUrl.config: 'drillPing' is not set in socle:secrets" in errors_of(v)


def test_a_server_holding_state_on_ovh_needs_a_data_volume():
    v = prod()
    del v["servers"]["backup"]["diskGb"]
    assert ("socle:servers.backup.diskGb: required on target ovh for a server that holds state: its data lives on a "
            "block storage volume of this size") in errors_of(v)
    v = prod()
    v["servers"]["spare"] = {"flavor": "d2-4"}  # no app, no database: nothing to keep
    for app in v["apps"].values():
        app["server"] = "web"
    load(v)


def test_an_extra_ssh_port_must_be_a_port_of_its_own():
    v = prod()
    v["access"]["extraSshPorts"] = [v["access"]["sshPort"], 443, 2222, 2222]
    out = errors_of(v)
    assert "socle:access.extraSshPorts.0: 4660 is already access.sshPort" in out
    assert "socle:access.extraSshPorts.1: 443 is already proxy.httpsPort" in out
    assert "socle:access.extraSshPorts.3: 2222 is already access.extraSshPorts.2" in out
    v = prod()
    v["access"]["extraSshPorts"] = [2222]
    load(v)


# ---------------------------------------------------------------- what the Pulumi CLI hands over

def test_yaml_1_1_booleans_from_the_cli_are_explained():
    """The Pulumi CLI reads `restart: no` as false (Go yaml.v2): the message says to quote it."""
    v = prod()
    v["apps"]["worker"]["restart"] = False
    msg = errors_of(v)
    assert "socle:apps.worker.restart:" in msg and "(got false); YAML 1.1 reads yes/no/on/off as true/false: write " \
        "the value in quotes" in msg, msg


def test_a_number_where_text_is_expected_says_quote_it():
    v = prod()
    v["databases"]["main"]["version"] = 16
    assert "socle:databases.main.version: Input should be a valid string (got 16); write it in quotes: '16'" in errors_of(v)


def test_a_misspelt_key_gets_did_you_mean_and_a_far_one_does_not():
    v = prod()
    v["apps"]["etherpad"]["hostnme"] = v["apps"]["etherpad"].pop("hostname")
    assert "socle:apps.etherpad.hostnme: unknown key 'hostnme'; did you mean 'hostname'?" in errors_of(v)
    v = prod()
    v["apps"]["etherpad"]["zzzzzz"] = 1
    msg = errors_of(v)
    assert "unknown key 'zzzzzz' (the README" in msg and "did you mean" not in msg, msg


def test_a_control_character_anywhere_is_refused_once_by_key():
    v = prod()
    v["dns"]["records"][0]["values"][0] = "10 mx1.example.net.\r\n@ IN A 198.51.100.66"
    msg = errors_of(v)
    assert msg.count("\n  ") == 1 and "socle:dns.records.0.values.0: " in msg and "holds a newline" in msg, msg


def test_a_bad_url_in_a_union_is_one_problem_not_two():
    v = prod()
    v["backup"]["pingUrl"] = "ftp://hc-ping.com/x"
    msg = errors_of(v)
    assert msg.count("\n  ") == 1 and "socle:backup.pingUrl: 'ftp://hc-ping.com/x' is not an https:// URL" in msg, msg


@pytest.mark.parametrize("engine,version,hosting", [("postgresql", "16", "managed"), ("postgresql", "18", "managed"),
                                                    ("mysql", "8", "managed"), ("postgresql", "13", "container"),
                                                    ("mysql", "11.4", "container")])
def test_offered_engine_versions_pass(engine, version, hosting):
    from components.ovh_catalog import version_problem

    assert version_problem(engine, version, hosting) is None


def test_catalog_regions_have_the_shape_ovh_uses():
    import re

    from components.naming import ovh_location
    from components.ovh_catalog import INSTANCE_REGIONS, LOCATIONS

    assert all(re.fullmatch(r"[A-Z]+[0-9]+|[A-Z]+(-[A-Z]+){1,2}(-[0-9])?", r) for r in INSTANCE_REGIONS), INSTANCE_REGIONS
    assert {ovh_location(r) for r in INSTANCE_REGIONS if r[-1].isdigit() and "-" not in r} <= LOCATIONS


@pytest.mark.parametrize("r", [{}, {"daily": 7, "weekly": 4}, {"daily": 0, "weekly": 0, "monthly": 0, "yearly": 5},
                               {"daily": 30, "monthly": 2}])
def test_retention_days_has_one_meaning_in_config_and_policy(r):
    from components.config import Retention
    from policy.rules import retention_days

    model = Retention(**r)
    assert model.days() == retention_days(model.model_dump())
