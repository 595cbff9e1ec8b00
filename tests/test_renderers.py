"""Everything socle renders, checked by the real tool that will consume it."""

import pytest
import yaml

from components.config import load
from components.container_stack import AppSpec, routes_for
from components.render.caddyfile import Route, render_caddyfile
from components.render.cloudinit import render_cloud_init, render_sshd_config
from components.render.dbinit import render_db_init
from components.render.s3policy import bucket_policy
from tests.conftest import STACKS, stack_values
from tests.tools import require, run

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm0vYb6sP0bK8yQm8ZC1vZ5eQvB1pC3dT5oX2Yq1n7a admin@example.org"


def cloud_init_schema(tmp_path, text):
    f = tmp_path / "user-data.yaml"
    f.write_text(text)
    return run([require("cloud-init"), "schema", "--config-file", str(f)])


@pytest.mark.parametrize("role", ["app", "backup"])
def test_cloud_init_passes_the_cloud_init_schema(tmp_path, role):
    text = render_cloud_init(hostname="socle-prod-web", role=role, deploy_user="deploy", admin_keys=[KEY], ssh_port=4660)
    res = cloud_init_schema(tmp_path, text)
    assert res.returncode == 0 and "Valid cloud-config" in res.stdout, f"cloud-init schema rejected it:\n{res.stdout}{res.stderr}\n{text}"


def test_cloud_init_schema_check_does_reject_a_broken_document(tmp_path):
    # Proves the check above can fail: the same tool on a document with a wrong type.
    res = cloud_init_schema(tmp_path, "#cloud-config\nssh_pwauth: [1, 2]\nusers: 5\n")
    assert res.returncode != 0, res.stdout


def test_cloud_init_hardens_the_server_and_installs_what_the_role_needs():
    import yaml
    app = yaml.safe_load(render_cloud_init(hostname="h", role="app", deploy_user="deploy", admin_keys=[KEY], ssh_port=4660))
    assert app["disable_root"] is True and app["ssh_pwauth"] is False
    assert "docker.io" in app["packages"] and "unattended-upgrades" in app["packages"]
    user = app["users"][0]
    assert user["name"] == "deploy" and user["ssh_authorized_keys"] == [KEY] and user["lock_passwd"] is True
    files = {f["path"]: f["content"] for f in app["write_files"]}
    assert 'Unattended-Upgrade "1"' in files["/etc/apt/apt.conf.d/20auto-upgrades"]
    backup = yaml.safe_load(render_cloud_init(hostname="h", role="backup", deploy_user="deploy", admin_keys=[KEY], ssh_port=4660))
    assert "docker.io" not in backup["packages"] and "restic" in backup["packages"], "a backup server runs no Docker"


def sshd_check(tmp_path, dropin: str):
    keygen = require("ssh-keygen", "openssh-client")
    sshd = require("sshd", "openssh-server")
    run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hostkey")])
    (tmp_path / "10-socle.conf").write_text(dropin)
    (tmp_path / "sshd_config").write_text(f"Include {tmp_path}/10-socle.conf\nHostKey {tmp_path}/hostkey\n")
    import os
    os.makedirs("/run/sshd", exist_ok=True)
    return run([sshd, "-t", "-f", str(tmp_path / "sshd_config")])


def test_sshd_accepts_the_rendered_hardening(tmp_path):
    res = sshd_check(tmp_path, render_sshd_config(port=4660, allow_users=["deploy"]))
    assert res.returncode == 0, f"sshd -t rejected the drop-in:\n{res.stderr}"
    # -T prints the effective configuration: check the values sshd will really use.
    eff = run([require("sshd", "openssh-server"), "-T", "-f", str(tmp_path / "sshd_config")]).stdout
    for line in ("port 4660", "permitrootlogin no", "passwordauthentication no", "kbdinteractiveauthentication no",
                 "allowusers deploy", "authenticationmethods publickey"):
        assert line in eff, f"sshd would not apply '{line}'"


def test_sshd_check_does_reject_a_broken_drop_in(tmp_path):
    res = sshd_check(tmp_path, "PermitRootLogin perhaps\n")
    assert res.returncode != 0


def caddy_validate(tmp_path, text):
    f = tmp_path / "Caddyfile"
    f.write_text(text)
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "PATH": "/usr/bin:/bin"}
    return run([require("caddy"), "validate", "--config", str(f), "--adapter", "caddyfile"], env=env)


