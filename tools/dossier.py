"""The operations document ("dossier d'exploitation") of a stack, written from its real config.

    python -m tools.dossier STACK [--config-file PATH] [--lang fr|en] [--format md|html|pdf] [--output PATH]

The organisations socle serves describe their infrastructure in a PDF that drifts from reality the
day after it is written; this one is generated from the stack file that deploys it, so a pull
request that changes the stack changes its document too (CI attaches it to the pull request).

It says what runs where (with a Mermaid diagram), the URLs, the DNS, where the data lives, the
backups (what, when, where, how long) and the restore procedures as commands, the monitoring, the
access, the updates, the maintenance switch, an estimate of the monthly cost (tools/ovh_prices.py),
and what the stack does not cover. French first (the users write in French), English with --lang en.

Markdown is written by socle itself; HTML and PDF by pandoc (Debian's `pandoc`), PDF through
WeasyPrint (Debian's `weasyprint`). The diagram stays a `mermaid` code block: GitHub and most
Markdown viewers draw it.

Exit status: 0 written, 2 an invalid stack file or command line, 3 pandoc or weasyprint missing
(the Markdown can still be written).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from tools import ovh_prices

ROOT = Path(__file__).resolve().parents[1]

SECTIONS = ("context", "architecture", "servers", "urls", "dns", "data", "backups", "restore", "monitoring",
            "access", "updates", "maintenance", "cost", "not_covered")

TEXT = {
    "fr": {
        "lang": "fr", "title": "Dossier d'exploitation — pile {stack}",
        "generated": "Généré par socle (`python -m tools.dossier`) depuis `{file}` : il décrit ce que ce fichier "
                     "déploie, et change avec lui. Le schéma (Mermaid) est dessiné par GitHub et la plupart des "
                     "lecteurs Markdown ; en HTML et PDF il reste en texte.",
        "context": "Contexte", "architecture": "Architecture", "servers": "Serveurs et ce qui y tourne",
        "urls": "Adresses (URL)", "dns": "DNS", "data": "Données et où elles vivent",
        "backups": "Sauvegardes", "restore": "Procédures de restauration", "monitoring": "Supervision et alertes",
        "access": "Accès et SSH", "updates": "Mises à jour", "maintenance": "Interrupteur de maintenance",
        "cost": "Coût mensuel estimé", "not_covered": "Ce que cette pile ne couvre pas",
        "domain": "Domaine", "target": "Cible", "region": "Région", "backup_region": "Région des copies",
        "target_ovh": "OVHcloud Public Cloud (serveurs Debian 12, bases managées, stockage objet)",
        "target_local": "le moteur Docker local (développement)",
        "server": "Serveur", "role": "Rôle", "flavor": "Gabarit", "disk": "Disque de données", "runs": "Fait tourner",
        "snapshots": "Instantanés OVH", "none": "aucun", "app": "Application", "url": "URL",
        "state": "État", "online": "en ligne", "in_maintenance": "en maintenance",
        "dns_provider": "Fournisseur", "records": "Enregistrements gérés", "caa": "Autorités de certification (CAA)",
        "what": "Quoi", "where": "Où", "kept": "Conservation", "database": "Base", "volume": "Volume",
        "bucket": "Compartiment", "cache": "Cache",
        "schedule": "Planification", "targets": "Destinations", "retention": "Rétention",
        "check": "Vérification", "drill": "Exercice de restauration", "watched_by": "Surveillé par",
        "dead_man": "une URL « homme mort » par tâche", "no_dead_man": "aucune URL « homme mort »",
        "scenario_a": "A — erreur humaine : remettre un volume ou une base au jour J",
        "scenario_b": "B — rançongiciel : repartir d'une image propre et de la copie verrouillée d'avant l'attaque",
        "scenario_c": "C — perte totale d'un serveur",
        "no_monitoring": "Aucune supervision n'est configurée (`socle:monitoring`).",
        "watcher": "Serveur de supervision", "alerts_to": "Alertes envoyées à", "thresholds": "Seuils",
        "alerts": "Alertes", "heartbeat": "battement de cœur vers une URL externe (une supervision morte se voit)",
        "ssh_port": "Port SSH", "admin_cidrs": "Réseaux d'administration", "admin_keys": "Clés d'administration",
        "deploy_user": "Utilisateur de déploiement", "ci_key": "Clé de déploiement de la CI",
        "yes": "oui", "no": "non",
        "updates_body": "Mises à jour de sécurité Debian installées chaque jour (unattended-upgrades), redémarrage "
                        "si nécessaire entre 04:00 et 06:30 UTC, jamais pendant une sauvegarde. Les images des "
                        "conteneurs sont épinglées et mises à jour par des pull requests (Renovate) ; une nouvelle "
                        "image d'une application qui a des données n'est déployée qu'après une sauvegarde réussie.",
        "reports": "Rapports des mises à jour par courriel", "maint_body":
            "Les visiteurs voient une page 503 « en maintenance » ; conteneurs, bases, sauvegardes et supervision "
            "continuent de tourner.",
        "maint_on": "Activer", "maint_off": "Désactiver", "maint_app": "Pour une seule application",
        "cost_intro": "Estimation, pas une facture : les ressources OVHcloud de la pile, hors TVA, au tarif daté de "
                      "`tools/ovh_prices.json` (un tarif horaire compte 730 heures par mois).",
        "cost_missing": "Aucun tarif daté n'est enregistré dans socle (tools/ovh_prices.json est vide) : les montants "
                        "sont à relever sur {source} à la date du jour. Chaque tarif ajouté doit porter sa source et "
                        "sa date.",
        "resource": "Ressource", "quantity": "Quantité", "unit_price": "Prix unitaire mensuel",
        "price": "Prix mensuel", "unknown": "non relevé", "on_use": "à l'usage", "per_gb": "€ par Go",
        "total": "Total estimé :", "per_month": "par mois hors TVA",
        "margin": "± {m:.2f} € : la source arrondit ses tarifs au centime",
        "plus_usage": "En plus, selon l'usage : {items} (non compté dans le total).",
        "without": "Sans : {items}, faute de tarif dans tools/ovh_prices.json.",
        "prices_from": "Tarifs datés du {date}, source : {source}. OVHcloud change ses prix : vérifier sur {page} "
                       "ou relire le catalogue (`python -m tools.ovh_prices --refresh`).",
        "assumes_per-node": "Hypothèse : le tarif horaire d'une base gérée est compté une fois par nœud (le nom du "
                            "plan chez OVH ne dit pas s'il vaut pour un nœud ou pour le cluster).",
        "assumes_snapshot-at-most-the-disk": "Hypothèse haute : un instantané compte la taille du disque du "
                                              "gabarit ; OVH le facture sur sa taille réelle, souvent moindre.",
        "disk_word": "disque", "day": "AAAA-MM-JJ", "mailboxes": "boîtes, file d'attente, comptes",
        "and_more": "et {n} autres : --list les montre",
        "dns_none": "Le DNS n'est pas géré par socle (`dns.provider: none`) : les noms sont à créer à la main.",
        "job_of": "Tâche de sauvegarde du serveur",
        "nothing_to_restore": "Aucune sauvegarde, donc rien à restaurer.",
        "restore_intro": "Par serveur, avec ses volumes et ses bases (`--dry-run` montre le plan sans rien changer ; "
                         "retirez-le pour restaurer).",
    },
    "en": {
        "lang": "en", "title": "Operations document — stack {stack}",
        "generated": "Generated by socle (`python -m tools.dossier --lang en`) from `{file}`: it describes what "
                     "that file deploys, and changes with it. The diagram (Mermaid) is drawn by GitHub and most "
                     "Markdown viewers; in HTML and PDF it stays as text.",
        "context": "Context", "architecture": "Architecture", "servers": "Servers and what runs where",
        "urls": "URLs", "dns": "DNS", "data": "Data and where it lives", "backups": "Backups",
        "restore": "Restore procedures", "monitoring": "Monitoring and alerts", "access": "Access and SSH",
        "updates": "Updates", "maintenance": "Maintenance switch", "cost": "Estimated monthly cost",
        "not_covered": "What this stack does not cover",
        "domain": "Domain", "target": "Target", "region": "Region", "backup_region": "Backup region",
        "target_ovh": "OVHcloud Public Cloud (Debian 12 servers, managed databases, object storage)",
        "target_local": "the local Docker engine (development)",
        "server": "Server", "role": "Role", "flavor": "Flavor", "disk": "Data disk", "runs": "Runs",
        "snapshots": "OVH snapshots", "none": "none", "app": "App", "url": "URL", "state": "State",
        "online": "online", "in_maintenance": "in maintenance",
        "dns_provider": "Provider", "records": "Managed records", "caa": "Certificate authorities (CAA)",
        "what": "What", "where": "Where", "kept": "Kept", "database": "Database", "volume": "Volume",
        "bucket": "Bucket", "cache": "Cache",
        "schedule": "Schedule", "targets": "Targets", "retention": "Retention", "check": "Check",
        "drill": "Restore drill", "watched_by": "Watched by", "dead_man": "a dead-man URL per task",
        "no_dead_man": "no dead-man URL",
        "scenario_a": "A — human error: put a volume or a database back as it was on a day",
        "scenario_b": "B — ransomware: start again from a clean image and the locked copy from before the attack",
        "scenario_c": "C — total loss of a server",
        "no_monitoring": "No monitoring is configured (`socle:monitoring`).",
        "watcher": "Monitoring server", "alerts_to": "Alerts sent to", "thresholds": "Thresholds",
        "alerts": "Alerts", "heartbeat": "heartbeat to an outside URL (a dead monitoring is noticed)",
        "ssh_port": "SSH port", "admin_cidrs": "Admin networks", "admin_keys": "Admin keys",
        "deploy_user": "Deploy user", "ci_key": "CI deploy key", "yes": "yes", "no": "no",
        "updates_body": "Debian security updates installed every day (unattended-upgrades), a reboot when needed "
                        "between 04:00 and 06:30 UTC, never during a backup. Container images are pinned and "
                        "updated through pull requests (Renovate); a new image of an app holding data is deployed "
                        "only after a backup that passed.",
        "reports": "Update reports by e-mail", "maint_body":
            "Visitors see a 503 maintenance page; containers, databases, backups and monitoring keep running.",
        "maint_on": "Turn on", "maint_off": "Turn off", "maint_app": "For one app",
        "cost_intro": "An estimate, not an invoice: the stack's OVHcloud resources, excluding VAT, at the dated "
                      "prices of `tools/ovh_prices.json` (an hourly price counts 730 hours a month).",
        "cost_missing": "socle holds no dated price yet (tools/ovh_prices.json is empty): read the amounts on "
                        "{source} on the day. Every price added must carry its source and its date.",
        "resource": "Resource", "quantity": "Quantity", "unit_price": "Monthly price per unit",
        "price": "Monthly price", "unknown": "not read", "on_use": "on use", "per_gb": "€ per GB",
        "total": "Estimated total:", "per_month": "a month excluding VAT",
        "margin": "± {m:.2f} €: the source rounds its prices to the cent",
        "plus_usage": "On top, depending on use: {items} (not in the total).",
        "without": "Without: {items}, which have no price in tools/ovh_prices.json.",
        "prices_from": "Prices dated {date}, from {source}. OVHcloud changes its prices: check {page} or read "
                       "the catalogue again (`python -m tools.ovh_prices --refresh`).",
        "assumes_per-node": "Assumption: a managed database's hourly price is counted once per node (OVH's plan "
                            "name does not say whether it is per node or per cluster).",
        "assumes_snapshot-at-most-the-disk": "Upper bound: a snapshot counts its flavor's whole disk; OVH bills "
                                              "its real size, often smaller.",
        "disk_word": "disk", "day": "YYYY-MM-DD", "mailboxes": "mailboxes, queue, accounts",
        "and_more": "and {n} more: --list shows them",
        "dns_none": "socle does not manage the DNS (`dns.provider: none`): the names are made by hand.",
        "job_of": "Backup job of server",
        "nothing_to_restore": "No backups, so nothing to restore.",
        "restore_intro": "Per server, with its volumes and databases (`--dry-run` shows the plan and changes nothing; "
                         "drop it to restore).",
    },
}

PRICE_SOURCE = "https://www.ovhcloud.com/fr/public-cloud/prices/"
SHOWN = 3  # restore commands written out per server and kind; --list shows the rest


class ToolMissing(RuntimeError):
    """pandoc or weasyprint is not installed (its name is the message)."""


def inventory(cfg) -> list[tuple[str, int]]:
    """What a monthly bill is made of: (item, quantity), items named as the price table names them."""
    items: dict[str, int] = {}

    def add(item: str, n: int = 1) -> None:
        items[item] = items.get(item, 0) + n

    if cfg.target != "ovh":
        return []
    for srv in cfg.servers.values():
        add(f"instance {srv.flavor}")
        if srv.disk_gb:
            add("block storage GB", srv.disk_gb)
        if srv.auto_backup:  # each kept snapshot is billed as stored
            add(f"instance snapshot of {srv.flavor} (kept)", srv.auto_backup.rotation)
    for name, db in cfg.databases.items():
        if cfg.database_hosting(name) == "managed":
            add(f"database {db.engine} {db.plan} {db.flavor} node", db.nodes)
    if cfg.buckets:
        add("object storage bucket", len(cfg.buckets))
    balanced = cfg.balanced_sets()
    if balanced:  # the private subnet's router a load balancer's public IP needs
        add("gateway s")
    for members in balanced:
        add(f"load balancer {cfg.load_balancing.flavor}")
        add("floating IP")
        add("file storage share (the proxies' certificates)")
    return sorted(items.items())


def coverage(cfg, stack: str, project: str = "socle") -> dict[str, dict[str, list[str]]]:
    """What each server's backup job keeps: its volumes (Docker names) and the databases it dumps
    (CLUSTER/DATABASE): the config's backed_up_volumes and dumping_server, as _backup_jobs uses them."""
    from components.naming import physical_name

    pname = lambda *parts: physical_name(project, stack, *parts)  # noqa: E731
    out: dict[str, dict[str, list[str]]] = {}

    def add(server: str, kind: str, item: str) -> None:
        out.setdefault(server, {"volumes": [], "databases": []})[kind].append(item)

    if not cfg.backup.enabled:
        return {}
    for server, owner, vol, _ in cfg.backed_up_volumes():
        add(server, "volumes", pname(owner, vol))
    for dname, db in cfg.databases.items():
        for logical in db.databases:
            add(cfg.dumping_server(dname), "databases", f"{pname(dname)}/{logical}")
    return out


