"""The strict stack-file reader (components/stack_file.py): a file that YAML readers disagree on, or
that loses a key silently, is refused with the file, line, column and the fix; a good one reads the
same as PyYAML reads it, with each key's line."""

from pathlib import Path

import pytest
import yaml

from components.stack_file import StackFileError, read

ROOT = Path(__file__).resolve().parents[1]


def problems(text: str) -> list[str]:
    with pytest.raises(StackFileError) as err:
        read(Path("Pulumi.x.yaml"), text)
    assert "Traceback" not in str(err.value)
    return str(err.value).splitlines()


@pytest.mark.parametrize("stack", sorted(p.name for p in ROOT.glob("Pulumi.*.yaml")) + ["profiles/review.yaml"])
def test_every_real_stack_file_reads_as_pyyaml_reads_it(stack):
    path = ROOT / stack
    assert read(path).doc == yaml.safe_load(path.read_text()), f"{stack} reads differently"


def test_positions_point_at_each_key():
    f = read(ROOT / "Pulumi.prod.yaml")
    lines = (ROOT / "Pulumi.prod.yaml").read_text().splitlines()
    for key, needle in (("apps.etherpad.image", "image: etherpad/etherpad"), ("ovh.region", "region: GRA11"),
                        ("access.adminCidrs.0", "- 203.0.113.0/28")):
        assert needle in lines[f.positions[key] - 1], f"{key} is not on line {f.positions[key]}"
    assert f.line_of("apps.etherpad.notThere") == f.positions["apps.etherpad"], "a missing key points at its parent"


def test_a_key_written_twice_is_refused_with_both_lines():
    found = problems("config:\n  socle:apps:\n    a: {image: x}\n  socle:domain: d\n  socle:apps:\n    b: {image: z}\n")
    assert found == ["Pulumi.x.yaml:5:3: `config.socle:apps` is written twice (first on line 2); YAML keeps only the "
                     "last one, so everything under the first would be dropped: merge the two into one"]


def test_a_tab_is_refused_with_its_line():
    assert problems("config:\n  socle:domain: d\n\tsocle:target: ovh\n") == [
        "Pulumi.x.yaml:3:1: a tab character: YAML indents with spaces only; replace the tab with spaces"]


def test_a_syntax_error_names_line_and_column():
    (line,) = problems('config:\n  socle:domain: "d\n  socle:target: ovh\n')
    assert line.startswith("Pulumi.x.yaml:") and "not valid YAML" in line, line


@pytest.mark.parametrize("plain, why", [
    ("no", "read `no` as a boolean"), ("On", "read `On` as a boolean"), ("y", "read `y` as a boolean"),
    ("2:30:00", "as a base-60 number (9000)"), ("0755", "as an octal number (493)"), ("1_000", "as the number 1000"),
])
def test_yaml_1_1_surprises_are_refused_with_quote_it(plain, why):
    (line,) = problems(f"config:\n  socle:x: {plain}\n")
    assert why in line and f"write it in quotes: '{plain}'" in line, line


@pytest.mark.parametrize("fine", ["'no'", '"2:30:00"', "true", "false", "16", "02:30:00", "0", "1.5", "GRA11", "!!str no"])
def test_values_every_reader_agrees_on_pass(fine):
    read(Path("Pulumi.x.yaml"), f"config:\n  socle:x: {fine}\n")


def test_not_a_mapping_and_not_utf8_are_messages(tmp_path):
    assert problems("- a\n- b\n") == ["Pulumi.x.yaml:1:1: a stack file is a mapping with a `config:` key; see "
                                      "Pulumi.dev.yaml"]
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_bytes(b"config:\n  socle:domain: caf\xe9\n")
    with pytest.raises(StackFileError, match="not UTF-8 text"):
        read(bad)


def test_dates_binary_values_and_aliases_are_refused_with_their_line():
    assert problems("config:\n  socle:servers:\n    web: {rebuild: 2026-11-25}\n") == [
        "Pulumi.x.yaml:3:1: `config.socle:servers.web.rebuild` is read as a date (2026-11-25), which a stack config "
        "cannot hold; write it in quotes: '2026-11-25'"]
    (line,) = problems("config:\n  socle:x: !!binary cHJvZApFVklMPTE=\n")
    assert "binary data (!!binary)" in line, line
    bomb = "config:\n  socle:lol:\n    a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"    {n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))
    (line,) = problems(bomb)  # answered at once, not after walking 10^9 nodes
    assert "YAML anchor and alias" in line, line
