#!/usr/bin/env bash
# Make sure the OS packages the tests talk to are installed: mosquitto (broker),
# mosquitto-clients (mosquitto_pub/_sub/_passwd), chromium (dashboard browser tests), and
# the shared libraries and a font that Qt (PySide6, the inbox's tests) loads.
set -euo pipefail
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
for tool in mosquitto_pub mosquitto_sub mosquitto_passwd; do
  command -v "$tool" >/dev/null 2>&1 || { missing+=(mosquitto-clients); break; }
done
[ -x /usr/bin/chromium ] || missing+=(chromium)
libs=$(ldconfig -p)
for lib in libEGL.so.1:libegl1 libGL.so.1:libgl1 libxkbcommon.so.0:libxkbcommon0 \
  libfontconfig.so.1:libfontconfig1 libdbus-1.so.3:libdbus-1-3; do
  grep -q "${lib%%:*} " <<<"$libs" || missing+=("${lib##*:}")
done
[ -d /usr/share/fonts/truetype/dejavu ] || missing+=(fonts-dejavu-core)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing missing packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
  echo "error: the tests need ${missing[*]}; install them (e.g. apt-get install mosquitto mosquitto-clients chromium)" >&2
  exit 1
fi