def _table(headers: list[str], rows: list[list[str]]) -> str:
    esc = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
    return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
                     + ["| " + " | ".join(r) + " |" for r in esc]) + "\n"


def _retention(r) -> str:
    parts = [f"{k} {getattr(r, k)}" for k in ("daily", "weekly", "monthly", "yearly") if getattr(r, k, 0)]
    return ", ".join(parts)


def render(cfg, stack: str, config_file: str, lang: str = "fr") -> str:
    """The document, as Markdown (pure: the config in, the text out)."""
    from tools.plan import mermaid

    t = TEXT[lang]
    yes = lambda b: t["yes"] if b else t["no"]  # noqa: E731
    out: list[str] = [f"# {t['title'].format(stack=stack)}\n", t["generated"].format(stack=stack, file=config_file) + "\n"]

    def section(key: str, body: str) -> None:
        out.append(f"## {SECTIONS.index(key) + 1}. {t[key]}\n\n{body.rstrip()}\n")

    ovh = cfg.ovh
    ctx = [[t["domain"], cfg.domain], [t["target"], t["target_ovh"] if cfg.target == "ovh" else t["target_local"]]]
    if ovh is not None:
        ctx += [[t["region"], ovh.region], [t["backup_region"], ovh.backup_region]]
    section("context", _table(["", ""], ctx))
    section("architecture", "```mermaid\n" + mermaid(SimpleNamespace(exports={}), cfg) + "```\n")

    rows = []
    for sname, srv in cfg.servers.items():
        runs = [a for a, app in cfg.apps.items() if sname in app.hosts()]
        runs += [f"{c} ({t['cache']})" for c in cfg.caches if cfg.host_of("caches", c) == sname]
        runs += [f"{d} ({t['database']})" for d in cfg.databases if cfg.database_hosting(d) == "container"
                 and cfg.host_of("databases", d) == sname]
        if cfg.mail is not None and cfg.mail.server == sname:
            runs.append("mail")
        if cfg.monitoring is not None and cfg.monitoring.server == sname:
            runs.append("Prometheus, Alertmanager")
        snap = f"{srv.auto_backup.cron}, {srv.auto_backup.rotation}" if srv.auto_backup else t["none"]
        rows.append([sname, srv.role, srv.flavor or "", f"{srv.disk_gb} GB" if srv.disk_gb else t["none"],
                     ", ".join(runs) or "—", snap])
    section("servers", _table([t["server"], t["role"], t["flavor"], t["disk"], t["runs"], t["snapshots"]], rows))

    rows = [[a, f"https://{h}", t["in_maintenance"] if (app.maintenance or cfg.maintenance) else t["online"]]
            for a, app in sorted(cfg.apps.items()) for h in app.hostnames()]
    section("urls", _table([t["app"], t["url"], t["state"]], rows) if rows else "—")

    if cfg.dns.provider == "none":
        section("dns", t["dns_none"])
    else:
        names = {h for a in cfg.apps.values() if not a.sites for h in a.hostnames()}
        names |= {f"{r.name} {r.type}" for r in cfg.dns.records}
        names |= {f"{a.sites[0].hostname} … ({len(a.sites)} sites)" if len(a.sites) > 1 else a.sites[0].hostname
                  for a in cfg.apps.values() if a.sites}
        names |= {a.hostname for a in cfg.apps.values() if a.sites and a.hostname}
        if cfg.mail is not None:
            names |= {cfg.mail_host(), "MX", "SPF (TXT)", f"DKIM ({cfg.mail.dkim_selector}._domainkey)", "DMARC (TXT)"}
        dns = [[t["dns_provider"], cfg.dns.provider], [t["records"], ", ".join(sorted(names))],
               [t["caa"], ", ".join(cfg.dns.caa_issuers)]]
        section("dns", _table(["", ""], dns))

    rows = []
    for dname, db in cfg.databases.items():
        where = (f"OVH {db.plan}, {db.nodes} × {db.flavor}" if cfg.database_hosting(dname) == "managed"
                 else f"{t['server']} {cfg.host_of('databases', dname)}")
        rows.append([f"{t['database']} {dname} ({db.engine} {db.version}): {', '.join(db.databases)}", where])
    for aname, app in cfg.apps.items():
        for vname, vol in app.volumes.items():
            if vol.stateful:
                rows.append([f"{t['volume']} {aname}/{vname} ({vol.path})", f"{t['server']} {app.hosts()[0]}"])
    if cfg.mail is not None:
        rows.append([f"{t['volume']} mail ({t['mailboxes']})", f"{t['server']} {cfg.mail.server}"])
    for bname, bucket in cfg.buckets.items():
        lock = f", object lock {bucket.object_lock.mode} {bucket.object_lock.days} d" if bucket.object_lock else ""
        rows.append([f"{t['bucket']} {bname}", f"S3{lock}"])
    for cname, cache in cfg.caches.items():
        if cache.persistent:
            rows.append([f"{t['cache']} {cname} ({cache.engine})", f"{t['server']} {cfg.host_of('caches', cname)}"])
    section("data", _table([t["what"], t["where"]], rows) if rows else "—")

    b = cfg.backup
    covered = coverage(cfg, stack)
    if b.enabled:
        targets = [x for x in [b.targets.bucket and f"{t['bucket']} {b.targets.bucket}",
                               b.targets.server and f"{t['server']} {b.targets.server} (append-only)",
                               b.targets.sftp and f"SFTP {b.targets.sftp.user}@{b.targets.sftp.host}:{b.targets.sftp.port}",
                               b.targets.local_path] if x]
        pings = all([b.ping_url, b.check_ping_url, b.drill_ping_url])
        rows = [[t["schedule"], f"`{b.schedule}` ({cfg.time_zone})"], [t["targets"], ", ".join(targets)],
                [t["retention"], _retention(b.retention)], [t["check"], f"`{b.check_schedule}`"],
                [t["drill"], f"`{b.drill_schedule}`"], [t["watched_by"], t["dead_man"] if pings else t["no_dead_man"]]]
        rows += [[f"{t['database']} {d} (OVH)", f"{db.backup_time} UTC"] for d, db in cfg.databases.items()
                 if cfg.database_hosting(d) == "managed"]
        rows += [[f"{t['job_of']} {srv}", ", ".join([*c["volumes"], *c["databases"]])] for srv, c in covered.items()]
        section("backups", _table([t["what"], ""], rows))
    else:
        section("backups", t["none"])

    if not covered:
        section("restore", t["nothing_to_restore"])
    else:
        blocks = []
        for srv, c in covered.items():
            lines = [f"### {t['server']} {srv}\n", f"{t['scenario_a']}\n", "```sh",
                     f"bash scripts/restore-app.sh {stack} {srv} --list"]
            for kind, flag in (("volumes", "--volume"), ("databases", "--database")):
                lines += [f"bash scripts/restore-app.sh {stack} {srv} {flag} {x} --at {t['day']} --dry-run"
                          for x in c[kind][:SHOWN]]
                if len(c[kind]) > SHOWN:
                    lines.append(f"# … {t['and_more'].format(n=len(c[kind]) - SHOWN)}")
            lines += ["```\n", f"{t['scenario_b']}\n", "```sh",
                      f"bash scripts/restore-ransomware.sh {stack} {srv} --before {t['day']}T00:00:00Z --dry-run", "```\n",
                      f"{t['scenario_c']}\n", "```sh", f"bash scripts/restore-server.sh {stack} {srv} --dry-run", "```\n"]
            blocks.append("\n".join(lines))
        section("restore", t["restore_intro"] + "\n\n" + "\n".join(blocks))

    m = cfg.monitoring
    if m is None:
        section("monitoring", t["no_monitoring"])
    else:
        from components.render import monitoring as mon
        import json as _json

        to = [*(m.email.to if m.email else []), *(["webhook"] if m.webhook_url else [])]
        watched = mon.Watched(nodes={n: "" for n in cfg.servers}, backed_up=tuple(sorted(covered)))
        rules = _json.loads(mon.render_rules(mon.Thresholds(), watched))
        names = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r} - {"Watchdog"}
        if not any(db.engine == "postgresql" and cfg.database_hosting(d) == "managed" for d, db in cfg.databases.items()):
            names.discard("DatabaseUnreachable")  # asked of managed PostgreSQL only
        names = sorted(names)
        rows = [[t["watcher"], m.server], [t["alerts_to"], ", ".join(to)],
                [t["thresholds"], f"{m.latency_ms} ms, {m.availability_percent} %, {t['disk_word']} "
                                  f"{m.disk.warning_percent} / {m.disk.critical_percent} %"],
                [t["alerts"], ", ".join(names)], ["Watchdog", t["heartbeat"] if m.heartbeat_url else t["no"]]]
        if m.email:
            rows.append([t["reports"], m.upgrade_reports])
        section("monitoring", _table(["", ""], rows))

    a = cfg.access
    section("access", _table(["", ""], [
        [t["ssh_port"], str(a.ssh_port)], [t["admin_cidrs"], ", ".join(a.admin_cidrs) or "—"],
        [t["admin_keys"], ", ".join(k.split()[-1] if len(k.split()) > 2 else k.split()[0] for k in a.admin_ssh_keys) or "—"],
        [t["deploy_user"], a.deploy_user], [t["ci_key"], yes(a.ci_ssh_key)]]))
    section("updates", t["updates_body"])
    section("maintenance", "\n".join([
        t["maint_body"] + "\n", "```sh", f"# {t['maint_on']}", f"python -m tools.maintenance on --stack {stack}",
        f"# {t['maint_off']}", f"python -m tools.maintenance off --stack {stack}", f"# {t['maint_app']}",
        f"python -m tools.maintenance on --app APP --stack {stack}", "```"]))

    section("cost", cost_section(inventory(cfg), ovh_prices.load(), t))
    section("not_covered", "\n".join(f"- {x}" for x in not_covered(cfg, lang)))
    return "\n".join(out)


