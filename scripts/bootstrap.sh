#!/usr/bin/env bash
# Set up edgepack from a fresh clone: the sample data, a virtual environment, the package, the
# emulated arm64 runner (QEMU) that estimates phone latency, and (unless --no-build) the full
# sample build for Android. Safe to run again: each step is skipped when it is already done.
#
#   bash scripts/bootstrap.sh                # everything, including the ~22 min sample build
#   bash scripts/bootstrap.sh --no-build     # set up only (what CI does)
#   bash scripts/bootstrap.sh --no-emulated  # skip the QEMU runner (latency budgets then skip)
#
# Environment:
#   PYTHON           interpreter for the venv (default: python3.11; must be 3.11 or newer)
#   EDGEPACK_EXTRAS  extras to install (default: all,test; e.g. "tflite,test" for Android only)
set -euo pipefail

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
}

build=1
emulated=1
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        --no-emulated) emulated=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown argument '$arg'; expected --no-build, --no-emulated or --help" >&2
           exit 2 ;;
    esac
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# 1. Sample data: Fashion-MNIST (MIT) from the Debian package dataset-fashion-mnist.
data_pkg=dataset-fashion-mnist
data_dir=/usr/share/datasets/fashion-mnist
step "Sample data: Debian package $data_pkg ($data_dir)"
if dpkg-query -W -f='${Status}' "$data_pkg" 2>/dev/null | grep -q "install ok installed"; then
    echo "already installed"
else
    if [ "$(id -u)" -eq 0 ]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        die "$data_pkg is not installed, and this user is not root and has no sudo.
       Ask an administrator to run: apt-get install $data_pkg"
    fi
    command -v apt-get >/dev/null 2>&1 \
        || die "$data_pkg is not installed and apt-get is missing (not a Debian/Ubuntu system?).
       Install the Fashion-MNIST IDX files into $data_dir another way."
    export DEBIAN_FRONTEND=noninteractive
    echo "+ ${sudo[*]:+${sudo[*]} }apt-get install -y $data_pkg"
    if ! "${sudo[@]}" apt-get install -y "$data_pkg"; then
        echo "install failed; refreshing the package lists and trying once more"
        if ! { "${sudo[@]}" apt-get update && "${sudo[@]}" apt-get install -y "$data_pkg"; }; then
            die "could not install $data_pkg with apt-get.
       Install it yourself (apt-get install $data_pkg) and run this script again."
        fi
    fi
fi
ls "$data_dir"/train-images-idx3-ubyte.gz >/dev/null 2>&1 \
    || die "$data_pkg is installed but $data_dir/train-images-idx3-ubyte.gz is missing"

# 2. Virtual environment.
python="${PYTHON:-python3.11}"
step "Virtual environment: .venv"
if [ -x .venv/bin/python ]; then
    .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die ".venv has $(.venv/bin/python --version 2>&1); needs 3.11+: remove .venv and rerun"
    echo "already exists ($(.venv/bin/python --version))"
else
    command -v "$python" >/dev/null 2>&1 \
        || die "'$python' not found; install Python 3.11+ or set PYTHON (PYTHON=python3.12 bash $0)"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "'$python' is $("$python" --version 2>&1); edgepack needs Python 3.11 or newer"
    echo "+ $python -m venv .venv"
    "$python" -m venv .venv
fi

# 3. Packages. torch first, pinned: a torch range would let pip pick a multi-GB CUDA build.
step "Packages"
pip=(.venv/bin/python -m pip install)
echo "+ ${pip[*]} torch==2.13.0"
"${pip[@]}" torch==2.13.0
extras="${EDGEPACK_EXTRAS-all,test}"
target="."
[ -n "$extras" ] && target=".[$extras]"
# Editable install: the package finds its target profiles in <repo>/targets.
echo "+ ${pip[*]} -e '$target'"
"${pip[@]}" -e "$target"
# ExecuTorch (in `all` and `executorch`): installed without its declared dependencies, which
# pull pandas, hydra-core and test tools (~131 MB) that neither its exporter nor its runtime
# import; the extra installed above holds what they do. `pip check` therefore lists
# executorch's unmet declared requirements: expected, and nothing edgepack imports.
if [[ ",$extras," == *",all,"* || ",$extras," == *",executorch,"* ]]; then
    echo "+ ${pip[*]} --no-deps executorch==1.5.1"
    "${pip[@]}" --no-deps executorch==1.5.1
fi
.venv/bin/edgepack --version

# 4. The emulated arm64 runner: qemu-user and build tools (apt), a minimal arm64 root
#    (debootstrap), the pinned aarch64 wheels (PyPI) and the instruction-counting QEMU plugin.
#    Cached in ~/.cache/edgepack/emulated (EDGEPACK_EMULATED_DIR); about a minute cold.
if [ "$emulated" -eq 1 ]; then
    step "Emulated arm64 runner (QEMU): edgepack runner setup emulated"
    .venv/bin/edgepack runner setup emulated
else
    step "Skipping the emulated arm64 runner (--no-emulated)"
    echo "Latency budgets of profiles with runner: emulated are reported as skipped until:"
    echo "  .venv/bin/edgepack runner setup emulated"
fi

# 5. The full sample build.
if [ "$build" -eq 1 ]; then
    step "Sample build: edgepack build --target android (about 22 min on 2 cores)"
    echo "+ .venv/bin/edgepack build --target android"
    rc=0
    .venv/bin/edgepack build --target android || rc=$?
    if [ "$rc" -eq 1 ]; then
        echo "error: the sample build missed a budget or failed verification (exit 1);" \
            "see the messages above and dist/android/manifest.json" >&2
        exit 1
    elif [ "$rc" -ne 0 ]; then
        echo "error: the sample build failed (exit $rc); see the messages above" >&2
        exit "$rc"
    fi
    echo "Done: the Android model is in dist/android/ (model.tflite, labels.txt, manifest.json)."
else
    step "Skipping the sample build (--no-build)"
    echo "Run it later with: .venv/bin/edgepack build --target android"
fi
