"""The generated dossier d'exploitation (tools/dossier.py): for every stack file, real and example,
in French and English, every section is there and says what the stack file says (its servers,
hostnames, backup schedule); its Mermaid diagram is parsed by Mermaid's own parser; pandoc renders
it to HTML and, through WeasyPrint, to PDF; the cost table refuses a price without its date and
source (tests/test_ovh_prices.py); the command line says what is wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_scale_out import EXAMPLES, _stack_of, _values
from tests.tools import require
from tools import dossier

STACK_FILES = [*(ROOT / f"Pulumi.{s}.yaml" for s in ("dev", "staging", "prod")), *EXAMPLES]
IDS = [str(p.relative_to(ROOT)) for p in STACK_FILES]


def _cfg(path: Path):
    from components.config import load

    return load(_values(path), secret_keys=frozenset({"secrets"}))[0]


def _render(path: Path, lang: str) -> str:
    return dossier.render(_cfg(path), _stack_of(path), str(path.relative_to(ROOT)), lang)


def _mermaid(text: str) -> str:
    return text.split("```mermaid\n", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize("lang", ["fr", "en"])
@pytest.mark.parametrize("path", STACK_FILES, ids=IDS)
def test_every_section_is_there_and_says_what_the_stack_file_says(path, lang):
    text = _render(path, lang)
    headings = [f"## {i}. {dossier.TEXT[lang][key]}" for i, key in enumerate(dossier.SECTIONS, 1)]
    missing = [h for h in headings if h not in text]
    assert not missing, f"{path.name} ({lang}): missing sections {missing}"
    assert [text.index(h) for h in headings] == sorted(text.index(h) for h in headings), "sections out of order"
    values = _values(path)
    for server in values["servers"]:
        assert f"| {server} |" in text, f"{path.name}: server {server} not in the servers table"
    for name, app in values.get("apps", {}).items():
        for host in [app.get("hostname"), *(s["hostname"] for s in app.get("sites") or [])]:
            assert host is None or f"https://{host}" in text, f"{path.name}: {host} not in the URLs"
    backup = values.get("backup") or {}
    if backup.get("enabled", True):
        assert f"`{backup.get('schedule', '0 3 * * *')}`" in text, "the backup schedule is not in the dossier"
    assert "UNKNOWN" not in text and "None" not in text.replace("NoneType", ""), "a missing value shown as None"
    covered = dossier.coverage(_cfg(path), _stack_of(path))
    for server, kept in covered.items():
        restore = text.split(f"## 8. {dossier.TEXT[lang]['restore']}", 1)[1].split("\n## ", 1)[0]
        assert f"restore-server.sh {_stack_of(path)} {server} " in restore, f"{path.name}: no scenario C for {server}"
        for item in [*kept["volumes"][:1], *kept["databases"][:1]]:
            assert f" {item} --at " in restore, f"{path.name}: {item}, kept by {server}'s backup, has no restore command"
    if not covered:
        assert dossier.TEXT[lang]["nothing_to_restore"] in text
    if values.get("dns", {}).get("provider", "none") == "none":
        assert dossier.TEXT[lang]["dns_none"] in text, "a stack whose DNS socle does not manage says so"


def test_the_dossiers_diagrams_parse_with_mermaid():
    node = require("node", "nodejs")
    diagrams = [_mermaid(_render(p, "fr")) for p in STACK_FILES]
    res = subprocess.run([node, str(ROOT / "tests" / "mermaid_parse.mjs")], input=json.dumps(diagrams),
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    errors = {IDS[i]: e for i, e in enumerate(json.loads(res.stdout)) if e}
    assert not errors, f"Mermaid refuses the diagram of: {errors}"
    broken = subprocess.run([node, str(ROOT / "tests" / "mermaid_parse.mjs")], input=json.dumps(["flowchart LR\n  a --> b[[\n"]),
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert json.loads(broken.stdout)[0], "the parser accepts a broken diagram: it checks nothing"


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_pandoc_renders_html_with_every_section(tmp_path, lang):
    require("pandoc", "pandoc")
    path = ROOT / "examples" / "le-pic" / "Pulumi.prod.yaml"
    out = tmp_path / "dossier.html"
    dossier.to_file(_render(path, lang), "html", out, "t")
    html = " ".join(out.read_text().replace("’", "'").replace("&#39;", "'").split())
    for i, key in enumerate(dossier.SECTIONS, 1):
        assert f"{i}. {dossier.TEXT[lang][key]}</h2>" in html, f"section {key} is not a heading of the HTML"
    assert "<table" in html and 'class="mermaid"' in html, "no table or no Mermaid block in the HTML"


def test_pandoc_and_weasyprint_render_a_pdf(tmp_path):
    require("pandoc", "pandoc")
    require("weasyprint", "weasyprint")
    out = tmp_path / "dossier.pdf"
    before = set(Path.cwd().iterdir())
    dossier.to_file(_render(ROOT / "examples" / "oc-pizza" / "Pulumi.prod.yaml", "fr"), "pdf", out, "OC-Pizza")
    assert out.read_bytes()[:5] == b"%PDF-" and out.stat().st_size > 5000
    assert set(Path.cwd().iterdir()) == before, "pandoc left its scratch files in the working directory"


def test_the_cost_section_prices_what_the_stack_uses():
    path = ROOT / "examples" / "histologe" / "Pulumi.prod.yaml"
    cfg = _cfg(path)
    items = dict(dossier.inventory(cfg))
    assert items["instance b3-16"] == 2 and items["block storage GB"] == sum(
        s.disk_gb or 0 for s in cfg.servers.values()), items
    assert items["database mysql business db1-7 node"] == 2 and items["load balancer small"] == 1, items
    text = _render(path, "fr").split("## 13.", 1)[1].split("## 14.", 1)[0]
    assert "Total estimé" in text and "hors TVA" in text and "2026-" in text, text


def test_the_command_line(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "tools.dossier", *a], cwd=ROOT,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    ok = run("prod", "--lang", "en")
    assert ok.returncode == 0 and ok.stdout.startswith("# Operations document — stack prod"), ok.stderr
    missing = run("nope")
    assert missing.returncode == 2 and "no stack file" in missing.stderr
    bad = tmp_path / "Pulumi.prod.yaml"
    bad.write_text((ROOT / "Pulumi.prod.yaml").read_text().replace("region: GRA11", "region: GRA-11"))
    refused = run("prod", "--config-file", str(bad))
    assert refused.returncode == 2 and "GRA-11" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    no_pandoc = subprocess.run([sys.executable, "-m", "tools.dossier", "prod", "--format", "html", "--output",
                                str(tmp_path / "d.html")], cwd=ROOT, capture_output=True, text=True, timeout=120,
                               env={"PATH": str(Path(sys.executable).parent)})
    assert no_pandoc.returncode == 3 and "apt-get install -y pandoc" in no_pandoc.stderr, no_pandoc.stderr
    wrong = run("prod", "--format", "html", "--output", str(tmp_path / "d.pdf"))
    assert wrong.returncode == 2 and "does not end in .html" in wrong.stderr, wrong.stderr
    unwritable = run("prod", "--output", str(tmp_path / "missing-dir" / "d.md"))
    assert unwritable.returncode == 2 and "Traceback" not in unwritable.stderr, unwritable.stderr
