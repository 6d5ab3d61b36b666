#!/usr/bin/env bash
# Installs the real client tools the test suite drives, each only when it is missing.
#
# One line per tool: how to tell it is there, and the Debian packages that provide it. apt is asked
# only for the packages of the tools that are really missing (and `apt-get update` runs only then), so
# a machine that already has a tool (say Node.js with its own npm) never gets Debian's conflicting
# package for it. Quiet when nothing is missing; on failure it names the tool and how to install it.
set -uo pipefail

have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_file() { test -e "$1"; }

# tool | check | Debian packages
TOOLS=(
  "psql|have_cmd psql|postgresql-client"
  "java|have_cmd java|default-jre-headless"
  "pgJDBC|have_file /usr/share/java/postgresql.jar|libpostgresql-jdbc-java"
  "go|have_cmd go|golang-go"
  "Go lib/pq|have_file /usr/share/gocode/src/github.com/lib/pq|golang-github-lib-pq-dev"
  "node|have_cmd node|nodejs"
  "prometheus|have_cmd prometheus|prometheus"
  "docker-compose|have_cmd docker-compose|docker-compose"
)

missing_tools=()
packages=()
for line in "${TOOLS[@]}"; do
  IFS='|' read -r tool check pkgs <<<"$line"
  if ! eval "$check"; then
    missing_tools+=("$tool")
    packages+=($pkgs)
  fi
done
# npm: Node.js 20 from NodeSource ships npm itself, and Debian's `npm` package conflicts with that
# nodejs. Ask for Debian's npm only when no npm is on PATH and no installed nodejs claims to provide it.
npm_note=""
if ! have_cmd npm; then
  if dpkg-query -W -f='${Provides}' nodejs 2>/dev/null | grep -qw npm; then
    npm_note="npm (the installed nodejs package provides npm but it is not on PATH: reinstall nodejs)"
  else
    missing_tools+=("npm")
    packages+=(npm)
  fi
fi
if [[ -n $npm_note ]]; then
  echo "install-clients: could not install: $npm_note" >&2
  exit 1
fi

if ((${#packages[@]} == 0)); then
  exit 0
fi

echo "install-clients: installing ${missing_tools[*]} (Debian packages: ${packages[*]})"
if ! have_cmd apt-get; then
  echo "install-clients: apt-get is not available; install by hand: ${packages[*]}" >&2
  exit 1
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if have_cmd sudo; then SUDO="sudo"; else
    echo "install-clients: need root to install ${packages[*]}; run: sudo apt-get install ${packages[*]}" >&2
    exit 1
  fi
fi
log=$(mktemp)
if ! $SUDO apt-get update -qq >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-clients: apt-get update failed; fix the apt sources, then run: apt-get install ${packages[*]}" >&2
  exit 1
fi
status=0
if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >"$log" 2>&1; then
  cat "$log" >&2
  status=1
fi
rm -f "$log"
# Say exactly which tool is still missing, whatever apt printed.
failed=()
for line in "${TOOLS[@]}"; do
  IFS='|' read -r tool check pkgs <<<"$line"
  if ! eval "$check"; then
    if dpkg-query -W -f='${Status}' $pkgs 2>/dev/null | grep -q 'install ok installed'; then
      failed+=("$tool (package $pkgs is installed, but $tool is not on PATH=$PATH)")
    else
      failed+=("$tool (install it by hand: apt-get install $pkgs)")
    fi
  fi
done
have_cmd npm || failed+=("npm (install Node.js 20 with its npm, or: apt-get install npm)")
if ((${#failed[@]})); then
  printf 'install-clients: could not install: %s\n' "${failed[@]}" >&2
  exit 1
fi
exit $status
