#!/usr/bin/env bash
# Builds the fulcrum and fulcrum-dev binary packages from a clean copy of this
# tree and checks them with lintian. Nothing is written into the checkout.
#
#   packaging/build-deb.sh                  .debs in a new folder under /tmp
#   OUT_DIR=/some/dir packaging/build-deb.sh
#
# The tree is copied to a scratch folder (in a git checkout: the tracked files
# plus the untracked ones that are not ignored, so build folders stay out),
# packaging/debian is copied to debian/ there, as dpkg-buildpackage reads only
# ./debian, and dpkg-buildpackage -b builds. The last line printed is the
# folder that holds the .deb, .changes and .buildinfo files.
#
# Missing build dependencies (dpkg-dev, debhelper, the Build-Depends of
# packaging/debian/control) and lintian are installed with apt when running as
# root; otherwise the script stops and names them.
#
# Environment:
#   OUT_DIR          where the packages go (created if needed; default: mktemp -d)
#   FC_NO_LINTIAN=1  skip lintian
#   FC_DEB_KEEP=1    keep the scratch folder (its path is printed)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { echo "build-deb.sh: $*"; }
die() {
    echo "build-deb.sh: error: $*" >&2
    exit 1
}

apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        die "missing $*: run as root, or apt-get install $*"
    fi
    say "installing $*"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine has no package lists; a failing update (offline, with
    # the packages cached) is not fatal yet: the install says what is missing.
    apt-get update -qq || true
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

tools=(dpkg-dev debhelper)
if [ "${FC_NO_LINTIAN:-0}" != 1 ]; then
    tools+=(lintian)
fi
missing=()
for p in "${tools[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q ' installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
fi

# The package version is the project's: refuse a changelog that disagrees.
project_version=$(sed -n 's/^project(fulcrum VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
deb_version=$(dpkg-parsechangelog -l "$root/packaging/debian/changelog" -S Version)
if [ "${deb_version%%-*}" != "$project_version" ]; then
    die "packaging/debian/changelog says $deb_version, CMakeLists.txt says $project_version: add a changelog entry (dch -v $project_version)"
fi

if [ -n "${OUT_DIR:-}" ]; then
    mkdir -p "$OUT_DIR"
    out=$(cd "$OUT_DIR" && pwd)
else
    out=$(mktemp -d "${TMPDIR:-/tmp}/fulcrum-deb.XXXXXX")
fi
scratch=$(mktemp -d "${TMPDIR:-/tmp}/fulcrum-debbuild.XXXXXX")
cleanup() {
    if [ "${FC_DEB_KEEP:-0}" = 1 ]; then
        say "scratch folder kept: $scratch"
    else
        rm -rf "$scratch"
    fi
}
trap cleanup EXIT

src="$scratch/fulcrum-$project_version"
mkdir -p "$src"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked files still present, and untracked files .gitignore does not exclude.
    (cd "$root" && git ls-files -z --cached --others --exclude-standard) |
        (cd "$root" && while IFS= read -r -d '' f; do
            if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
        done) |
        (cd "$root" && tar --null -T - -cf -) | tar -C "$src" -xf -
else
    (cd "$root" && tar --exclude='./build*' --exclude=./.git --exclude='*.deb' -cf - .) |
        tar -C "$src" -xf -
fi
rm -rf "$src/debian"
cp -a "$root/packaging/debian" "$src/debian"

# Build-Depends: dpkg-checkbuilddeps names what is missing; apt resolves the
# control file itself (debhelper-compat included).
if ! (cd "$src" && dpkg-checkbuilddeps >/dev/null 2>&1); then
    if [ "$(id -u)" -ne 0 ]; then
        (cd "$src" && dpkg-checkbuilddeps) || true
        die "unmet build dependencies (above): run as root, or install them"
    fi
    say "installing the build dependencies of debian/control"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get build-dep -y -qq "$src" >/dev/null
fi

jobs=$(nproc 2>/dev/null || echo 2)
say "building in $src"
(cd "$src" && DEB_BUILD_OPTIONS="parallel=$jobs ${DEB_BUILD_OPTIONS:-}" \
    dpkg-buildpackage -b -us -uc) >"$scratch/build.log" 2>&1 || {
    tail -n 60 "$scratch/build.log" >&2
    die "dpkg-buildpackage failed (log above; FC_DEB_KEEP=1 keeps $scratch/build.log)"
}

shopt -s nullglob
built=("$scratch"/*.deb "$scratch"/*.changes "$scratch"/*.buildinfo)
debs=("$scratch"/*.deb)
[ ${#debs[@]} -gt 0 ] || die "dpkg-buildpackage produced no .deb"
cp "${built[@]}" "$out/"
for d in "${debs[@]}"; do
    say "built $(basename "$d")"
done

if [ "${FC_NO_LINTIAN:-0}" != 1 ]; then
    changes=("$out"/fulcrum_"${deb_version}"_*.changes)
    say "lintian --fail-on error,warning ${changes[*]##*/}"
    lintian --fail-on error,warning "${changes[@]}" || die "lintian found errors or warnings (above)"
    say "lintian: no errors or warnings"
fi

say "packages in $out"
echo "$out"
