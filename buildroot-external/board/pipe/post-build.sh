#!/bin/sh
# pipe's post-build step. The defconfigs run it after the board's own script
# (BR2_ROOTFS_POST_BUILD_SCRIPT lists both); Buildroot passes TARGET_DIR first
# and exports BR2_CONFIG.
set -eu

target_dir="$1"

fail() {
	echo "pipe post-build: $*" >&2
	exit 1
}

# What pipe needs on the image: the binary, its default config (from the
# overlay) and the service for the init system in use.
[ -x "$target_dir/usr/bin/pipe" ] || fail "/usr/bin/pipe is missing"
[ -f "$target_dir/etc/pipe/pipe.toml" ] || fail "/etc/pipe/pipe.toml is missing"
if grep -q '^BR2_INIT_SYSTEMD=y' "$BR2_CONFIG"; then
	[ -f "$target_dir/usr/lib/systemd/system/pipe.service" ] ||
		fail "pipe.service is missing"
	where="journalctl -u pipe"
else
	[ -x "$target_dir/etc/init.d/S99pipe" ] || fail "S99pipe is missing"
	where="cat /var/log/pipe.log"
fi

# Which defconfig made this image, for bug reports and `pipe doctor`.
defconfig="$(sed -n 's/^BR2_DEFCONFIG="\(.*\)"$/\1/p' "$BR2_CONFIG")"
{
	echo "IMAGE=pipe"
	echo "DEFCONFIG=${defconfig##*/}"
} >"$target_dir/etc/pipe/image-release"

# The login prompt says where the first boot's claim link is.
cat >"$target_dir/etc/issue" <<ISSUE
pipe camera (\\n, \\l)
  The claim link and its QR code: $where
  Viewer: http://<this camera's address>:8080/  Local page: http://127.0.0.1:8080/local

ISSUE
