#!/usr/bin/env bash
# Install the Debian packages Tongdao needs (idempotent). Runs as root on Debian.
# Nothing is installed when every package is already present.
set -euo pipefail

PACKAGES=(
  # the virtualenv make creates (Debian splits venv out of python3)
  python3-venv
  # data plane
  wireguard-go wireguard-tools nftables iproute2 iputils-ping iperf3 procps
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
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-system: missing Debian packages: ${missing[*]}" >&2
  echo "install-system: run as root (or install them yourself) and try again" >&2
  exit 1
fi

echo "install-system: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists when they are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages' -mmin -1440 2>/dev/null | head -1)" ]; then
  apt-get update -q
fi
apt-get install -y -q --no-install-recommends "${missing[@]}"
# Debian starts a default cluster when postgresql is installed; Tongdao's tests run their own.
