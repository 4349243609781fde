#!/usr/bin/env bash
# Builds Debian's own Abseil and gRPC (the installed versions, with Debian's
# patches) as shared libraries instrumented by ThreadSanitizer, into OUT/lib.
#
# Why: TSan only sees the synchronization of instrumented code. Debian's
# libgrpc hands calls between its threads through absl::Mutex (in
# libabsl_synchronization) and through its own atomics; uninstrumented, every
# such hand-off looks like a data race in the server (3,279 reports on
# server_test with Debian's libraries; 259 with only Abseil instrumented).
# The libraries built here keep Debian's SONAMEs and ABI options (Debian
# patches absl/base/options.h), so `LD_LIBRARY_PATH=OUT/lib` swaps them in
# under binaries built against Debian's headers; protobuf stays Debian's.
#
# Usage: scripts/tsan_deps.sh OUT_DIR   (idempotent; about 15 min cold on two
# cores, seconds when OUT_DIR is current; ccache makes rebuilds quick)
set -euo pipefail
# fetch_source runs in $(...), where bash would otherwise turn errexit off:
# a failed download, checksum or patch must stop the script there.
shopt -s inherit_errexit

out="$(realpath -m "${1:?usage: tsan_deps.sh OUT_DIR}")"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
jobs="${TSAN_DEPS_JOBS:-$(nproc)}"
flags="-fsanitize=thread -fno-omit-frame-pointer -g1"

# Source version of an installed binary package, e.g. 1.51.1-3.
source_version() {
  dpkg-query -W -f='${source:Version}' "$1" 2>/dev/null || {
    echo "tsan_deps: $1 is not installed (run scripts/install_deps.sh)" >&2
    exit 1
  }
}

# fetch_source SRCPKG VERSION DIR: Debian's source package, checked against
# the SHA-256 sums of its .dsc, unpacked with Debian's patches applied.
# Prints the source tree.
fetch_source() {
  local pkg="$1" version="$2" dir="$3" upstream="${2%-*}"
  local pool="$mirror/pool/main/${pkg:0:1}/$pkg"
  # A security update (+deb12uN) is in the security archive until the next
  # point release copies it to the main pool.
  local security="${DEBIAN_SECURITY_MIRROR:-http://security.debian.org/debian-security}/pool/updates/main/${pkg:0:1}/$pkg"
  mkdir -p "$dir"
  (
    cd "$dir"
    if ! curl -fsSL --retry 3 -O "$pool/${pkg}_${version}.dsc"; then
      pool="$security"
      curl -fsSL --retry 3 -O "$pool/${pkg}_${version}.dsc"
    fi
    awk '/^Checksums-Sha256:/{f=1; next} /^[^ ]/{f=0} f && NF==3 {print $1"  "$3}' \
      "${pkg}_${version}.dsc" >SHA256SUMS
    [[ -s SHA256SUMS ]] || { echo "tsan_deps: no checksums in the .dsc" >&2; exit 1; }
    while read -r _ file; do curl -fsSL --retry 3 -O "$pool/$file"; done <SHA256SUMS
    sha256sum --quiet -c SHA256SUMS
    tar xf "${pkg}_${upstream}.orig.tar.gz"
    tar xf "${pkg}_${version}.debian.tar.xz" -C "$pkg-$upstream"
    grep -v '^#' "$pkg-$upstream/debian/patches/series" | while read -r p; do
      if [[ -n "$p" ]]; then
        patch -s -p1 -d "$pkg-$upstream" <"$pkg-$upstream/debian/patches/$p"
      fi
    done
  ) >&2
  echo "$dir/$pkg-$upstream"
}

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

absl_version="$(source_version libabsl20220623)"
grpc_version="$(source_version libgrpc29)"
stamp="absl $absl_version grpc $grpc_version script $(sha256sum "$0" | cut -c1-16)"
if [[ -f "$out/lib/.stamp" && "$(cat "$out/lib/.stamp")" == "$stamp" ]]; then
  echo "tsan_deps: $out/lib is current ($stamp)"
  exit 0
fi
rm -rf "$out" && mkdir -p "$out/lib"
work="$out/src"
export CCACHE_BASEDIR="$work"

echo "tsan_deps: abseil $absl_version"
absl_src="$(fetch_source abseil "$absl_version" "$work/abseil")"
cmake -S "$absl_src" -B "$work/abseil/build" -G Ninja "${launcher[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_STANDARD=17 \
  -DBUILD_SHARED_LIBS=ON -DBUILD_TESTING=OFF \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread \
  -DCMAKE_INSTALL_PREFIX="$work/abseil/install" -DCMAKE_INSTALL_LIBDIR=lib \
  >/dev/null
cmake --build "$work/abseil/build" -j "$jobs"
cmake --install "$work/abseil/build" >/dev/null

echo "tsan_deps: grpc $grpc_version"
grpc_src="$(fetch_source grpc "$grpc_version" "$work/grpc")"
# Debian's configuration (debian/rules: every dependency from the system),
# minus the plugins and tests; Abseil is the instrumented one from above.
cmake -S "$grpc_src" -B "$work/grpc/build" -G Ninja "${launcher[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread \
  -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread \
  -Dabsl_DIR="$work/abseil/install/lib/cmake/absl" \
  -DgRPC_BUILD_TESTS=OFF -DgRPC_BACKWARDS_COMPATIBILITY_MODE=OFF \
  -DgRPC_ABSL_PROVIDER=package -DgRPC_CARES_PROVIDER=package \
  -DgRPC_PROTOBUF_PROVIDER=package -DgRPC_RE2_PROVIDER=package \
  -DgRPC_SSL_PROVIDER=package -DgRPC_ZLIB_PROVIDER=package \
  -DgRPC_BUILD_CSHARP_EXT=OFF -DgRPC_BUILD_GRPC_CSHARP_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_NODE_PLUGIN=OFF -DgRPC_BUILD_GRPC_OBJECTIVE_C_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_PHP_PLUGIN=OFF -DgRPC_BUILD_GRPC_PYTHON_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_RUBY_PLUGIN=OFF >/dev/null
cmake --build "$work/grpc/build" -j "$jobs" --target grpc grpc++ grpc++_reflection

cp -P "$work"/abseil/install/lib/libabsl_*.so.* "$out/lib/"
for lib in gpr upb address_sorting grpc grpc++ grpc++_reflection; do
  cp -P "$work/grpc/build/lib$lib.so".* "$out/lib/"
done
rm -rf "$work"
echo "$stamp" >"$out/lib/.stamp"
echo "tsan_deps: instrumented abseil and grpc in $out/lib"
