#!/usr/bin/env bash
# Install the Debian packages Tongdao needs (idempotent). Runs as root on Debian.
# Nothing is installed when every package is already present (and the engine is new enough).
set -euo pipefail

# The data plane's engine: wireguard-go with TUN offloads (TCP GSO/GRO, 0.0.20230223) and UDP
# GSO/GRO (0.0.20231211): about five times the throughput of bookworm's own 0.0.20220316
# (README, "The engine: wireguard-go from bookworm-backports").
ENGINE_MIN=0.0.20231211

PACKAGES=(
  # the virtualenv make creates (Debian splits venv out of python3)
  python3-venv
  # data plane
  wireguard-tools nftables iproute2 iputils-ping iperf3 procps
  # the offload flags of the engine's TUN devices (the namespace tests read them back)
  ethtool
  # store
  postgresql postgresql-client
  # web console tests
  chromium fonts-liberation
  # CJK glyphs for the console's 简体中文 text in the headless browser (no missing-glyph boxes)
  fonts-noto-cjk
  # the CJK font embedded in invoice PDFs (TrueType outlines: text extracts back cleanly)
  fonts-wqy-microhei
  # an independent QR decoder: the browser tests read the device-config QR back with zbarimg
  zbar-tools
  # the kernel WireGuard engine's VM test (tongdao.testing.vm): an emulator, a static shell for
  # its initramfs, depmod/modprobe for the guest kernel's modules
  qemu-system-x86 busybox-static kmod
)

installed_version() {  # the installed version of package $1, or nothing
  dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null |
    awk '$1 == "install" && $2 == "ok" && $3 == "installed" {print $4}'
}

engine_ok() {
  local version
  version=$(installed_version wireguard-go)
  [ -n "$version" ] && dpkg --compare-versions "$version" ge "$ENGINE_MIN"
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  if [ -z "$(installed_version "$pkg")" ]; then
    missing+=("$pkg")
  fi
done

# The guest kernel of the kernel engine's VM test: Debian's own kernel (it has the wireguard
# module), unpacked under VM_KERNEL_DIR (never installed on this host).
VM_KERNEL_DIR=/var/cache/tongdao/vm-kernel

vm_kernel_ok() {
  # A complete unpacked kernel, as tongdao.testing.vm.find_kernel looks for it (a `.part`
  # left by an interrupted unpack does not count).
  local d
  for d in "$VM_KERNEL_DIR"/*/; do
    d=${d%/}
    case $d in *.part) continue ;; esac
    [ -f "$d/boot/vmlinuz-${d##*/}" ] && [ -f "$d/lib/modules/${d##*/}/modules.dep" ] && return 0
  done
  return 1
}

vm_kernel() {
  local meta image tmp release
  # linux-image-amd64 depends on this release's current kernel image package
  meta=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" {print $2; exit}')
  image=${meta:-}
  if [ -z "$image" ]; then
    echo "install-system: no linux-image-amd64 in the package lists (for the VM test)" >&2
    exit 1
  fi
  tmp=$(mktemp -d)
  chown _apt "$tmp" 2>/dev/null || chmod 755 "$tmp"  # apt-get download runs as _apt
  if ! (cd "$tmp" && apt-get download -q "$image"); then
    rm -rf "$tmp"
    echo "install-system: could not download $image (for the VM test)" >&2
    exit 1
  fi
  release=${image#linux-image-}
  mkdir -p "$VM_KERNEL_DIR"
  rm -rf "$VM_KERNEL_DIR/$release.part"
  dpkg-deb -x "$tmp"/"$image"_*.deb "$VM_KERNEL_DIR/$release.part"
  depmod -b "$VM_KERNEL_DIR/$release.part" "$release"
  rm -rf "$VM_KERNEL_DIR/$release"
  mv "$VM_KERNEL_DIR/$release.part" "$VM_KERNEL_DIR/$release"
  rm -rf "$tmp"
  echo "install-system: VM test kernel $release in $VM_KERNEL_DIR/$release"
}

if [ "${#missing[@]}" -eq 0 ] && engine_ok && vm_kernel_ok; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  engine_ok || missing+=("wireguard-go (>= $ENGINE_MIN)")
  vm_kernel_ok || missing+=("the VM test's kernel (linux-image-amd64, unpacked in $VM_KERNEL_DIR)")
  echo "install-system: missing Debian packages: ${missing[*]}" >&2
  echo "install-system: run as root (or install them yourself) and try again" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists when they are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  apt-get update -q
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-system: installing ${missing[*]}"
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! engine_ok; then
  # The distribution's own wireguard-go when it is new enough (trixie and later), else the
  # backports of this release (bookworm: bookworm-backports, added here when missing).
  candidate=$(apt-cache policy wireguard-go | awk '$1 == "Candidate:" {print $2}')
  if [ -n "$candidate" ] && [ "$candidate" != "(none)" ] &&
      dpkg --compare-versions "$candidate" ge "$ENGINE_MIN"; then
    echo "install-system: installing wireguard-go $candidate"
    apt-get install -y -q --no-install-recommends wireguard-go
  else
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    if [ -z "$codename" ]; then
      echo "install-system: cannot tell this Debian release (no VERSION_CODENAME in /etc/os-release)" >&2
      exit 1
    fi
    backports="$codename-backports"
    if ! grep -rqsE "^[^#]*[[:space:]]$backports([[:space:]]|\$)" \
        /etc/apt/sources.list /etc/apt/sources.list.d/; then
      echo "install-system: adding $backports to /etc/apt/sources.list.d/$backports.sources"
      cat > "/etc/apt/sources.list.d/$backports.sources" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: $backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    fi
    apt-get update -q
    echo "install-system: installing wireguard-go from $backports"
    # Backports are never chosen on their own (priority 100): ask for it by name. Once
    # installed, its updates come from backports too.
    apt-get install -y -q --no-install-recommends -t "$backports" wireguard-go
  fi
  if ! engine_ok; then
    have=$(installed_version wireguard-go)
    echo "install-system: wireguard-go ${have:-(none)} is installed, but" \
      "Tongdao needs $ENGINE_MIN or later (offloads; README, \"The engine: wireguard-go" \
      "from bookworm-backports\")." \
      "Install a newer build (Debian bookworm: from bookworm-backports) and try again." >&2
    exit 1
  fi
  echo "install-system: wireguard-go $(installed_version wireguard-go)"
fi
if ! vm_kernel_ok; then
  vm_kernel
fi
# Debian starts a default cluster when postgresql is installed; Tongdao's tests run their own.
