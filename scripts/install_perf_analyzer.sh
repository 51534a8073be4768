#!/usr/bin/env bash
# `make perf-tools`: Triton's perf_analyzer (PyPI perf-analyzer) into TOOLS/perf_analyzer, where
# shoprank.measure.loadtest.perf finds it.
#   * Not into .venv: its wheels are tagged manylinux_2_38, and pip refuses them on an older glibc
#     (Debian 12 has 2.36), so it is installed with --platform into its own folder.
#   * When the binary cannot load here (glibc < 2.38, or GCC 13's libstdc++ missing), Debian 13's
#     loader and C/C++ runtime are unpacked beside it into TOOLS/glibc: apt-get download with a
#     private state folder; the system's packages and sources are not touched.
# Usage: scripts/install_perf_analyzer.sh [TOOLS_DIR]      (env: PY, the venv's python)
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=$(realpath -m "${1:-artifacts/tools}")
PY=${PY:-.venv/bin/python}
PIN=perf-analyzer==2.60.0
PLATFORM=manylinux_2_38_x86_64
SUITE=trixie
PACKAGES=(libc6 libstdc++6 libgcc-s1)
BIN=$TOOLS/perf_analyzer/perf_analyzer/bin/perf_analyzer
LIBDIR=$TOOLS/glibc/usr/lib/x86_64-linux-gnu
LOADER=$LIBDIR/ld-linux-x86-64.so.2

if [ ! -e "$BIN" ]; then
  "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform "$PLATFORM" --target "$TOOLS/perf_analyzer" "$PIN"
fi
chmod 755 "$BIN"

# Does the command start? (--help may exit non-zero; a missing library or loader is what counts.)
starts() {
  local out
  out=$("$@" --help 2>&1) || true
  ! grep -q -e "not found (required by" -e "cannot execute" -e "No such file" <<<"$out"
}
side_loaded() { "$LOADER" --library-path "$LIBDIR:/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu" "$BIN" "$@"; }

if ! starts "$BIN" && [ ! -e "$LOADER" ]; then
  if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
    echo "perf_analyzer needs glibc >= 2.38 and GCC 13's libstdc++; this system has older ones and no" \
         "apt-get to fetch newer ones beside it: run it on a newer system" >&2
    exit 1
  fi
  echo "perf_analyzer cannot load with this system's C library: unpacking ${PACKAGES[*]} from Debian $SUITE into $TOOLS/glibc"
  STATE=$TOOLS/apt
  mkdir -p "$STATE/lists/partial" "$STATE/cache/archives/partial" "$STATE/sources" "$STATE/debs"
  cat > "$STATE/sources/$SUITE.sources" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: $SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  OPTIONS=(-oDir::Etc::SourceList=/dev/null "-oDir::Etc::SourceParts=$STATE/sources"
           "-oDir::State::Lists=$STATE/lists" "-oDir::Cache=$STATE/cache" -oAPT::Sandbox::User=root)
  apt-get "${OPTIONS[@]}" -qq update
  (cd "$STATE/debs" && apt-get "${OPTIONS[@]}" -qq download "${PACKAGES[@]}")
  for deb in "$STATE"/debs/*.deb; do dpkg-deb -x "$deb" "$TOOLS/glibc"; done
  rm -rf "$STATE"  # package lists and .debs: 20+ MB no longer needed
fi

if [ -e "$LOADER" ]; then
  starts side_loaded || { echo "perf_analyzer still does not run through $LOADER" >&2; exit 1; }
  echo "perf_analyzer ready: $LOADER --library-path $LIBDIR:... $BIN"
else
  starts "$BIN" || { echo "perf_analyzer does not run: $BIN" >&2; exit 1; }
  echo "perf_analyzer ready: $BIN"
fi
