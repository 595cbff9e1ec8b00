"""The DNS records a mail domain needs (socle:mail), in presentation format: what a zone file holds
and what Gandi LiveDNS takes as TXT values. Pure."""

from __future__ import annotations


def txt(value: str) -> str:
    """A TXT value as quoted character-strings of at most 255 bytes each (RFC 1035 §3.3: a 2048-bit
    DKIM key does not fit in one); receivers join them back without spaces (RFC 6376 §3.6.2.2)."""
    if any(c in value for c in '"\\\n'):
        raise ValueError(f"TXT value holds a quote, backslash or newline: {value[:60]!r}")
    chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join(f'"{c}"' for c in chunks)


def dkim_value(public_key_pem: str) -> str:
    """The DKIM key record (RFC 6376 §3.6.1): the RSA public key's SubjectPublicKeyInfo, base64,
    which is the body of its PEM."""
    body = "".join(line.strip() for line in public_key_pem.strip().splitlines() if not line.startswith("-----"))
    if not body:
        raise ValueError("empty public key")
    return f"v=DKIM1; k=rsa; p={body}"


def spf_value(includes: list[str]) -> str:
    """Only the domain's MX hosts (and the listed services) send its mail; everything else fails."""
    return " ".join(["v=spf1", "mx", *(f"include:{d}" for d in includes), "-all"])


def dmarc_value(policy: str, report_to: str | None) -> str:
    """Strict alignment of both SPF and DKIM with the From domain, the policy for the rest."""
    tags = ["v=DMARC1", f"p={policy}", "adkim=s", "aspf=s"]
    if report_to:
        tags.append(f"rua=mailto:{report_to}")
    return "; ".join(tags)
