#!/usr/bin/env bash
# Make sure the OS packages the tests talk to are installed: mosquitto (broker),
# mosquitto-clients (mosquitto_pub/_sub/_passwd), chromium (dashboard browser tests).
set -euo pipefail
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
for tool in mosquitto_pub mosquitto_sub mosquitto_passwd; do
  command -v "$tool" >/dev/null 2>&1 || { missing+=(mosquitto-clients); break; }
done
[ -x /usr/bin/chromium ] || missing+=(chromium)
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
