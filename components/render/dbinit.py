"""Init script of a container database: one owner user per logical database.

Passwords never appear in the script: it reads them from the container's environment
(SOCLE_PASSWORD_<DB>), which Pulumi fills from secret outputs.
"""

from __future__ import annotations


def password_var(database: str) -> str:
    return "SOCLE_PASSWORD_" + database.upper().replace("-", "_")


def render_db_init(engine: str, databases: list[str]) -> str:
    lines = ["#!/bin/sh", "# Managed by socle: creates each logical database and its owner.", "set -eu", ""]
    for db in databases:
        var = password_var(db)
        if engine == "postgresql":
            lines += [
                f'psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \\',
                f"  --set=pw=\"${var}\" <<'SQL'",
                f"CREATE ROLE \"{db}\" LOGIN PASSWORD :'pw';",
                f"CREATE DATABASE \"{db}\" OWNER \"{db}\";",
                f"REVOKE ALL ON DATABASE \"{db}\" FROM PUBLIC;",
                "SQL",
            ]
        elif engine == "mysql":
            lines += [
                f'mariadb --user=root --password="$MARIADB_ROOT_PASSWORD" <<SQL',
                f"CREATE DATABASE IF NOT EXISTS \\`{db}\\`;",
                f"CREATE USER IF NOT EXISTS '{db}'@'%' IDENTIFIED BY '${{{var}}}';",
                f"GRANT ALL PRIVILEGES ON \\`{db}\\`.* TO '{db}'@'%';",
                "SQL",
            ]
        else:
            raise ValueError(f"unknown engine {engine!r}")
    return "\n".join(lines) + "\n"
