#!/usr/bin/env bash
# Install fc into ./.venv with every framework it imports from, plus Graphviz for the PNGs.
#   ./install.sh            then   .venv/bin/fcc compile mxnet resnet50v1b
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
# System libraries: Graphviz's `dot` for the PNGs; the GCC runtime's OpenMP and quadmath,
# which mxnet's libmxnet.so links and slim/minimal Debian images lack.
apt_pkgs=()
command -v dot >/dev/null 2>&1 || apt_pkgs+=(graphviz)
libs=$({ ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null || true)
for lib in libgomp.so.1:libgomp1 libquadmath.so.0:libquadmath0; do
  case "$libs" in *"${lib%%:*}"*) ;; *) apt_pkgs+=("${lib##*:}") ;; esac
done
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "install.sh: installing ${apt_pkgs[*]} (graph PNGs, mxnet's runtime libraries)"
  if ! { $sudo apt-get update -qq \
         && $sudo apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}"; } >/dev/null; then
    echo "install.sh: could not install ${apt_pkgs[*]}; without graphviz fc writes .dot" \
         "files instead of PNGs, without libgomp1/libquadmath0 mxnet does not load" >&2
  fi
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[all]"
# setup.py builds the calibration histogram's, the conv epilogue's and the conv GEMM's C kernels
# where there is a C compiler (optional: without one fc runs numpy, ~4x slower calibration
# histograms, a slower executor)
echo "install.sh: histogram kernel: $(.venv/bin/python -c \
  'from fc.quant.calibration import histogram_kernel; print(histogram_kernel())')"
echo "install.sh: conv epilogue: $(.venv/bin/python -c \
  'from fc.np_ops.conv import epilogue_kernel; print(epilogue_kernel())')"
echo "install.sh: conv GEMM: $(.venv/bin/python -c \
  'from fc.np_ops.conv import gemm_kernel; print(gemm_kernel())')"
echo "install.sh: fc installed in .venv (run .venv/bin/fcc, or '. .venv/bin/activate' then fcc)"
