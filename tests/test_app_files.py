"""apps.*.files: configuration files put into an app's containers (OC-Pizza's settings directory,
Postfix maps, SPIP's config), filled from the app's own environment, read-only, secret as soon as
they hold a secret, and never written on the host."""

from __future__ import annotations

import copy
import json

import pytest


from components.render.files import MAX_BYTES, references, render_file
from tests.conftest import ROOT, errors_of, run_values
from tests.test_systems import OC_PIZZA

SOURCE = "examples/oc-pizza/config/production.ini"


def with_files(files: dict) -> dict:
    v = copy.deepcopy(OC_PIZZA)
    v["apps"]["shop"]["files"] = files
    return v



def shop(run):
    return next(r for r in run.of_type("docker:index/container:Container") if r.name.endswith("-shop"))


def test_render_fills_variables_and_keeps_escaped_braces():
    assert references("a=${A} b=${B} a=${A} $${C}") == ["A", "B"]
    assert render_file("a=${A} $${C} $$ $x ${", {"A": "1"}) == "a=1 ${C} $$ $x ${"


def test_a_file_that_takes_a_secret_is_a_secret_and_the_others_stay_plain():
    run = run_values(with_files({
        "/app/config/production.ini": {"source": SOURCE},
        "/app/config/hosts.txt": {"content": "ocpizza.example.org\n"},
        "/app/bin/healthcheck": {"content": "#!/bin/sh\nexec wget -qO- http://127.0.0.1:8000/health\n",
                                 "executable": True},
    }))
    c = shop(run)
    uploads = {u["file"]: u for u in c.plain["uploads"]}
    assert set(uploads) == {"/app/config/production.ini", "/app/config/hosts.txt", "/app/bin/healthcheck"}
    assert {f: u["permissions"] for f, u in uploads.items()} == {
        "/app/config/production.ini": "0444", "/app/config/hosts.txt": "0444", "/app/bin/healthcheck": "0555"}
    ini = uploads["/app/config/production.ini"]["content"]
    assert "Commande ${order_id}" in ini and "secret_key = ${SECRET_KEY}" not in ini, ini
    secret_values = [v for v in run.secret_values if v in ini]
    assert secret_values, "the SECRET_KEY value did not reach the file"
    files = [u["file"] for u in c.plain["uploads"]]
    secret = {p for p in c.secret_paths() if p.startswith("uploads")}
    assert secret == {f"uploads[{files.index('/app/config/production.ini')}].content"}, \
        f"only the file holding SECRET_KEY should be a Pulumi secret: {sorted(secret)}"


def test_files_reach_no_host_and_the_plan_without_files_is_unchanged():
    run = run_values(with_files({"/app/config/hosts.txt": {"content": "x\n"}}))
    for r in run.of_type("command:remote:Command"):
        assert "/app/config/hosts.txt" not in json.dumps(r.plain), f"{r.name} writes the app's file on the host"
    bare = copy.deepcopy(OC_PIZZA)
    bare["apps"]["shop"].pop("files", None)
    assert "uploads" not in shop(run_values(bare)).plain


@pytest.mark.parametrize("files,says", [
    ({"app/settings.ini": {"content": "x"}}, "'app/settings.ini' is not an absolute file path"),
    ({"/app/../etc/passwd": {"content": "x"}}, "is not an absolute file path"),
    ({"/proc/self/environ": {"content": "x"}}, "is under /proc, which the kernel provides"),
    ({"/app/x": {"content": "x", "source": SOURCE}}, "give either content"),
    ({"/app/x": {}}, "give either content"),
    ({"/app/x": {"source": "../../etc/passwd"}}, "leads out of the repository"),
    ({"/app/x": {"source": "examples/nope.ini"}}, "'examples/nope.ini' is not a file of the repository"),
    ({"/app/x": {"content": "key = ${NOT_AN_ENV}"}}, "${NOT_AN_ENV} is not an environment variable of app shop"),
    ({"/app/x": {"content": "x" * (MAX_BYTES + 1)}}, "socle:apps.shop.files./app/x.content"),
])
def test_bad_files_are_named(files, says):
    msg = errors_of(with_files(files))
    assert says in msg, msg


def test_a_symlink_out_of_the_repository_is_refused(tmp_path):
    link = ROOT / "examples" / "oc-pizza" / "config" / ".test-link"
    link.symlink_to("/etc/hostname")
    try:
        msg = errors_of(with_files({"/app/x": {"source": "examples/oc-pizza/config/.test-link"}}))
    finally:
        link.unlink()
    assert "leads out of the repository" in msg, msg
