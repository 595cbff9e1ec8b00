#!/usr/bin/env bash
# Builds the Debian 12 test image the VM tests boot (tests/test_vm.py): a debootstrapped root file
# system with the cloud kernel, systemd, cloud-init, openssh-server, sudo and the packages socle's
# user data installs (preinstalled: the VMs have no package mirror), as a raw ext4 image made with
# `mkfs.ext4 -d`, plus the kernel and initrd that qemu starts directly (no bootloader).
#
#   bash tests/vm/build-image.sh OUTDIR PACKAGE...
#
# OUTDIR keeps a debootstrap package cache and the image; an image built from the same script and
# package list is reused (OUTDIR/stamp). Needs root, debootstrap and a Debian mirror
# (SOCLE_VM_MIRROR, default http://deb.debian.org/debian).
#
# Mirror mode (SOCLE_VM_PROXY=http://10.0.2.100:3142, given no PACKAGE): the image holds only what
# a cloud image has, and its apt goes through that proxy, which the VM reaches through a guestfwd
# to a package proxy on the host (apt-cacher-ng): the user data installs its packages at first
# boot from Debian's real, signed archive, as on OVH.
#
# Exit status: 0 built (or reused), 2 bad arguments or not root, other: the failing step's.
set -euo pipefail
case " $* " in *" -h "*|*" --help "*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR PACKAGE...  (see --help)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "build-image: debootstrap needs root" >&2; exit 2; }
OUT=$1
shift
MIRROR=${SOCLE_VM_MIRROR:-http://deb.debian.org/debian}
# What a cloud image has, plus what the tests probe with. python3-cffi-backend: a virtual
# dependency of python3-cryptography (cloud-init) that debootstrap does not resolve by itself.
BASE=(linux-image-cloud-amd64 systemd-sysv udev dbus cloud-init openssh-server sudo ifupdown isc-dhcp-client
      iproute2 netbase e2fsprogs util-linux python3 python3-cffi-backend ca-certificates lynis)
PKGS=$(printf '%s\n' "${BASE[@]}" "$@" | sort -u | paste -sd, -)
PROXY=${SOCLE_VM_PROXY:-}
STAMP=$( (cat "$0"; echo "$PKGS $MIRROR $PROXY") | sha256sum | cut -c1-16)
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$STAMP" ] && [ -f "$OUT/root.img" ]; then
  echo "build-image: reusing $OUT/root.img ($STAMP)"
  exit 0
fi
mkdir -p "$OUT/cache"
rm -rf "$OUT/rootfs" "$OUT/root.img" "$OUT/stamp"
start=$(date +%s)
debootstrap --variant=minbase --cache-dir="$OUT/cache" --include="$PKGS" bookworm "$OUT/rootfs" "$MIRROR" \
  > "$OUT/debootstrap.log" 2>&1 || { tail -20 "$OUT/debootstrap.log" >&2; exit 1; }
R=$OUT/rootfs
echo "LABEL=root / ext4 defaults,errors=remount-ro 0 1" > "$R/etc/fstab"
# NoCloud only: no probing of network metadata services that the user-mode network cannot reach.
printf 'datasource_list: [NoCloud, None]\n' > "$R/etc/cloud/cloud.cfg.d/90-socle-test.cfg"
# The archive, its updates and security updates, as in Debian's cloud images (unattended-upgrades
# follows bookworm-security).
rm -f "$R/etc/apt/sources.list"
cat > "$R/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
if [ -n "$PROXY" ]; then
  printf 'Acquire::http::Proxy "%s";\n' "$PROXY" > "$R/etc/apt/apt.conf.d/99socle-test"
else
  # No mirror in the VM: fail apt's fetches at once rather than after its default retries.
  printf 'Acquire::Retries "0";\nAcquire::http::Timeout "5";\n' > "$R/etc/apt/apt.conf.d/99socle-test"
fi
: > "$R/etc/machine-id"
rm -f "$R"/etc/ssh/ssh_host_*   # each VM makes its own, as on first boot at OVH
cp "$R"/boot/vmlinuz-* "$OUT/vmlinuz"
cp "$R"/boot/initrd.img-* "$OUT/initrd.img"
mkfs.ext4 -q -F -L root -d "$R" "$OUT/root.img" 4G
rm -rf "$R"
echo "$STAMP" > "$OUT/stamp"
echo "build-image: built $OUT/root.img in $(( $(date +%s) - start )) s"
