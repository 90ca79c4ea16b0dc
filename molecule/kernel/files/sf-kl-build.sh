#!/bin/sh
# Build (once) what the kernel lab boots: Debian's own kernel, a tiny
# initramfs that mounts the root image, and an ext4 root image made from a
# debootstrapped rootfs. Everything lands in SF_KL_CACHE; a stamp over the
# inputs (package list, kernel package, this script) decides whether the
# cached artefacts are still good, so a second run does nothing.
set -eu

CACHE=${SF_KL_CACHE:-/var/cache/swarmfabric/kernel-lab}
BASE=${SF_KL_BASE:-/var/cache/swarmfabric/rootfs-base}
PACKAGES="python3 openssh-server iproute2 nftables iptables ipvsadm ipset conntrack
tcpdump kmod busybox-static iputils-ping procps sudo"
# The login Ansible uses: a cloud VM's kind (admin@, ubuntu@), root only through sudo.
LAB_USER=sf
# Modules the initramfs loads to reach the root image and the seed share.
INITRD_MODULES="virtio_pci virtio_blk crc32c_generic ext4 9pnet_virtio 9p"
# Module trees no lab host needs; dropping them keeps the image small.
PRUNE="drivers/gpu drivers/media drivers/infiniband drivers/staging drivers/scsi
drivers/usb drivers/iio drivers/hid drivers/input drivers/bluetooth drivers/isdn
drivers/mtd drivers/net/wireless drivers/net/ethernet drivers/net/can drivers/net/usb
drivers/platform drivers/hwmon drivers/mfd drivers/misc drivers/nfc drivers/thunderbolt
drivers/video drivers/md drivers/ata drivers/target drivers/edac drivers/leds drivers/mmc
drivers/nvme drivers/spi drivers/i2c drivers/w1 drivers/watchdog drivers/firewire drivers/pci
drivers/atm drivers/pcmcia drivers/power drivers/rtc drivers/regulator drivers/pinctrl drivers/gpio
sound fs/btrfs fs/xfs fs/ocfs2 fs/nfs fs/nfsd fs/cifs fs/smb fs/f2fs fs/gfs2 fs/ceph fs/bcachefs
net/wireless net/mac80211 net/bluetooth"

need() { command -v "$1" >/dev/null 2>&1; }
for tool in debootstrap mkfs.ext4 cpio depmod dpkg-deb; do
    need "$tool" || { apt-get update -qq && apt-get install -y -qq debootstrap e2fsprogs cpio kmod busybox-static; break; }
done

KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-6\.1\.0-[0-9]*-amd64\)$/\1/p' | head -n1)
[ -n "$KPKG" ] || { apt-get update -qq; KPKG=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-6\.1\.0-[0-9]*-amd64\)$/\1/p' | head -n1); }
[ -n "$KPKG" ] || { echo "Cannot build the kernel lab: no linux-image-6.1.0-*-amd64 package known to apt" >&2; exit 1; }
KVER=${KPKG#linux-image-}

STAMP=$( { echo "$PACKAGES $LAB_USER $INITRD_MODULES $PRUNE $KPKG"; cat "$0"; } | sha256sum | cut -c1-16)
if [ "$(cat "$CACHE/STAMP" 2>/dev/null)" = "$STAMP" ] && [ -f "$CACHE/vmlinuz" ] && [ -f "$CACHE/initrd.gz" ] && [ -f "$CACHE/root.img" ]; then
    echo "kernel lab cache up to date ($STAMP, $KVER)"
    exit 0
fi

echo "building kernel lab ($STAMP, $KVER) in $CACHE"
mkdir -p "$CACHE"
WORK="$CACHE/build.$$"
ROOT="$WORK/rootfs"
trap 'umount "$ROOT/proc" 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK"

if [ -d "$BASE/usr/bin" ]; then
    cp -a "$BASE" "$ROOT"
else
    debootstrap --variant=minbase bookworm "$ROOT" http://deb.debian.org/debian
fi

# Packages, installed inside the rootfs; no service may start while we do it.
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
mount -t proc proc "$ROOT/proc"
chroot "$ROOT" apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive chroot "$ROOT" apt-get install -y -qq --no-install-recommends $PACKAGES
chroot "$ROOT" apt-get clean
# Password '*': none to log in with, but not locked ('!'), which sshd without PAM refuses even a key.
chroot "$ROOT" useradd --create-home --shell /bin/sh --user-group --password '*' "$LAB_USER"
printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$LAB_USER" > "$ROOT/etc/sudoers.d/$LAB_USER"
chmod 0440 "$ROOT/etc/sudoers.d/$LAB_USER"
umount "$ROOT/proc"
rm -rf "$ROOT/usr/sbin/policy-rc.d" "$ROOT/etc/ssh/ssh_host_"* "$ROOT/var/lib/apt/lists/"* \
    "$ROOT/usr/share/doc" "$ROOT/usr/share/man" "$ROOT/usr/share/locale"

# Debian's kernel and modules, unpacked (no initramfs-tools, no hooks).
(cd "$WORK" && apt-get download -qq "$KPKG")
# Unpacked aside: extracting over the rootfs would replace the merged-/usr
# /lib symlink with a directory.
dpkg-deb -x "$WORK/${KPKG}"_*.deb "$WORK/kernel"
mkdir -p "$ROOT/usr/lib/modules"
mv "$WORK/kernel/lib/modules/$KVER" "$ROOT/usr/lib/modules/$KVER"
for tree in $PRUNE; do rm -rf "$ROOT/lib/modules/$KVER/kernel/$tree"; done
depmod -b "$ROOT" "$KVER"
mv "$WORK/kernel/boot/vmlinuz-$KVER" "$WORK/vmlinuz"

# The initramfs: busybox, the modules above in dependency order, /init.
INITRD="$WORK/initrd"
mkdir -p "$INITRD/bin" "$INITRD/lib/modules" "$INITRD/proc" "$INITRD/sys" "$INITRD/dev" "$INITRD/newroot"
cp "$ROOT/bin/busybox" "$INITRD/bin/busybox"
: > "$INITRD/modules"
for mod in $(for m in $INITRD_MODULES; do modprobe -d "$ROOT" -S "$KVER" --show-depends "$m"; done | awk '$1 == "insmod" {print $2}'); do
    name=$(basename "$mod")
    grep -qx "$name" "$INITRD/modules" && continue
    cp "$mod" "$INITRD/lib/modules/$name"
    echo "$name" >> "$INITRD/modules"
done
cat > "$INITRD/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do insmod "/lib/modules/$m"; done < /modules
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mount -t ext4 /dev/vda /newroot || { echo "sf-kl: cannot mount the root image"; exec sh; }
mount -t tmpfs -o mode=0755 run /newroot/run
mkdir -p /newroot/run/sf-kl-seed
mount -t 9p -o trans=virtio,version=9p2000.L,ro sfseed /newroot/run/sf-kl-seed || { echo "sf-kl: no seed share"; exec sh; }
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/sh /run/sf-kl-seed/sf-kl-init
INIT
chmod 0755 "$INITRD/init"
(cd "$INITRD" && find . | cpio -o -H newc --quiet | gzip -1) > "$WORK/initrd.gz"

# The root image: ext4 straight from the directory, sparse.
SIZE_MB=$(( $(du -sm "$ROOT" | cut -f1) + 256 ))
mkfs.ext4 -q -F -L sf-kl-root -d "$ROOT" "$WORK/root.img" "${SIZE_MB}M"

mv "$WORK/vmlinuz" "$WORK/initrd.gz" "$WORK/root.img" "$CACHE/"
echo "$KVER" > "$CACHE/KVER"
echo "$STAMP" > "$CACHE/STAMP"
echo "kernel lab built: $CACHE ($KVER)"