def cost_section(items: list[tuple[str, int]], prices: dict[str, dict], t: dict) -> str:
    """The cost table and what its total leaves out, from an inventory and a price table."""
    est = ovh_prices.estimate(items, prices)
    rows = []
    for item, qty, p in est["rows"]:
        if p is None:
            rows.append([item, str(qty), t["unknown"], t["unknown"]])
        elif p.get("usage"):
            rows.append([item, str(qty), f"{p['monthly']:.2f} {t['per_gb']}", t["on_use"]])
        else:
            rows.append([item, str(qty), f"{p['monthly']:.2f} €", f"{p['monthly'] * qty:.2f} €"])
    body = t["cost_intro"] + "\n\n" + (
        _table([t["resource"], t["quantity"], t["unit_price"], t["price"]], rows) if rows else "—\n")
    if not prices:
        return body + "\n" + t["cost_missing"].format(source=PRICE_SOURCE) + "\n"
    if est["priced"]:
        margin = f" ({t['margin'].format(m=est['margin'])})" if est["margin"] else ""
        body += f"\n**{t['total']} ≈ {est['total']:.2f} € {t['per_month']}**{margin}.\n"
    for assumption in sorted({p["assumes"] for _, _, p in est["rows"] if p and p.get("assumes")}):
        body += "\n" + t[f"assumes_{assumption}"] + "\n"
    if est["usage"]:
        body += "\n" + t["plus_usage"].format(items=", ".join(est["usage"])) + "\n"
    if est["missing"]:
        body += "\n" + t["without"].format(items=", ".join(est["missing"])) + "\n"
    for source, date in est["sources"]:
        what = est["about"].get(source, {}).get(t["lang"], "")
        body += "\n" + t["prices_from"].format(date=date, source=f"{source} ({what})" if what else source,
                                               page=PRICE_SOURCE) + "\n"
    return body


