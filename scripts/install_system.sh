#!/usr/bin/env bash
# Installs the Debian packages lkpool runs on, only when one is missing.
set -eu
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
command -v pulseaudio >/dev/null 2>&1 || need+=(pulseaudio)
command -v parec >/dev/null 2>&1 || need+=(pulseaudio-utils)
# the sandbox of each instance: namespaces (bubblewrap) and their network (slirp4netns;
# pasta where the server is not root)
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v slirp4netns >/dev/null 2>&1 || need+=(slirp4netns)
command -v pasta >/dev/null 2>&1 || need+=(passt)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)  # the cluster's shared state
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" fonts-liberation >/dev/null
