#!/usr/bin/env bash
# System packages for the ASR demo: the text-to-speech engines that build the
# synthetic corpus (festival with its ked voice only for the demo's
# --demo_voice_set recorded; its Italian, Czech and Finnish voices only for
# --demo_voice_set accented), and chromium for the browser test of nemo-serve's page. Runs apt-get (as root, or through sudo when available).
set -euo pipefail
accented="festvox-itapc16k festvox-italp16k festvox-czech-dita festvox-czech-krb festvox-czech-machac festvox-czech-ph festvox-suopuhe-mv"
packages="espeak-ng flite festival festvox-kdlpc16k $accented chromium"
missing=""
for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -z "$missing" ]; then echo "system packages present:$packages"; exit 0; fi
SUDO=""; if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null || true
$SUDO apt-get install -y -q $missing
