"""Backup benchmark: socle's restic job against the nightly "dump + tar.gz + copy" script.

    python -m tools.bench_backup [--nights 30] [--size-mb 200] [--workdir DIR]

A dataset of about --size-mb (half a database dump in SQL text, half a folder of uploads: text
documents and incompressible binaries) changes by about 1 % each night the way a web app's data
does: new rows appended and recent rows updated in the dump, new uploads, a few edited files.
Each night both approaches back up the same data:

- socle: backup/socle_backup.py run (restic snapshot with --time, then forget --prune with a
  retention that keeps every night, so both keep the same 30-night history);
- tar.gz: `tar czf` of the dump and the folder, then a copy into the "remote" directory.

Both targets are local directories on the same disk, so the network is out of the comparison.
Printed: total repository size after the last night, median nightly time, time to restore the
last night. Needs restic and tar; run it on an idle machine.

Exit status: 0 measured, 1 a tool is missing or a step failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "backup" / "socle_backup.py"
WORDS = ("socle nextcloud facture adhérent réunion budget association serveur sauvegarde école "
         "commande client livraison pizza projet rapport compte rendu planning bénévole").split()


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Dataset:
    def __init__(self, root: Path, size_mb: int, rng: random.Random):
        self.root, self.rng = root, rng
        self.dump = root / "dumps" / "app.sql"
        self.files = root / "uploads"
        self.dump.parent.mkdir(parents=True)
        self.files.mkdir()
        self.rows: list[str] = []
        self.next_id = 1
        while len(self.rows) * 120 < size_mb * 1024 * 1024 // 2:
            self.rows.append(self._row())
        self.n_files = 0
        target = size_mb * 1024 * 1024 // 2
        while du(self.files) < target:
            self._new_file()
        self._write_dump()

    def _row(self) -> str:
        i = self.next_id
        self.next_id += 1
        text = " ".join(self.rng.choice(WORDS) for _ in range(8))
        return f"{i}\tclient {i}\t{text}\t{self.rng.randint(0, 99999) / 100}\t2026-{self.rng.randint(1, 12):02d}-01\n"

    def _new_file(self) -> None:
        self.n_files += 1
        d = self.files / f"{self.n_files % 20:02d}"
        d.mkdir(exist_ok=True)
        if self.n_files % 2:
            body = self.rng.randbytes(self.rng.randint(100_000, 600_000))  # photos, PDFs: incompressible
            (d / f"scan-{self.n_files}.jpg").write_bytes(body)
        else:
            words = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(10_000, 60_000)))
            (d / f"doc-{self.n_files}.txt").write_text(words)

    def _write_dump(self) -> None:
        with open(self.dump, "w") as f:
            f.write("-- PostgreSQL database dump\nCOPY public.customers (id, name, note, amount, day) FROM stdin;\n")
            f.writelines(self.rows)
            f.write("\\.\n-- PostgreSQL database dump complete\n")

    def night(self) -> None:
        """About 1 % of the data changes: rows appended and recent rows updated, new uploads."""
        n = len(self.rows)
        for _ in range(n // 150):
            self.rows.append(self._row())
        recent = max(1, n // 20)
        for _ in range(n // 300):
            i = n - 1 - self.rng.randrange(recent)
            self.rows[i] = self.rows[i].split("\t", 1)[0] + "\t" + self._row().split("\t", 1)[1]
        self._write_dump()
        budget = du(self.files) // 200
        while budget > 0:
            before = du(self.files)
            self._new_file()
            budget -= du(self.files) - before
        docs = sorted(self.files.rglob("doc-*.txt"))
        for p in self.rng.sample(docs, max(1, len(docs) // 200)):
            p.write_text(p.read_text() + " modifié " + " ".join(self.rng.choice(WORDS) for _ in range(200)))


def timed(cmd: list[str], **kw) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nights", type=int, default=30)
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    for tool in ("restic", "tar"):
        if not shutil.which(tool):
            sys.exit(f"bench_backup: {tool} is not installed (apt-get install {tool})")
    work = Path(tempfile.mkdtemp(prefix="socle-bench-", dir=args.workdir))
    try:
        run(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, args) -> None:
    rng = random.Random(args.seed)
    print(f"generating a {args.size_mb} MB dataset …", file=sys.stderr)
    data = Dataset(work / "data", args.size_mb, rng)
    size0 = du(data.root)
    repo, remote = work / "restic-repo", work / "tar-remote"
    remote.mkdir()
    manifest = {"version": 1, "host": "web", "workDir": str(work / "runner"),
                "volumes": [{"name": "data", "path": str(data.root), "exclude": []}], "databases": [],
                "targets": [{"name": "local", "kind": "local", "repository": str(repo)}],
                "retention": {"daily": args.nights + 1}}
    (work / "backup.json").write_text(json.dumps(manifest))
    (work / "backup.env").write_text("RESTIC_PASSWORD='bench-password'\n")
    env = {**os.environ, "RESTIC_CACHE_DIR": str(work / "cache")}
    # The repository is created once, at install (the nightly run never creates one): not timed.
    subprocess.run([sys.executable, str(RUNNER), "--manifest", str(work / "backup.json"), "--env-file",
                    str(work / "backup.env"), "init"], check=True, stdout=subprocess.DEVNULL, env=env)
    socle_t, tar_t = [], []
    for night in range(args.nights):
        if night:
            data.night()
        when = f"2026-10-{night + 1:02d} 03:00:00"
        socle_t.append(timed([sys.executable, str(RUNNER), "--manifest", str(work / "backup.json"),
                              "--env-file", str(work / "backup.env"), "run", "--time", when], env=env))
        t = time.perf_counter()
        archive = work / f"night-{night:02d}.tar.gz"
        subprocess.run(["tar", "czf", str(archive), "-C", str(data.root), "."], check=True)
        shutil.copy2(archive, remote / archive.name)
        archive.unlink()
        tar_t.append(time.perf_counter() - t)
        print(f"night {night + 1:2d}: socle {socle_t[-1]:5.2f} s   tar.gz {tar_t[-1]:5.2f} s", file=sys.stderr)

    restore_socle = work / "restore-socle"
    t = time.perf_counter()
    subprocess.run(["restic", "-r", str(repo), "restore", "latest", "--target", str(restore_socle)], check=True,
                   env={**env, "RESTIC_PASSWORD": "bench-password"}, stdout=subprocess.DEVNULL)
    r_socle = time.perf_counter() - t
    restore_tar = work / "restore-tar"
    restore_tar.mkdir()
    last = sorted(remote.iterdir())[-1]
    t = time.perf_counter()
    subprocess.run(["tar", "xzf", str(last), "-C", str(restore_tar)], check=True)
    r_tar = time.perf_counter() - t
    same = subprocess.run(["diff", "-r", "-q", str(restore_socle / str(data.root).lstrip("/")), str(restore_tar)],
                          capture_output=True).returncode == 0

    s_size, t_size = du(repo), du(remote)
    s_med, t_med = statistics.median(socle_t[1:]), statistics.median(tar_t[1:])
    mb = 1024 * 1024
    print(f"\n{args.nights} nights, dataset {size0 / mb:.0f} MB growing to {du(data.root) / mb:.0f} MB, "
          f"~1 % changed per night, {os.cpu_count()} cores")
    print(f"{'':32}{'socle (restic)':>16}{'dump + tar.gz':>16}{'socle / tar':>13}")
    print(f"{'repository size after last night':32}{s_size / mb:>13.0f} MB{t_size / mb:>13.0f} MB{s_size / t_size:>13.3f}")
    print(f"{'median nightly run (nights 2+)':32}{s_med:>14.2f} s{t_med:>14.2f} s{s_med / t_med:>13.3f}")
    print(f"{'first night':32}{socle_t[0]:>14.2f} s{tar_t[0]:>14.2f} s{socle_t[0] / tar_t[0]:>13.3f}")
    print(f"{'restore of the last night':32}{r_socle:>14.2f} s{r_tar:>14.2f} s{r_socle / r_tar:>13.3f}")
    print(f"restored trees identical: {'yes' if same else 'NO'}")
    print(f"targets: storage <= 0.100 {'met' if s_size / t_size <= 0.1 else 'NOT met'}; "
          f"nightly time <= 0.333 {'met' if s_med / t_med <= 1 / 3 else 'NOT met'}")


if __name__ == "__main__":
    main()
