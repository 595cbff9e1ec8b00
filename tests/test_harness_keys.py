"""The mocks' SSH keys are real (tools/ssh_keys.py): OpenSSH reads the private key, derives the
same public key, and a signature made with it verifies against that public key."""

import os
import subprocess

from tools.ssh_keys import ed25519_pair
from tests.tools import require


def test_openssh_signs_with_the_private_key_and_the_public_key_verifies(tmp_path):
    require("ssh-keygen", "openssh-client")
    private, public = ed25519_pair("web-backup-ssh-key")
    key = tmp_path / "id"
    key.write_text(private)
    os.chmod(key, 0o600)
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, timeout=30)
    assert derived.returncode == 0 and derived.stdout.split()[:2] == public.split()[:2], derived
    (tmp_path / "msg").write_text("socle\n")
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", "test", str(tmp_path / "msg")], check=True)
    (tmp_path / "signers").write_text(f"t@socle {public}")
    verify = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(tmp_path / "signers"), "-I", "t@socle", "-n", "test",
                             "-s", str(tmp_path / "msg.sig")], input="socle\n", capture_output=True, text=True, timeout=30)
    assert verify.returncode == 0, f"the public key does not match the private key: {verify.stderr}"


def test_keys_are_deterministic_per_name_and_differ_between_names():
    assert ed25519_pair("a") == ed25519_pair("a")
    assert ed25519_pair("a")[1] != ed25519_pair("b")[1]
    assert all(part.endswith("\n") for part in ed25519_pair("a")), "pulumi-tls's keys end with a newline"