def not_covered(cfg, lang: str) -> list[str]:
    """What this stack leaves out, from its own config; then what socle never does."""
    fr = lang == "fr"
    out = []
    if cfg.monitoring is None:
        out.append("Aucune supervision : personne n'est prévenu d'une panne." if fr else
                   "No monitoring: nobody is told of an outage.")
    if not cfg.backup.enabled:
        out.append("Aucune sauvegarde." if fr else "No backups.")
    if any(db.engine == "mysql" and cfg.database_hosting(d) == "managed" for d, db in cfg.databases.items()):
        out.append("La disponibilité de MySQL managé n'est pas sondée directement (elle se voit par les applications et "
                   "les sauvegardes)." if fr else "Managed MySQL is not probed directly (its apps and backups show it).")
    if cfg.mail is not None:
        out.append("Ni listes de diffusion (Sympa), ni filtre antispam ou antivirus." if fr else
                   "No mailing lists (Sympa), no spam or virus filter.")
    if not cfg.balanced_sets():
        out.append("Un seul serveur par application : sa panne interrompt le service jusqu'à sa reconstruction." if fr
                   else "One server per app: its failure stops the service until it is rebuilt.")
    out.append("IPv4 seulement pour les sondes et le DNS inverse." if fr else "IPv4 only for the probes and reverse DNS.")
    out.append("Les comptes des utilisateurs des applications et leurs données métier (leur contenu est sauvegardé, "
               "pas expliqué)." if fr else "The apps' user accounts and business data (backed up, not explained).")
    return out