@pytest.mark.parametrize("stack", STACKS)
def test_each_stacks_caddyfile_passes_caddy_validate(tmp_path, stack):
    cfg, _ = load(stack_values(stack))
    apps = [AppSpec(name=n, image=a.image, physical_name=n, hostname=a.hostname, port=a.port,
                    maintenance=a.maintenance) for n, a in cfg.apps.items()]
    text = render_caddyfile(routes_for(apps), acme_email=cfg.proxy.acme_email, internal_ca=cfg.target == "local",
                            hsts_max_age=cfg.proxy.hsts_max_age)
    res = caddy_validate(tmp_path, text)
    assert res.returncode == 0, f"caddy validate rejected the {stack} Caddyfile:\n{res.stderr[-2000:]}\n{text}"


def test_caddy_validate_does_reject_a_broken_caddyfile(tmp_path):
    text = render_caddyfile([Route("a.example.org", "a:80")], acme_email="x@example.org", internal_ca=False,
                            hsts_max_age=86400).replace("protocols tls1.2 tls1.3", "protocols tls0.9")
    assert caddy_validate(tmp_path, text).returncode != 0


def test_caddyfile_needs_an_acme_contact_unless_internal():
    with pytest.raises(ValueError, match="ACME contact"):
        render_caddyfile([Route("a.example.org", "a:80")], acme_email=None, internal_ca=False, hsts_max_age=86400)


def test_caddyfile_redirect_carries_a_non_standard_public_port():
    text = render_caddyfile([Route("a.localhost", "a:80")], acme_email=None, internal_ca=True, hsts_max_age=86400,
                            public_https_port=8443)
    assert "redir https://{host}:8443{uri} 308" in text
    text = render_caddyfile([Route("a.localhost", "a:80")], acme_email=None, internal_ca=True, hsts_max_age=86400)
    assert "redir https://{host}{uri} 308" in text


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_database_init_script_passes_shellcheck_and_holds_no_password(tmp_path, engine):
    text = render_db_init(engine, ["nextcloud", "app-data"])
    f = tmp_path / "init.sh"
    f.write_text(text)
    res = run([require("shellcheck"), "-s", "sh", str(f)])
    assert res.returncode == 0, f"shellcheck:\n{res.stdout}"
    assert "SOCLE_PASSWORD_APP_DATA" in text and "PASSWORD '" not in text


def test_database_init_script_refuses_an_unknown_engine():
    with pytest.raises(ValueError, match="unknown engine"):
        render_db_init("oracle", ["x"])


def test_bucket_policy_is_limited_to_one_bucket():
    import json
    doc = json.loads(bucket_policy("socle-prod-documents"))
    (stmt,) = doc["Statement"]
    assert stmt["Resource"] == ["arn:aws:s3:::socle-prod-documents", "arn:aws:s3:::socle-prod-documents/*"]
    assert "s3:DeleteBucket" not in stmt["Action"] and "s3:PutBucketObjectLockConfiguration" not in stmt["Action"]


def test_a_first_boot_without_its_packages_ends_in_error(tmp_path):
    """The last runcmd entry decides cloud-init's final status: it fails, naming the package, when
    one was not installed (cloud-init itself only warns and says `done`)."""
    doc = yaml.safe_load(render_cloud_init(hostname="h", role="app", deploy_user="deploy", admin_keys=[KEY],
                                           ssh_port=4660))
    assert doc["manage_etc_hosts"] is True and doc["locale"] == "C.UTF-8"
    check = doc["runcmd"][-1]
    assert check[:2] == ["sh", "-c"] and "docker.io" in check[2]
    script = tmp_path / "check.sh"
    script.write_text(check[2] + "\n")
    assert run([require("shellcheck"), "-s", "sh", str(script)]).returncode == 0
    installed = check[2].replace("docker.io unattended-upgrades apt-listchanges ca-certificates curl", "openssl")
    assert run(["sh", "-c", installed]).returncode == 0
    missing = run(["sh", "-c", check[2].replace("docker.io", "socle-no-such-package")])
    assert missing.returncode == 1 and "package socle-no-such-package is not installed" in missing.stderr


def test_the_restic_keys_file_is_readable_by_the_restic_user():
    """sshd reads a user's AuthorizedKeysFile with that user's rights: a keys file inside a
    directory socle makes 0700 (/etc/socle) refuses every backup client with "publickey"."""
    from components.render.backup import render_installer, render_restic_access, render_secrets_installer
    from components.render.cloudinit import RESTIC_KEYS

    private_dirs = {line.split()[-1] for script in (render_installer([]), render_secrets_installer(), render_restic_access())
                    for line in script.splitlines() if "install -d" in line and "-m 0700" in line}
    assert private_dirs, "no 0700 directory found in the installers: the test no longer reads them"
    for d in private_dirs:
        assert not RESTIC_KEYS.startswith(d.rstrip("/") + "/"), f"{RESTIC_KEYS} is inside {d} (0700): restic cannot read it"
