#!/usr/bin/env bash
# Build docker/Dockerfile without a Docker engine and smoke-test the image:
#   docker/build-test.sh            (as root, with buildah and debootstrap installed)
#
# 1. debootstrap a Debian bookworm root filesystem (python3, venv) and turn it into a base
#    image (`FROM scratch` + `ADD rootfs.tar /`): public base images may not be reachable.
# 2. buildah-build docker/Dockerfile on that base, with the CPU torch wheel from a local
#    directory ($FC_TORCH_WHEELS, default /opt/wheels) instead of the PyTorch CPU index.
# 3. in the image: the entrypoint's `compile mxnet resnet50v1b -o /out` into a mounted
#    directory (the six files are checked), a CPU-only torch, `dot`, fc's C histogram
#    kernel, the lean test suite.
#
# Everything lives in one scratch directory ($FC_DOCKER_SCRATCH, default under $TMPDIR) with
# its own vfs image store, removed on exit: vfs keeps a full copy of the file system per
# layer and per container, ~9 GB at the peak. FC_KEEP_IMAGE=1 keeps the store and prints
# how to use the image. Environment: FC_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
wheels=${FC_TORCH_WHEELS:-/opt/wheels}
mirror=${FC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm               # the default BASE's Debian release (python:3.11-slim-bookworm)
image=localhost/fc-build-test
base=localhost/fc-build-test-base

die() { echo "build-test.sh: $*" >&2; exit 1; }
step() { echo "== build-test.sh: $*"; }

for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install -y buildah debootstrap)"
done
[ "$(id -u)" = 0 ] || die "debootstrap and buildah's chroot isolation need root"
torch_pin=$(grep -o '"torch==[^"]*"' "$repo/setup.py" | tr -d '"') \
  || die "no torch==VERSION pin found in setup.py"
ls "$wheels"/torch-"${torch_pin#torch==}"+cpu-*.whl >/dev/null 2>&1 \
  || die "no CPU wheel for $torch_pin in $wheels (set FC_TORCH_WHEELS)"

scratch=$(mktemp -d "${FC_DOCKER_SCRATCH:-${TMPDIR:-/tmp}}/fc-build-test.XXXXXX")
bah=(buildah --storage-driver vfs --root "$scratch/storage" --runroot "$scratch/run")
cleanup() {
  if [ "${FC_KEEP_IMAGE:-0}" = 1 ]; then
    "${bah[@]}" rm --all >/dev/null 2>&1 || true
    echo "build-test.sh: image kept: ${bah[*]} from $image"
    return
  fi
  "${bah[@]}" rm --all >/dev/null 2>&1 || true
  "${bah[@]}" rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT
export BUILDAH_ISOLATION=chroot

t0=$SECONDS
step "debootstrap $suite into $scratch/rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$suite" "$scratch/rootfs" "$mirror" >"$scratch/debootstrap.log" 2>&1 \
  || { tail -20 "$scratch/debootstrap.log" >&2; die "debootstrap failed"; }
mkdir "$scratch/base"
tar -C "$scratch/rootfs" -cf "$scratch/base/rootfs.tar" .
rm -rf "$scratch/rootfs"
printf 'FROM scratch\nADD rootfs.tar /\nCMD ["/bin/bash"]\n' >"$scratch/base/Containerfile"
"${bah[@]}" build --quiet -t "$base" "$scratch/base" >/dev/null
rm -rf "$scratch/base"
t_base=$((SECONDS - t0))

step "buildah build docker/Dockerfile on $base (torch from $wheels)"
t0=$SECONDS
build=(--build-arg BASE="$base" --build-arg PIP_EXTRA_INDEX_URL= --build-arg PIP_FIND_LINKS=/wheels
       --volume "$wheels:/wheels:ro")
# A proxy that re-signs TLS (PIP_CERT set here): the image's pip trusts the same CA bundle.
if [ -n "${PIP_CERT:-}" ]; then
  build+=(--build-arg PIP_CERT=/etc/fc-build-ca.crt --volume "$PIP_CERT:/etc/fc-build-ca.crt:ro")
fi
"${bah[@]}" build --pull=never -t "$image" -f "$repo/docker/Dockerfile" "${build[@]}" "$repo"
t_build=$((SECONDS - t0))
size=$("${bah[@]}" images --format '{{.Size}}' "$image")

step "smoke test"
t0=$SECONDS
ctr=$("${bah[@]}" from --pull=never "$image")
# `docker run IMAGE ARGS` runs the entrypoint with ARGS: run exactly that.
read -ra entrypoint <<<"$("${bah[@]}" inspect --type image \
  --format '{{range .OCIv1.Config.Entrypoint}}{{.}} {{end}}' "$image")"
[ "${entrypoint[*]}" = fcc ] || die "the image's entrypoint is '${entrypoint[*]}', not fcc"
mkdir "$scratch/out"
"${bah[@]}" run -v "$scratch/out:/out" "$ctr" -- "${entrypoint[@]}" compile mxnet resnet50v1b -o /out
for f in IR_for_reconstruct_graph.json IR_for_reconstruct_params.npz IR_for_reconstruct_graph.png \
         IR_fused_for_CModel_graph.json IR_fused_for_CModel_params.npz IR_fused_for_CModel_graph.png; do
  [ -s "$scratch/out/$f" ] || die "the compile in the image did not write /out/$f"
done
echo "build-test.sh: the six IR files are in /out"
# As the README's `docker run --user "$(id -u):$(id -g)"`: a user the image does not know.
mkdir -m 777 "$scratch/out-user"
"${bah[@]}" run --user 1234:1234 -v "$scratch/out-user:/out" "$ctr" -- \
  "${entrypoint[@]}" compile mxnet resnet18_v1 -o /out >/dev/null
[ "$(stat -c %u "$scratch/out-user/IR_fused_for_CModel_graph.json")" = 1234 ] \
  || die "the compile as user 1234 did not write /out"
echo "build-test.sh: an unknown user (1234) compiles into /out too"
"${bah[@]}" run "$ctr" -- dot -V
"${bah[@]}" run "$ctr" -- python -c '
from fc.np_ops.conv import epilogue_kernel, gemm_kernel
from fc.np_ops import _gemm
from fc.quant.calibration import histogram_kernel
assert histogram_kernel().startswith("C "), histogram_kernel()
assert epilogue_kernel().startswith("C "), epilogue_kernel()
assert _gemm.ISAS, "fc.np_ops._gemm did not build"
print("histogram kernel:", histogram_kernel(), "- conv epilogue:", epilogue_kernel(),
      "- conv GEMM:", gemm_kernel())'
"${bah[@]}" run "$ctr" -- python -c '
import importlib.metadata as md, torch
assert torch.__version__.endswith("+cpu"), torch.__version__
cuda = sorted(d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].startswith("nvidia-"))
assert not cuda, f"CUDA packages in the image: {cuda}"
print("torch", torch.__version__, "and no CUDA packages")'
"${bah[@]}" run "$ctr" -- python -m pytest -q -x
t_smoke=$((SECONDS - t0))

echo "build-test.sh: OK. image $size; base ${t_base}s, image build ${t_build}s, smoke test ${t_smoke}s"
