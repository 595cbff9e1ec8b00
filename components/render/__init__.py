"""Pure renderers: config in, file text out. No Pulumi import, so each is tested by the real tool
that will consume its output (cloud-init schema, caddy validate, sshd -t, shellcheck)."""