def to_file(markdown: str, fmt: str, output: Path, title: str) -> None:
    """HTML or PDF by pandoc (PDF through WeasyPrint)."""
    if fmt == "md":
        output.write_text(markdown)
        return
    pandoc = shutil.which("pandoc")
    if not pandoc or (fmt == "pdf" and not shutil.which("weasyprint")):
        raise ToolMissing("pandoc" if not pandoc else "weasyprint")
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "dossier.md"
        src.write_text(markdown)
        cmd = [pandoc, str(src), "--from", "gfm", "--standalone", "--metadata", f"title={title}", "-o",
               str(output.resolve())]
        if fmt == "pdf":
            cmd[-2:-2] = ["--pdf-engine", "weasyprint"]
        # In the scratch directory: pandoc leaves its html2pdf* files for WeasyPrint in its working directory.
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=d)
        if res.returncode != 0:
            raise RuntimeError(f"pandoc failed: {res.stderr.strip()[-800:]}")


def main(argv: list[str] | None = None) -> int:
    from tools.cli import SIGNALS

    ap = argparse.ArgumentParser(prog="python -m tools.dossier", description=__doc__, epilog=SIGNALS,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stack", help="stack name: reads Pulumi.STACK.yaml")
    ap.add_argument("--config-file", type=Path, help="a stack file of the same form instead")
    ap.add_argument("--lang", choices=("fr", "en"), default="fr", help="language (default: fr)")
    ap.add_argument("--format", choices=("md", "html", "pdf"), default="md", help="output format (default: md)")
    ap.add_argument("--output", type=Path, help="file to write (default: dossier-STACK.LANG.FORMAT; md: standard output)")
    args = ap.parse_args(argv)

    from components.config import ConfigError, decode
    from components.profiles import load_stack
    from components.stack_file import StackFileError, read
    from tools.cli import config_problems
    from tools.harness import stack_config

    path = args.config_file or ROOT / f"Pulumi.{args.stack}.yaml"
    if not path.exists():
        print(f"dossier: no stack file {path}; pass --config-file", file=sys.stderr)
        return 2
    stack_file = None
    try:
        stack_file = read(path)
        config, secret_keys = stack_config(path)
        cfg = load_stack(args.stack, {k.split(":", 1)[1]: decode(v) for k, v in config.items() if k.startswith("socle:")},
                         {k.split(":", 1)[1] for k in secret_keys})[0]
        text = render(cfg, args.stack, str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path), args.lang)
    except (StackFileError, ConfigError) as err:
        print(config_problems(err, stack_file), file=sys.stderr)
        return 2
    except ovh_prices.PriceError as err:
        print(f"dossier: {err}", file=sys.stderr)
        return 2
    if args.format == "md" and args.output is None:
        sys.stdout.write(text)
        return 0
    if args.format != "md" and args.output is not None and args.output.suffix.lstrip(".") != args.format:
        print(f"dossier: --output {args.output} does not end in .{args.format}", file=sys.stderr)
        return 2
    output = args.output or Path(f"dossier-{args.stack}.{args.lang}.{args.format}")
    try:
        to_file(text, args.format, output, TEXT[args.lang]["title"].format(stack=args.stack))
    except ToolMissing as err:
        print(f"dossier: {err} is not installed (Debian: apt-get install -y pandoc weasyprint); "
              f"--format md needs neither", file=sys.stderr)
        return 3
    except (RuntimeError, OSError) as err:
        print(f"dossier: {err}", file=sys.stderr)
        return 2
    print(f"dossier: wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
